"""Node dashboards, loaded in headless Chromium and checked against the nodes' JSON.

A storage node's dashboard is checked on a node that audits a published dataset; a scraper
node's on a node that crawled the site of examples/site/ (served here) into that network.

scripts/test-browser starts the nodes and runs this with TESSERA (the binary), TESSERA_WORK (a
scratch directory), TESSERA_BOOTSTRAP (node 0's address) and TESSERA_HTTP (node 0's HTTP base
URL) set. Node 0 audits every two seconds, so its audit and reward figures move while the page
is read: those are checked to lie between the JSON read before and the JSON read after.
"""

import functools
import http.server
import json
import os
import subprocess
import threading
import time
import unittest
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WORK = os.environ["TESSERA_WORK"]
BOOTSTRAP = os.environ["TESSERA_BOOTSTRAP"]
HTTP = os.environ["TESSERA_HTTP"]
TESSERA = os.environ["TESSERA"]


SITE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "site")


def get(path, base=None):
    with urllib.request.urlopen((base or HTTP) + path, timeout=30) as response:
        return json.load(response)


def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver_path = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    return webdriver.Chrome(service=Service(driver_path), options=options)


def gib(n):
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i, v = 0, float(n)
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{n} B" if i == 0 else f"{v:.1f} {units[i]}"


