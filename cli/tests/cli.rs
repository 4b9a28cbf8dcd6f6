//! The `tessera` binary as a user runs it.

#![allow(clippy::unwrap_used)]

mod common;

use common::{spawn_node, tessera};

#[test]
fn cid_prints_the_blake3_cid_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let hello = dir.path().join("hello");
    std::fs::write(&hello, b"hello world\n").unwrap();

    let out = tessera().arg("cid").arg(&empty).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi\n"
    );

    // The IPFS ecosystem's sha2-256 CID of the same bytes, for comparison with other tools.
    let out = tessera()
        .args(["cid", "--hash", "sha2-256"])
        .arg(&hello)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4\n"
    );

    // Several files: one line each, with the path.
    let out = tessera()
        .arg("cid")
        .arg(&empty)
        .arg(&hello)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.starts_with("bafkr4i")));
}

#[test]
fn cid_of_a_missing_file_is_a_clear_error() {
    let out = tessera().args(["cid", "/no/such/file"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("opening /no/such/file"), "{err}");
}

#[test]
fn demo_runs_end_to_end() {
    let out = tessera().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in 1..=8 {
        assert!(text.contains(&format!("[{step}/8]")), "step {step}: {text}");
    }
    assert!(text.contains("/private/ never"), "{text}");
    assert!(text.contains("published as demo-site@v1"), "{text}");
    assert!(text.contains("signature verifies"), "{text}");
    assert!(text.contains("disjoint"), "{text}");
    assert!(text.contains("rebuilt bafkr"), "{text}");
    assert!(text.contains("tessera fetch bafyr"), "{text}");
    // The demo founds a network of its own; the commands it suggests name it.
    assert!(text.contains("on network \"demo\""), "{text}");
    assert!(text.contains("--network demo --bootstrap"), "{text}");
}

#[test]
fn storage_node_serves_its_status_until_stopped() {
    use std::io::{Read as _, Write as _};

    let dir = tempfile::tempdir().unwrap();
    let mut node = spawn_node(dir.path(), &["--http", "127.0.0.1:0"]);
    let peer = node.peer.clone();
    assert!(peer.starts_with("peer id   12D3KooW"), "{peer}");
    assert!(node.addr.contains("/p2p/12D3KooW"), "{}", node.addr);
    let http = node.http.clone().unwrap();
    let addr = http
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches("/status");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"capacity\":1073741824"), "{response}");
    assert!(
        response.contains(peer.trim_start_matches("peer id   ")),
        "{response}"
    );
    // The identity was kept in the data directory.
    assert!(dir.path().join("identity.key").exists());
}

#[test]
fn the_dashboard_is_on_by_default_on_loopback_and_off_with_no_http() {
    // The HTTP line, if the node printed one.
    let startup = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut node = spawn_node(dir.path(), extra);
        node.child.kill().unwrap();
        node.child.wait().unwrap();
        node.http
    };
    let http = startup(&[]).unwrap();
    assert!(http.starts_with("http"), "{http}");
    assert!(http.contains("http://127.0.0.1:"), "{http}");
    assert_eq!(startup(&["--no-http"]), None);
}

