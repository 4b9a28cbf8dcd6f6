//! Storage nodes in a testbed of homes and routers (`tessera_tests::testbed`): public hosts on
//! a simulated internet, and homes behind NAT routers (port-preserving, symmetric, and one
//! whose router offers UPnP). Each node's reported reachability must match its setup. Skipped, with a line saying why, where the machine cannot host the testbed
//! (it needs root, `ip netns` and `iptables`; `scripts/test` installs the packages).

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tessera_tests::testbed::{Host, Nat, Testbed, testbed_or_skip};

/// A storage node started in `host`: its libp2p address (with `/p2p/`) and its HTTP port.
struct Node {
    host: Host,
    addr: String,
    http: u16,
}

fn start_node(bed: &mut Testbed, host: &Host, dir: &Path, bootstrap: Option<&str>) -> Node {
    let http = 8080;
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args([
            "storage-node",
            "--listen",
            &format!("/ip4/{}/tcp/4001", host.ip),
        ])
        .args(["--http", &format!("127.0.0.1:{http}"), "--capacity", "1GiB"])
        .arg("--data-dir")
        .arg(dir);
    if let Some(addr) = bootstrap {
        command.args(["--bootstrap", addr]);
    }
    let addr = spawn_listening(bed, host, &command);
    Node {
        host: host.clone(),
        addr,
        http,
    }
}

