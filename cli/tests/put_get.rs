//! `tessera put` and `tessera get` as a user runs them, against storage node processes.

#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Child};

use common::tessera;

mod common;

/// A storage node process, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a node on `dir` joining through `bootstrap` or, for the first node, with an HTTP
/// port; returns it, its address and its HTTP line.
fn spawn_node(dir: &Path, bootstrap: Option<&str>) -> (Node, String, String) {
    let extra = match bootstrap {
        Some(addr) => ["--bootstrap", addr],
        None => ["--http", "127.0.0.1:0"],
    };
    let started = common::spawn_node(dir, &extra);
    (
        Node(started.child),
        started.addr,
        started.http.unwrap_or_default(),
    )
}

/// Waits until the node whose HTTP line is `http` is connected to `peers` peers.
fn wait_for_peers(http: &str, peers: usize) {
    use std::io::{Read as _, Write as _};
    let host = http
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches("/status");
    for _ in 0..100 {
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(stream, "GET /status HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        if response.contains(&format!("\"peers_connected\":{peers}")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the network did not form");
}

/// Four storage node processes under `dir`, connected; and the first one's address.
fn four_nodes(dir: &Path) -> (Vec<Node>, String) {
    let (first, bootstrap, http) = spawn_node(&dir.join("n0"), None);
    let mut nodes = vec![first];
    for i in 1..4 {
        nodes.push(spawn_node(&dir.join(format!("n{i}")), Some(&bootstrap)).0);
    }
    wait_for_peers(&http, 3);
    (nodes, bootstrap)
}

/// `tessera put INPUT --k K --m M`, which must succeed: the CID it prints, and its stderr.
fn put(input: &Path, k: &str, m: &str, bootstrap: &str) -> (String, String) {
    let out = tessera()
        .arg("put")
        .arg(input)
        .args(["--k", k, "--m", m, "--bootstrap", bootstrap])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (cid, stderr)
}

#[test]
fn put_then_get_with_two_nodes_down() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, bootstrap) = four_nodes(dir.path());
    let input = dir.path().join("input.bin");
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &data).unwrap();

    let (cid, stderr) = put(&input, "2", "2", &bootstrap);
    assert!(stderr.contains("on 4 nodes"), "{stderr}");
    assert!(cid.starts_with("bafyr4"), "{cid}");

    // Six pieces for four nodes: refused before anything is sent, unless told to go on, and
    // then the output says how many node losses the file survives.
    let six = |extra: &[&str]| {
        tessera()
            .arg("put")
            .arg(&input)
            .args(["--k", "4", "--m", "2", "--bootstrap", &bootstrap])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = six(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("only 4 working storage nodes for 6 pieces")
            && stderr.contains("survive the loss of 1 nodes, not 2")
            && stderr.contains("--degraded"),
        "{stderr}"
    );
    let out = six(&["--degraded"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("survives the loss of 1 nodes, not 2"),
        "{stderr}"
    );

    // Two of the four nodes go away for good.
    nodes.truncate(2);
    let output = dir.path().join("output.bin");
    let out = tessera()
        .args(["get", &cid, "-o"])
        .arg(&output)
        .args(["--bootstrap", &bootstrap])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(std::fs::read(&output).unwrap(), data);

    // A CID that names raw bytes, not a layout, is refused with a reason.
    let out = tessera()
        .args([
            "get",
            "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi",
            "-o",
        ])
        .arg(dir.path().join("x"))
        .args(["--bootstrap", &bootstrap])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a shard layout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // No bootstrap peer: told how to give one.
    let out = tessera()
        .args(["get", &cid, "-o"])
        .arg(dir.path().join("y"))
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bootstrap"));
}

/// `publish` says which CID is which: the version record, and the dataset's CID (the one to
/// fetch, alone on stdout), and that four nodes are too few for the durable layout. A missing
/// directory is named, its cause said once.
#[test]
fn publish_says_which_cid_is_which() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, bootstrap) = four_nodes(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    tessera_tests::write_parquet(&data.join("a.parquet"), "a", 2_000);
    let key = dir.path().join("publisher.key");
    let publish = |from: &Path| {
        tessera()
            .arg("publish")
            .arg(from)
            .args(["--name", "labels", "--key"])
            .arg(&key)
            .arg("--spool")
            .arg(dir.path())
            .args(["--bootstrap", &bootstrap])
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let out = publish(&data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        stderr.contains(&format!("dataset {cid} (fetch it by this CID")),
        "{stderr}"
    );
    assert!(stderr.contains("version record "), "{stderr}");
    assert!(stderr.contains("storage nodes reached"), "{stderr}");

    // The same files again: no new version, and the CID of the one they already are.
    let out = publish(&data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), cid);
    assert!(
        stderr.contains("nothing changed since ") && stderr.contains("/labels@v1: no new version"),
        "{stderr}"
    );
    let out = tessera()
        .args(["datasets", "log", "labels", "--key"])
        .arg(&key)
        .args(["--bootstrap", &bootstrap])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        log.lines().filter(|l| l.contains("/labels@v")).count(),
        1,
        "{log}"
    );

    // Listings: a header, short publishers, UTC times, rows; or JSON with every field whole.
    let list = |json: bool| {
        let mut cmd = tessera();
        cmd.args(["datasets", "list", "--bootstrap", &bootstrap]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = list(false);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("DATASET") && header.contains("ROWS"),
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains("/labels@v1") && row.contains("2000") && row.contains(&cid),
        "{table}"
    );
    assert!(row.contains("Z "), "a UTC time: {table}");
    let json: serde_json::Value = serde_json::from_str(&list(true)).unwrap();
    let entry = &json.as_array().unwrap()[0];
    assert_eq!(entry["rows"], 2_000, "{json}");
    assert_eq!(entry["manifest"], cid.as_str());
    assert_eq!(entry["publisher"].as_str().unwrap().len(), 64);

    let out = tessera()
        .args(["fetch", &cid, "-o"])
        .arg(dir.path().join("fetched"))
        .args(["--bootstrap", &bootstrap])
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let fresh = dir.path().join("fresh.key");
    let out = tessera()
        .arg("publish")
        .arg(dir.path().join("no-such-dir"))
        .args(["--name", "labels", "--key"])
        .arg(&fresh)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no-such-dir"), "{stderr}");
    assert_eq!(stderr.matches("(os error 2)").count(), 1, "{stderr}");
    assert!(!fresh.exists(), "a wrong directory creates no key");
    drop(nodes);
}