#[test]
fn a_second_node_on_a_data_directory_and_an_unreachable_peer_each_say_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = spawn_node(dir.path(), &[]);
    let second = tessera()
        .args([
            "storage-node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(!second.status.success());
    assert_eq!(err.matches("in use by another process").count(), 1, "{err}");
    assert!(!err.contains("LOCK"), "{err}");

    // The same peer id at a port where nothing listens: the one cause, and what to check.
    let peer = first.addr.rsplit('/').next().unwrap();
    let out = tessera()
        .args(["datasets", "list", "--bootstrap"])
        .arg(format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains("check that the node is running"), "{err}");
    assert_eq!(err.matches("/tcp/1/").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn robots_check_says_which_line_decided() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("robots.txt");
    std::fs::write(
        &file,
        "User-agent: *\nDisallow: /\n\nUser-agent: TesseraBot\nDisallow: /private\nAllow: /private/ok\nCrawl-delay: 2\n",
    )
    .unwrap();
    let out = tessera()
        .args(["robots", "check"])
        .arg(&file)
        .args([
            "--agent",
            "TesseraBot/0.1",
            "http://example.com/private/x?y=1",
        ])
        .args(["/private/ok/page", "https://example.com/public"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "deny   http://example.com/private/x?y=1  (line 5: Disallow: /private)",
            "allow  /private/ok/page  (line 6: Allow: /private/ok)",
            "allow  https://example.com/public  (no rule matches)",
            "crawl-delay 2 s for TesseraBot/0.1",
        ]
    );

    let out = tessera()
        .args([
            "robots",
            "check",
            "/no/such/robots.txt",
            "--agent",
            "x",
            "/",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /no/such/robots.txt"));
}

#[test]
fn crawl_commands_carry_the_nodes_api_token() {
    use std::io::{BufRead as _, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let mut child = tessera()
        .args(["scraper-node", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--http", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    let api = lines
        .iter()
        .find_map(|l| l.strip_prefix("crawls    "))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let node = api.trim_end_matches("/v1/crawls").to_string();
    let spec = dir.path().join("crawl.toml");
    std::fs::write(
        &spec,
        "name = \"docs\"\nseeds = [\"http://example.com/\"]\nmax_pages = 1\nmax_depth = 0\n",
    )
    .unwrap();

    // Without the token, the command says where the token is.
    let out = tessera()
        .args([
            "crawl",
            "start",
            "--node",
            &node,
            "--token-file",
            "/no/such/token",
        ])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("API token"), "{err}");
    // A spec the node refuses: its reason, once, not an HTTP status.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"docs\"\nseeds = []\nmax_pages = 1\nmax_depth = 0\n",
    )
    .unwrap();
    let out = tessera()
        .args(["crawl", "start", "--node", &node, "--data-dir"])
        .arg(dir.path())
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("seeds: 1 to").count(), 1, "{err}");
    assert!(!err.contains("Bad Request"), "{err}");
    // With the node's data directory, it reads the token there.
    let out = tessera()
        .args(["crawl", "start", "--node", &node, "--data-dir"])
        .arg(dir.path())
        .arg(&spec)
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        id.bytes().all(|b| b.is_ascii_hexdigit()) && !id.is_empty(),
        "{id}"
    );
    // Its status as JSON, every field whole, for scripts; one crawl or all of them.
    let out = tessera()
        .args(["crawl", "status", &id, "--json", "--node", &node])
        .output()
        .unwrap();
    let one: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(one["id"], id.as_str());
    assert_eq!(one["name"], "docs");
    assert!(one["progress"]["skipped_pages"].is_array(), "{one}");
    let out = tessera()
        .args(["crawl", "status", "--json", "--node", &node])
        .output()
        .unwrap();
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["id"], id.as_str());
    let out = tessera()
        .args(["crawl", "stop", &id, "--node", &node, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("stopped {id}")
    );
}

/// Founding a network as its operators would: one writes the charter, each validator signs it
/// with its node's identity, and it is valid once the threshold has signed; a key outside the
/// committee cannot sign it.
#[test]
fn a_charter_is_founded_signed_by_its_validators_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<std::path::PathBuf> = (0..3).map(|i| dir.path().join(format!("n{i}"))).collect();
    let peers: Vec<String> = nodes
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d).unwrap();
            let key = tessera_net::identity::load_or_create(d).unwrap();
            key.public().to_peer_id().to_string()
        })
        .collect();
    let file = dir.path().join("charter.block");
    let run = |args: &[&str]| {
        let out = tessera().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let file_arg = file.to_str().unwrap();
    let (ok, text) = run(&[
        "charter",
        "found",
        "--network",
        "testnet",
        "--validator",
        &peers[0],
        "--validator",
        &peers[1],
        "--threshold",
        "2",
        "-o",
        file_arg,
    ]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["charter", "show", file_arg]);
    assert!(
        ok && text.contains("network    testnet") && text.contains("not yet"),
        "{text}"
    );

    let (ok, text) = run(&[
        "charter",
        "sign",
        file_arg,
        "--node-dir",
        nodes[2].to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("not a validator"), "{text}");
    for node in &nodes[..2] {
        let (ok, text) = run(&[
            "charter",
            "sign",
            file_arg,
            "--node-dir",
            node.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
    }
    let (ok, text) = run(&["charter", "show", file_arg]);
    assert!(ok && text.contains("valid      yes"), "{text}");
    // A charter is never overwritten.
    let (ok, text) = run(&[
        "charter",
        "found",
        "--network",
        "other",
        "--validator",
        &peers[0],
        "--threshold",
        "1",
        "-o",
        file_arg,
    ]);
    assert!(!ok && text.contains("never overwritten"), "{text}");
}

#[test]
fn simulate_prints_a_report_per_seed_and_their_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sim.toml");
    std::fs::write(
        &config,
        "days = 10\nnodes = 60\n[data]\nshards = 50\nk = 4\nm = 2\n[churn]\nmonthly-leave = 0.5\n",
    )
    .unwrap();
    let out = tessera()
        .args(["simulate", "--seeds", "2", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("\"seed\":1") && lines[1].contains("\"seed\":2"));
    assert!(lines[2].contains("\"runs\":2"), "{}", lines[2]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("shard-years") && err.contains("fitted loss model"),
        "{err}"
    );

    // A bad setting is named.
    std::fs::write(&config, "[churn]\nmonthly-leave = -1\n").unwrap();
    let out = tessera()
        .args(["simulate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("churn.monthly-leave"), "{err}");
}