/// `GET path` on the node's HTTP port, from inside its namespace (bash's /dev/tcp: nothing
/// to install); the JSON body.
fn get(node: &Node, path: &str) -> Option<Value> {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{} && printf 'GET {path} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && cat <&3",
        node.http
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &node.host.namespace, "bash", "-c", &script])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// Waits until every node reports the reachability expected of it, or fails naming those
/// that did not.
fn wait_for_reachability(nodes: &[(&Node, &str)], within: Duration) {
    let started = Instant::now();
    loop {
        let seen: Vec<String> = nodes
            .iter()
            .map(|(node, _)| {
                get(node, "/status")
                    .and_then(|s| s["reachability"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "no answer".into())
            })
            .collect();
        if nodes.iter().zip(&seen).all(|((_, want), got)| got == want) {
            eprintln!(
                "reachability settled in {:.1} s: {seen:?}",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            started.elapsed() < within,
            "reachability after {within:?}: {:?}",
            nodes
                .iter()
                .zip(&seen)
                .map(|((n, want), got)| format!("{} wants {want}, says {got}", n.host.namespace))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn each_nodes_reachability_matches_its_setup() {
    let Some(mut bed) = testbed_or_skip("each_nodes_reachability_matches_its_setup") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (pub1, pub2) = (bed.public_host().unwrap(), bed.public_host().unwrap());
    let (cone, symmetric, upnp) = (
        bed.home(Nat::PortPreserving).unwrap(),
        bed.home(Nat::Symmetric).unwrap(),
        bed.home(Nat::Upnp).unwrap(),
    );
    let first = start_node(&mut bed, &pub1, &dir.path().join("pub1"), None);
    let bootstrap = first.addr.clone();
    let second = start_node(&mut bed, &pub2, &dir.path().join("pub2"), Some(&bootstrap));
    let home = start_node(&mut bed, &cone, &dir.path().join("cone"), Some(&bootstrap));
    let sym = start_node(
        &mut bed,
        &symmetric,
        &dir.path().join("sym"),
        Some(&bootstrap),
    );
    let mapped = start_node(&mut bed, &upnp, &dir.path().join("upnp"), Some(&bootstrap));
    wait_for_reachability(
        &[
            (&first, "public"),
            (&second, "public"),
            (&home, "private"),
            (&sym, "private"),
            // Its router maps its port (UPnP), and a peer dialled it back there.
            (&mapped, "public"),
        ],
        Duration::from_secs(90),
    );
    // A home node advertises no address of its own network as reachable; the mapped one
    // advertises its router's, and only that.
    let status = get(&home, "/status").unwrap();
    assert_eq!(
        status["external_addresses"],
        serde_json::json!([]),
        "{status}"
    );
    let status = get(&mapped, "/status").unwrap();
    let router = upnp.router.unwrap();
    assert_eq!(
        status["external_addresses"],
        serde_json::json!([format!("/ip4/{router}/tcp/4001")]),
        "{status}"
    );
}

/// The setup: two public storage nodes and four homes, each with a node behind a
/// port-preserving NAT. A 4+2 put from the public side cannot reach the home nodes, so it
/// is refused before anything is sent; told to go on, it says the file survives no node loss.
#[test]
fn a_put_never_hides_that_homes_behind_nat_cannot_hold_pieces() {
    let Some(mut bed) =
        testbed_or_skip("a_put_never_hides_that_homes_behind_nat_cannot_hold_pieces")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (pub1, pub2, client) = (
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
    );
    let first = start_node(&mut bed, &pub1, &dir.path().join("pub1"), None);
    let bootstrap = first.addr.clone();
    let mut nodes = vec![first];
    nodes.push(start_node(
        &mut bed,
        &pub2,
        &dir.path().join("pub2"),
        Some(&bootstrap),
    ));
    for i in 0..4 {
        let home = bed.home(Nat::PortPreserving).unwrap();
        nodes.push(start_node(
            &mut bed,
            &home,
            &dir.path().join(format!("home{i}")),
            Some(&bootstrap),
        ));
    }
    let pairs: Vec<(&Node, &str)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n, if i < 2 { "public" } else { "private" }))
        .collect();
    wait_for_reachability(&pairs, Duration::from_secs(90));

    let file = dir.path().join("file.bin");
    std::fs::write(&file, tessera_tests::sample_bytes("nat put", 300_000)).unwrap();
    let put = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
        command
            .arg("put")
            .arg(&file)
            .args(["--k", "4", "--m", "2", "--bootstrap", &bootstrap])
            .args(extra);
        let out = bed.run(&client, &command).unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, said) = put(&[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("only 2 working storage nodes for 6 pieces")
            && said.contains("survive the loss of 0 nodes, not 2"),
        "{said}"
    );
    let (ok, said) = put(&["--degraded"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("survives the loss of 0 nodes, not 2"),
        "{said}"
    );
}

/// Starts a scraper node in `host` (`--allow-private-networks`: the testbed's site is on
/// 198.18/15, a reserved range); returns its libp2p address.
fn start_scraper(bed: &mut Testbed, host: &Host, dir: &Path, extra: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args([
            "scraper-node",
            "--listen",
            &format!("/ip4/{}/tcp/4002", host.ip),
        ])
        .args([
            "--allow-private-networks",
            "--min-delay",
            "0s",
            "--data-dir",
        ])
        .arg(dir)
        .args(extra);
    spawn_listening(bed, host, &command)
}

/// Starts a `tessera` node command in `host` and reads its start-up lines (`peer id`, then
/// `listening ADDR`); returns the address.
fn spawn_listening(bed: &mut Testbed, host: &Host, command: &Command) -> String {
    let child = bed.spawn(host, command).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _peer = lines.next().unwrap().unwrap();
    let addr = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("listening ")
        .to_string();
    // The rest of its output is not read again: a thread drains it so that it never blocks.
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

/// A scraper node at home, behind a port-preserving NAT, works for a public coordinator:
/// it takes leases, fetches pages from a site on the internet, stores its shards on the public
/// storage nodes, and the crawl publishes with its rows. The coordinator's own worker may
/// fetch one page an hour (the leases it cannot take come back after 10 s), so the home node
/// does the crawl.
#[test]
fn a_scraper_node_at_home_crawls_for_a_public_coordinator() {
    let Some(mut bed) = testbed_or_skip("a_scraper_node_at_home_crawls_for_a_public_coordinator")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (pub1, pub2, site, coordinator) = (
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
    );
    let home = bed.home(Nat::PortPreserving).unwrap();
    let first = start_node(&mut bed, &pub1, &dir.path().join("pub1"), None);
    let storage = first.addr.clone();
    start_node(&mut bed, &pub2, &dir.path().join("pub2"), Some(&storage));

    // The example site, served by Python's HTTP server on the internet.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/site");
    let mut serve = Command::new("python3");
    serve
        .args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            &site.ip.to_string(),
            "--directory",
        ])
        .arg(&root);
    bed.spawn(&site, &serve).unwrap();
    let up = format!("exec 3<>/dev/tcp/{}/8000", site.ip);
    let started = Instant::now();
    while !Command::new("ip")
        .args(["netns", "exec", &site.namespace, "bash", "-c", &up])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the site never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let coordinator_dir = dir.path().join("coordinator");
    let coordinator_addr = start_scraper(
        &mut bed,
        &coordinator,
        &coordinator_dir,
        &[
            "--bootstrap",
            &storage,
            "--http",
            "127.0.0.1:8090",
            "--pages-per-hour",
            "1",
        ],
    );
    start_scraper(
        &mut bed,
        &home,
        &dir.path().join("home"),
        &[
            "--bootstrap",
            &storage,
            "--coordinator",
            &coordinator_addr,
            "--http",
            "127.0.0.1:8091",
        ],
    );
    // The home node asks for work before the crawl starts.
    let coordinating = Node {
        host: coordinator.clone(),
        addr: coordinator_addr.clone(),
        http: 8090,
    };
    let started = Instant::now();
    while get(&coordinating, "/v1/node")
        .and_then(|s| s["workers"].as_array().map(Vec::len))
        .unwrap_or(0)
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the home node never asked for work"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let spec = dir.path().join("crawl.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"from-home\"\nseeds = [\"http://{}:8000/\"]\nmax_pages = 50\nmax_depth = 3\n\
             [politeness]\ndelay_seconds = 0.01\nlease_size = 1\nlease_timeout_seconds = 10\n\
             validate_fraction = 0.0\n",
            site.ip
        ),
    )
    .unwrap();
    let mut crawl = Command::new(env!("CARGO_BIN_EXE_tessera"));
    crawl
        .args(["crawl", "start"])
        .arg(&spec)
        .args(["--wait", "--node", "http://127.0.0.1:8090", "--data-dir"])
        .arg(&coordinator_dir);
    let out = bed.run(&coordinator, &crawl).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let manifest = String::from_utf8_lossy(&out.stdout);
    assert!(
        manifest
            .trim()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("bafyr4")),
        "{manifest}"
    );

    // The home node fetched the pages and its shards are in the published crawl.
    let worker = Node {
        host: home.clone(),
        addr: String::new(),
        http: 8091,
    };
    let counts = get(&worker, "/v1/node").unwrap()["worker"].clone();
    assert!(counts["pages"].as_u64().unwrap() >= 5, "{counts}");
    assert!(counts["shards"].as_u64().unwrap() >= 1, "{counts}");
    let status = get(&coordinating, "/v1/crawls").unwrap();
    let crawl = &status[0];
    assert!(crawl["state"].get("published").is_some(), "{status}");
    assert!(crawl["rows"].as_u64().unwrap() >= 5, "{status}");
}
