"""A crawl read back with pyarrow: a scraper node process crawls a local site of articles
(the labelled set's marked news texts) into the test network, the finished crawl is
published, fetched with tessera.fetch, and its Parquet files have FineWeb's columns with
FineWeb's types, field by field, then Tessera's provenance columns."""

import functools
import html
import http.server
import os
import pathlib
import subprocess
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq

import tessera

LABELLED = pathlib.Path(__file__).resolve().parents[2] / "scraper-node" / "tests" / "extraction"

# FineWeb's columns and types (its datasets' Parquet schema), in order.
FINEWEB = [
    ("text", pa.string()),
    ("id", pa.string()),
    ("dump", pa.string()),
    ("url", pa.string()),
    ("date", pa.string()),
    ("file_path", pa.string()),
    ("language", pa.string()),
    ("language_score", pa.float64()),
    ("token_count", pa.int64()),
]
PROVENANCE = [
    ("fetch_time", pa.timestamp("us", tz="UTC")),
    ("http_status", pa.uint16()),
    ("content_type", pa.string()),
    ("body_blake3", pa.binary(32)),
    ("scraper_peer_id", pa.string()),
    ("signature", pa.binary(64)),
]


def write_site(root, texts):
    links = "".join(f'<li><a href="/article/{i}.html">Article {i}</a></li>' for i in range(len(texts)))
    (root / "index.html").write_text(f"<html><head><title>News</title></head><body><ul>{links}</ul></body></html>")
    (root / "article").mkdir()
    for i, text in enumerate(texts):
        paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip())
        (root / "article" / f"{i}.html").write_text(
            f"<html><head><title>Article {i}</title></head><body><nav><a href='/'>Home</a></nav>"
            f"<article><h1>Article {i}</h1>{paragraphs}</article></body></html>"
        )


def wait_line(path, prefix, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if os.path.exists(path):
            for line in open(path):
                if line.startswith(prefix):
                    return line.split()[1]
        assert proc.poll() is None, f"the scraper node exited: {open(path).read()}"
        time.sleep(0.1)
    raise AssertionError(f"no {prefix!r} line from the scraper node")


def test_a_crawl_read_by_pyarrow_has_finewebs_columns(work, join):
    texts = [p.read_text() for p in sorted(LABELLED.glob("*-news.txt"))[:4]]
    site = pathlib.Path(work) / "py-site"
    site.mkdir()
    write_site(site, texts)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    data = pathlib.Path(work) / "py-scraper"
    out = pathlib.Path(work) / "py-scraper.out"
    node = subprocess.Popen(
        [os.environ["TESSERA"], "scraper-node", "--data-dir", str(data), "--listen", "/ip4/127.0.0.1/tcp/0",
         "--http", "127.0.0.1:0", "--allow-private-networks", "--min-delay", "0s",
         "--bootstrap", join["bootstrap"][0]],
        stdout=open(out, "w"), stderr=open(f"{out}.err", "w"),
    )
    try:
        api = wait_line(out, "crawls", node)
        spec = pathlib.Path(work) / "py-crawl.toml"
        spec.write_text(
            f'name = "pycrawl"\nseeds = ["http://127.0.0.1:{server.server_port}/index.html"]\n'
            "max_pages = 20\nmax_depth = 2\n[politeness]\ndelay_seconds = 0.0\n"
        )
        done = subprocess.run(
            [os.environ["TESSERA"], "crawl", "start", str(spec), "--wait",
             "--node", api.removesuffix("/v1/crawls"), "--data-dir", str(data)],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr
        manifest = done.stdout.strip().splitlines()[-1]
        target = pathlib.Path(work) / "py-crawl-fetched"
        tessera.fetch(manifest, target, bootstrap=join["bootstrap"])
    finally:
        node.terminate()
        node.wait(timeout=30)
        server.shutdown()

    files = sorted(target.rglob("*.parquet"))
    assert files
    table = pa.concat_tables(pq.read_table(f) for f in files)
    got = [(field.name, field.type) for field in table.schema]
    assert got == FINEWEB + PROVENANCE, got
    # One row per article (the index is links and is dropped), as FineWeb's rows hold them.
    rows = table.to_pylist()
    assert len(rows) == len(texts), [r["url"] for r in rows]
    for row in rows:
        assert row["url"].startswith(f"http://127.0.0.1:{server.server_port}/article/")
        assert row["language"] == "en" and 0.65 <= row["language_score"] <= 1.0
        assert row["token_count"] > 50 and row["http_status"] == 200
        assert row["dump"] == "tessera-crawl:" + row["file_path"].split("/")[0]
        assert row["id"].startswith("<urn:uuid:") and len(row["signature"]) == 64