def wait_for(check, what, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        data = os.path.join(WORK, "browser-data")
        os.makedirs(data, exist_ok=True)
        for i in range(2):
            table = pa.table({"id": pa.array(range(i * 500, (i + 1) * 500), pa.int64())})
            pq.write_table(table, os.path.join(data, f"part-{i}.parquet"))
        subprocess.run(
            [TESSERA, "publish", data, "--name", "browser", "--key",
             os.path.join(WORK, "browser.key"), "--bootstrap", BOOTSTRAP],
            check=True, stdout=subprocess.DEVNULL,
        )
        # Node 0 audits the dataset's holders and keeps receipts.
        wait_for(lambda: get("/v1/audit")["audits_passed"] > 0, "audits")
        wait_for(lambda: get("/v1/rewards")["nodes"], "rewards")
        cls.driver = browser()

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()

    def text(self, element_id):
        return self.driver.find_element(By.ID, element_id).text

    def test_the_page_shows_what_the_json_says(self):
        before = {"status": get("/status"), "audit": get("/v1/audit"), "rewards": get("/v1/rewards")}
        self.driver.get(HTTP + "/")
        WebDriverWait(self.driver, 30).until(lambda d: self.text("updated") != "never")
        shown = {i: self.text(i) for i in (
            "peer-id", "version", "peers", "pieces", "bytes-used", "bytes-free", "capacity",
            "auditor", "audits-passed", "audits-failed", "pieces-repaired", "shards", "receipts",
            "cap", "upload-rate", "download-rate", "memory", "uptime")}
        protocols = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                     for tr in self.driver.find_elements(By.CSS_SELECTOR, "#protocols tr")]
        addresses = [li.text for li in self.driver.find_elements(By.CSS_SELECTOR, "#addresses li")]
        datasets = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                    for tr in self.driver.find_elements(By.CSS_SELECTOR, "#datasets tr")]
        rewards = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                   for tr in self.driver.find_elements(By.CSS_SELECTOR, "#rewards tr")]
        after = {"status": get("/status"), "audit": get("/v1/audit"), "rewards": get("/v1/rewards")}

        status = after["status"]
        self.assertEqual(shown["peer-id"], status["peer_id"])
        self.assertEqual(shown["version"], status["version"])
        self.assertEqual(addresses, status["addresses"])
        self.assertEqual(shown["capacity"], gib(status["capacity"]))
        self.assertEqual(int(shown["pieces"]), status["pieces"])
        self.assertEqual(shown["bytes-used"], gib(status["bytes_used"]))
        self.assertEqual(int(shown["peers"]), status["peers_connected"])
        self.assertEqual(shown["auditor"], "running")

        # Traffic: each protocol the node counted, the limits it runs with (none here), and
        # its process figures.
        names = [row[0] for row in protocols]
        self.assertLessEqual({t["protocol"] for t in before["status"]["traffic"]}, set(names))
        self.assertLessEqual(set(names), {t["protocol"] for t in status["traffic"]})
        self.assertIn("/tessera/piece/1", names)
        self.assertIn("/tessera/challenge/1", names)
        self.assertEqual(shown["cap"], "none")
        self.assertEqual(shown["upload-rate"], "no limit")
        self.assertEqual(shown["download-rate"], "no limit")
        self.assertNotEqual(shown["memory"], "-")
        self.assertNotEqual(shown["uptime"], "-")

        # Counters that move: between what the JSON said before and after.
        for element, key in (("audits-passed", "audits_passed"), ("audits-failed", "audits_failed"),
                             ("pieces-repaired", "pieces_repaired")):
            self.assertLessEqual(before["audit"][key], int(shown[element]), element)
            self.assertLessEqual(int(shown[element]), after["audit"][key], element)
        self.assertGreater(int(shown["audits-passed"]), 0)
        self.assertEqual(int(shown["shards"]), after["audit"]["shards"])

        [dataset] = after["audit"]["datasets"]
        self.assertEqual(len(datasets), 1)
        self.assertEqual(datasets[0][0], f"{dataset['publisher'][:8]}…/browser")
        self.assertEqual(datasets[0][1], f"v{dataset['version']}")
        self.assertEqual(int(datasets[0][2]), dataset["shards"])

        # The rewards table: one row per audited node, as /v1/rewards has them.
        peers = {n["peer_id"] for n in after["rewards"]["nodes"]}
        self.assertTrue(rewards)
        for row in rewards:
            self.assertIn(row[0], peers)
            # A holder's first pass credits nothing (no time before it is known); later
            # passes credit the time since the one before.
            self.assertGreaterEqual(float(row[1]), 0.0)
            self.assertGreater(int(row[2]), 0)
        self.assertLessEqual(before["rewards"]["receipts"], int(shown["receipts"]))
        self.assertLessEqual(int(shown["receipts"]), after["rewards"]["receipts"])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class ScraperDashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        handler = functools.partial(QuietHandler, directory=SITE)
        cls.site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=cls.site.serve_forever, daemon=True).start()
        cls.node = subprocess.Popen(
            [TESSERA, "scraper-node", "--data-dir", os.path.join(WORK, "scraper"),
             "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0",
             "--bootstrap", BOOTSTRAP, "--allow-private-networks", "--min-delay", "0s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        cls.base = None
        for line in cls.node.stdout:
            if line.startswith("dashboard"):
                cls.base = line.split()[1].rstrip("/")
            if line.startswith("data"):
                break
        assert cls.base, "the scraper node printed no dashboard address"
        port = cls.site.server_address[1]
        spec = {"name": "browser-site", "seeds": [f"http://127.0.0.1:{port}/"], "max_pages": 50,
                "max_depth": 3, "politeness": {"delay_seconds": 0.01, "lease_size": 4}}
        # Changes to crawls take JSON and the node's API token, from its data directory.
        with open(os.path.join(WORK, "scraper", "api-token")) as f:
            token = f.read().strip()
        request = urllib.request.Request(
            cls.base + "/v1/crawls", data=json.dumps(spec).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            cls.crawl = json.load(response)["id"]
        wait_for(lambda: "published" in json.dumps(get(f"/v1/crawls/{cls.crawl}", cls.base)["state"]),
                 "the crawl's publication", seconds=120)
        cls.driver = browser()

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        cls.node.terminate()
        cls.node.wait(timeout=30)
        cls.site.shutdown()

    def text(self, element_id):
        return self.driver.find_element(By.ID, element_id).text

    def test_the_page_shows_what_the_json_says(self):
        self.driver.get(self.base + "/")
        WebDriverWait(self.driver, 30).until(lambda d: self.text("updated") != "never")
        node = get("/v1/node", self.base)
        self.assertEqual(self.text("peer-id"), node["peer_id"])
        self.assertEqual(self.text("publisher"), node["publisher"])
        self.assertEqual(self.text("role"), "coordinator and worker")
        self.assertEqual(int(self.text("pages")), node["worker"]["pages"])
        self.assertEqual(int(self.text("shards")), node["worker"]["shards"])
        self.assertEqual(int(self.text("leases")), node["worker"]["leases"])
        [crawl] = node["crawls"]
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in self.driver.find_elements(By.CSS_SELECTOR, "#crawls tr")]
        progress = crawl["progress"]
        # Every page of the site but the one robots.txt closes: written as a row, or dropped
        # by the quality pipeline (the site's shortest pages have too few sentences).
        self.assertEqual(node["worker"]["pages"], progress["stored"])
        self.assertEqual(progress["stored"] + progress["dropped"], 8)
        self.assertGreater(progress["dropped"], 0)
        self.assertEqual(rows, [[crawl["id"], "browser-site", "published",
                                 str(progress["stored"]), str(progress["skipped"]),
                                 str(progress["failed"]), str(progress["dropped"]), str(crawl["rows"]),
                                 str(crawl["shards"]), crawl["state"]["published"]["manifest"]]])
        # Each page skipped or failed, with why, as the JSON lists them.
        skipped = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                   for tr in self.driver.find_elements(By.CSS_SELECTOR, "#skipped tr")]
        self.assertEqual(skipped, [["browser-site", why, url] for url, why in progress["skipped_pages"]])
        self.assertEqual(len(skipped), progress["skipped"] + progress["failed"] + progress["dropped"])
        # Pages the quality pipeline dropped, counted by reason as the JSON counts them.
        dropped = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                   for tr in self.driver.find_elements(By.CSS_SELECTOR, "#dropped tr")]
        self.assertEqual(dropped, [["browser-site", why, str(n)]
                                   for why, n in progress["dropped_by"].items()])
        self.assertEqual(sum(progress["dropped_by"].values()), progress["dropped"])
        # Its network traffic by protocol: the crawl protocol it coordinates over, the
        # pieces it stored its shards with.
        protocols = [tr.find_elements(By.TAG_NAME, "td")[0].text
                     for tr in self.driver.find_elements(By.CSS_SELECTOR, "#protocols tr")]
        after = {t["protocol"] for t in get("/v1/node", self.base)["traffic"]}
        self.assertLessEqual(set(protocols), after)
        self.assertIn("/tessera/piece/1", protocols)


if __name__ == "__main__":
    unittest.main()