/// Two nodes that send at most 1 MiB/s each: a 6 MiB file (a whole copy on each) cannot come
/// back sooner than its bytes past each node's one-second burst allow, (6 - 2) / 2 = 2 s.
#[test]
fn a_fetch_from_rate_limited_nodes_takes_the_time_the_limit_implies() {
    let dir = tempfile::tempdir().unwrap();
    let capped = ["--upload-rate", "1MiB", "--http", "127.0.0.1:0"];
    let first = common::spawn_node(&dir.path().join("n0"), &capped);
    let (http, bootstrap) = (first.http.clone().unwrap(), first.addr.clone());
    let mut extra = vec!["--bootstrap", &bootstrap];
    extra.extend(["--upload-rate", "1MiB"]);
    let second = common::spawn_node(&dir.path().join("n1"), &extra);
    wait_for_peers(&http, 1);
    let input = dir.path().join("input.bin");
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let (cid, _) = put(&input, "1", "1", &bootstrap);
    let output = dir.path().join("output.bin");
    let started = std::time::Instant::now();
    let out = tessera()
        .args(["get", &cid, "-o"])
        .arg(&output)
        .args(["--bootstrap", &bootstrap])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&output).unwrap(), data);
    assert!(took.as_secs_f64() >= 1.9, "{took:?}");
    drop((Node(first.child), Node(second.child)));
}
