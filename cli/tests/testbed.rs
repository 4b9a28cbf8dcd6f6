//! Storage nodes in a testbed of homes and routers (`tessera_tests::testbed`): public hosts on
//! a simulated internet, and homes behind NAT routers (port-preserving, symmetric, and one
//! whose router offers UPnP, and one behind two NATs, its own and its ISP's). Each node's
//! reported reachability must match its setup; pieces travel over relays and hole punches.
//! Skipped, with a line saying why, where the machine cannot host the testbed
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
    start_node_with(bed, host, dir, bootstrap, "1GiB")
}

/// [`start_node`] with room for `capacity` of pieces.
fn start_node_with(
    bed: &mut Testbed,
    host: &Host,
    dir: &Path,
    bootstrap: Option<&str>,
    capacity: &str,
) -> Node {
    start_node_args(bed, host, dir, bootstrap, &["--capacity", capacity])
}

/// [`start_node`] with more flags.
fn start_node_args(
    bed: &mut Testbed,
    host: &Host,
    dir: &Path,
    bootstrap: Option<&str>,
    extra: &[&str],
) -> Node {
    let http = 8080;
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args([
            "storage-node",
            "--listen",
            &format!("/ip4/{}/tcp/4001", host.ip),
        ])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(extra)
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
/// to install); the body.
fn http_get(node: &Node, path: &str) -> Option<String> {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{} && printf 'GET {path} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && cat <&3",
        node.http
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &node.host.namespace, "bash", "-c", &script])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// `GET path`'s JSON body.
fn get(node: &Node, path: &str) -> Option<Value> {
    serde_json::from_str(&http_get(node, path)?).ok()
}

/// A counter from the node's `/metrics`.
fn metric(node: &Node, name: &str) -> Option<u64> {
    http_get(node, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
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
    let (cone, symmetric, upnp, cgnat) = (
        bed.home(Nat::PortPreserving).unwrap(),
        bed.home(Nat::Symmetric).unwrap(),
        bed.home(Nat::Upnp).unwrap(),
        bed.home(Nat::CarrierGrade).unwrap(),
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
    let isp = start_node(
        &mut bed,
        &cgnat,
        &dir.path().join("cgnat"),
        Some(&bootstrap),
    );
    wait_for_reachability(
        &[
            (&first, "public"),
            (&second, "public"),
            // Peers see it at one port of its router: a hole punch gets through.
            (&home, "punchable"),
            // Peers see it at a new port each: reachable through a relay only.
            (&sym, "symmetric"),
            // Its router maps its port (UPnP), and a peer dialled it back there.
            (&mapped, "mapped"),
            // Two port-preserving NATs, the home's and the ISP's: still punchable.
            (&isp, "punchable"),
        ],
        Duration::from_secs(90),
    );
    // A home node advertises no address of its own network: only its reservations on the
    // two public relays. The mapped one advertises its router's, and only that.
    for node in [&home, &sym, &isp] {
        let status = get(node, "/status").unwrap();
        let relayed = status["relay_addresses"].as_array().unwrap();
        assert_eq!(relayed.len(), 2, "{status}");
        assert_eq!(status["external_addresses"].as_array().unwrap(), relayed);
        for addr in relayed {
            let addr = addr.as_str().unwrap();
            assert!(
                addr.contains("/p2p-circuit/") && !addr.starts_with("/ip4/10."),
                "{addr}"
            );
        }
    }
    for relay in [&first, &second] {
        let status = get(relay, "/status").unwrap();
        assert_eq!(status["relay"]["serving"], true, "{status}");
    }
    let status = get(&mapped, "/status").unwrap();
    assert_eq!(
        status["relay"]["serving"], true,
        "a mapped node is dialable: {status}"
    );
    let status = get(&mapped, "/status").unwrap();
    let router = upnp.router.unwrap();
    assert_eq!(
        status["external_addresses"],
        serde_json::json!([format!("/ip4/{router}/tcp/4001")]),
        "{status}"
    );
}

/// Two public storage nodes and four homes, each with a node behind a port-preserving NAT
/// (the setup that once put all six pieces of a 4+2 put on the two public nodes): each home
/// node reserves on a relay, the client reaches it through the relay and punches a hole, and
/// each of the six nodes gets one piece, so that the file survives the loss of two.
#[test]
fn a_put_reaches_homes_behind_nat_through_relays_and_hole_punches() {
    let Some(mut bed) =
        testbed_or_skip("a_put_reaches_homes_behind_nat_through_relays_and_hole_punches")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (nodes, bootstrap, client) =
        two_public_and_four_homes(&mut bed, dir.path(), Nat::PortPreserving, "punchable");

    let file = dir.path().join("file.bin");
    std::fs::write(&file, tessera_tests::sample_bytes("nat put", 300_000)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .arg("put")
        .arg(&file)
        .args(["--k", "4", "--m", "2", "--bootstrap", &bootstrap]);
    let out = bed.run(&client, &command).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("on 6 nodes"), "{said}");
    // (A node may hold the file's layout block as well.)
    for node in &nodes {
        let status = get(node, "/status").unwrap();
        let pieces = status["pieces"].as_u64().unwrap();
        assert!(pieces >= 1, "{}: {status}", node.host.namespace);
    }
    for home in &nodes[2..] {
        let status = get(home, "/status").unwrap();
        let paths = &status["paths"];
        assert!(paths["punched"].as_u64().unwrap() >= 1, "{status}");
        // No piece went through a relay; at most a small request from a peer whose punch
        // was slow on a loaded machine.
        assert!(
            paths["bytes_relayed"].as_u64().unwrap() < RELAYED_CONTROL,
            "{status}"
        );
    }
}

/// Writes a one-shard Parquet dataset into `data` and publishes it as `name` (2+2) from
/// `host`, with a publisher key beside `data`; returns the manifest CID.
fn publish_dataset(bed: &Testbed, host: &Host, data: &Path, name: &str, bootstrap: &str) -> String {
    std::fs::create_dir_all(data).unwrap();
    tessera_tests::write_parquet(&data.join("part-0.parquet"), name, 6_000);
    let mut publish = Command::new(env!("CARGO_BIN_EXE_tessera"));
    publish
        .arg("publish")
        .arg(data)
        .args(["--name", name, "--k", "2", "--m", "2", "--key"])
        .arg(data.with_extension("key"))
        .args(["--bootstrap", bootstrap]);
    let out = bed.run(host, &publish).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Two public storage nodes and four homes behind `nat`, each node saying the reachability
/// expected of it (`public`, and `homes_say` at home) and each home holding a relay slot.
/// Returns the nodes (public first), the bootstrap address and a public host for clients.
fn two_public_and_four_homes(
    bed: &mut Testbed,
    dir: &Path,
    nat: Nat,
    homes_say: &str,
) -> (Vec<Node>, String, Host) {
    let (pub1, pub2, client) = (
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
    );
    let first = start_node(bed, &pub1, &dir.join("pub1"), None);
    let bootstrap = first.addr.clone();
    let mut nodes = vec![first];
    nodes.push(start_node(bed, &pub2, &dir.join("pub2"), Some(&bootstrap)));
    for i in 0..4 {
        let home = bed.home(nat).unwrap();
        let home_dir = dir.join(format!("home{i}"));
        nodes.push(start_node(bed, &home, &home_dir, Some(&bootstrap)));
    }
    let pairs: Vec<(&Node, &str)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n, if i < 2 { "public" } else { homes_say }))
        .collect();
    wait_for_reachability(&pairs, Duration::from_secs(90));
    wait_for_relays(&nodes[2..], Duration::from_secs(30));
    (nodes, bootstrap, client)
}

/// Most request bytes a home node may take through a relay in a test: a few small requests,
/// far below one piece.
const RELAYED_CONTROL: u64 = 8 * 1024;

/// Waits until each node holds a reservation on a relay.
fn wait_for_relays(nodes: &[Node], within: Duration) {
    let started = Instant::now();
    for node in nodes {
        while get(node, "/status")
            .and_then(|s| s["relay_addresses"].as_array().map(Vec::len))
            .unwrap_or(0)
            == 0
        {
            assert!(
                started.elapsed() < within,
                "{} holds no relay reservation",
                node.host.namespace
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Four homes behind symmetric NATs: each node is reachable through a relay (it holds
/// reservations on both public nodes, within their budget), says it is behind a symmetric
/// NAT, and steps out of the DHT, so that a 4+2 put finds only the two public nodes: it is
/// refused before anything is sent, and told to go on, it says the file survives no node
/// loss. No home node gets a piece it could serve to no one behind a NAT.
#[test]
fn homes_behind_symmetric_nats_are_relayed_and_given_no_pieces() {
    let Some(mut bed) =
        testbed_or_skip("homes_behind_symmetric_nats_are_relayed_and_given_no_pieces")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (nodes, bootstrap, client) =
        two_public_and_four_homes(&mut bed, dir.path(), Nat::Symmetric, "symmetric");
    let reservations: u64 = nodes[..2]
        .iter()
        .map(|n| {
            get(n, "/status").unwrap()["relay"]["reservations"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(reservations, 8, "two reservations for each home node");

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
    for home in &nodes[2..] {
        let status = get(home, "/status").unwrap();
        assert_eq!(status["pieces"], 0, "{status}");
    }
}

/// A dataset published from the public side onto four storage nodes, all at home behind
/// port-preserving NATs, is fetched byte-identical by a client in another home, behind its
/// ISP's carrier-grade NAT as well as its own router: every piece travels on a direct,
/// hole-punched connection, and the relays carry only the set-up.
/// The public nodes are relays and bootstrap peers with no room for a piece.
#[test]
fn a_client_at_home_fetches_from_nodes_at_home_over_punched_connections() {
    let Some(mut bed) =
        testbed_or_skip("a_client_at_home_fetches_from_nodes_at_home_over_punched_connections")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (pub1, pub2, publisher) = (
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
    );
    let first = start_node_with(&mut bed, &pub1, &dir.path().join("pub1"), None, "1KiB");
    let bootstrap = first.addr.clone();
    let second = start_node_with(
        &mut bed,
        &pub2,
        &dir.path().join("pub2"),
        Some(&bootstrap),
        "1KiB",
    );
    let mut homes = Vec::new();
    for i in 0..4 {
        let home = bed.home(Nat::PortPreserving).unwrap();
        homes.push(start_node(
            &mut bed,
            &home,
            &dir.path().join(format!("home{i}")),
            Some(&bootstrap),
        ));
    }
    let reader = bed.home(Nat::CarrierGrade).unwrap();
    let mut pairs = vec![(&first, "public"), (&second, "public")];
    pairs.extend(homes.iter().map(|n| (n, "punchable")));
    wait_for_reachability(&pairs, Duration::from_secs(90));
    wait_for_relays(&homes, Duration::from_secs(30));

    let data = dir.path().join("data");
    let manifest = publish_dataset(&bed, &publisher, &data, "from-home", &bootstrap);
    let before: Vec<Value> = homes.iter().map(|n| get(n, "/status").unwrap()).collect();
    for status in &before {
        assert!(status["pieces"].as_u64().unwrap() >= 1, "{status}");
    }

    let fetched = dir.path().join("fetched");
    let mut fetch = Command::new(env!("CARGO_BIN_EXE_tessera"));
    fetch
        .args(["fetch", &manifest, "-o"])
        .arg(&fetched)
        .args(["--bootstrap", &bootstrap])
        .env("RUST_LOG", "warn,tessera_net=info");
    let started = Instant::now();
    let out = bed.run(&reader, &fetch).unwrap();
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert_eq!(
        std::fs::read(fetched.join("part-0.parquet")).unwrap(),
        std::fs::read(data.join("part-0.parquet")).unwrap(),
        "fetched bytes differ"
    );
    let punched = said.matches("hole punched: direct connection").count();
    assert!(punched >= 2, "at least k holders reached directly: {said}");
    assert!(!said.contains("through the relay"), "{said}");

    // On the holders' side: each served over a direct connection, nothing over a relay.
    let mut punch_ms = Vec::new();
    for (node, before) in homes.iter().zip(&before) {
        let status = get(node, "/status").unwrap();
        let paths = &status["paths"];
        // No piece went through a relay; at most a small request from a peer whose punch
        // was slow on a loaded machine.
        assert!(
            paths["bytes_relayed"].as_u64().unwrap() < RELAYED_CONTROL,
            "{status}"
        );
        let (n, ms) = (
            paths["punched"].as_u64().unwrap(),
            paths["punch_ms_total"].as_u64().unwrap(),
        );
        assert!(
            n >= before["paths"]["punched"].as_u64().unwrap(),
            "{status}"
        );
        punch_ms.extend(ms.checked_div(n));
    }
    let circuits: u64 = [&first, &second]
        .iter()
        .map(|n| {
            get(n, "/status").unwrap()["relay"]["circuits"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(
        circuits >= 2,
        "the relays set the connections up: {circuits}"
    );
    eprintln!(
        "home to home: {punched} holders punched, mean punch {punch_ms:?} ms per holder, \
         fetch {:.1} s, {circuits} circuits relayed",
        took.as_secs_f64()
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
             validate_fraction = 0.0\n[quality]\nenabled = false\n",
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

/// Readers of each kind (public, at home behind a port-preserving NAT, behind carrier-grade
/// NAT, behind a symmetric NAT) ask `tessera peers` how they reach storage nodes of each kind
/// (public, mapped by UPnP, behind a port-preserving NAT, behind carrier-grade NAT). Every
/// pair ends on a direct connection except a symmetric reader with a node behind a NAT, which
/// only a relay joins (a hole punch cannot guess a symmetric NAT's next port). Prints the
/// table: the share of pairs direct per kind, and how long getting there took.
#[test]
fn how_each_kind_of_home_reaches_each_kind_of_node() {
    let Some(mut bed) = testbed_or_skip("how_each_kind_of_home_reaches_each_kind_of_node") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (pub1, pub2, public_reader) = (
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
    );
    let first = start_node(&mut bed, &pub1, &dir.path().join("pub1"), None);
    let bootstrap = first.addr.clone();
    let second = start_node(&mut bed, &pub2, &dir.path().join("pub2"), Some(&bootstrap));
    let mut nodes = vec![("public", first), ("public", second)];
    for (kind, nat) in [
        ("mapped", Nat::Upnp),
        ("punchable", Nat::PortPreserving),
        ("carrier-grade", Nat::CarrierGrade),
    ] {
        let home = bed.home(nat).unwrap();
        let node = start_node(&mut bed, &home, &dir.path().join(kind), Some(&bootstrap));
        nodes.push((kind, node));
    }
    let expected: Vec<(&Node, &str)> = nodes
        .iter()
        .map(|(kind, n)| {
            (
                n,
                if *kind == "carrier-grade" {
                    "punchable"
                } else {
                    kind
                },
            )
        })
        .collect();
    wait_for_reachability(&expected, Duration::from_secs(90));
    let homes: Vec<&Node> = nodes[3..].iter().map(|(_, n)| n).collect();
    for home in homes {
        wait_for_relays(std::slice::from_ref(home), Duration::from_secs(30));
    }

    let readers = [
        ("public", public_reader),
        ("punchable", bed.home(Nat::PortPreserving).unwrap()),
        ("carrier-grade", bed.home(Nat::CarrierGrade).unwrap()),
        ("symmetric", bed.home(Nat::Symmetric).unwrap()),
    ];
    let mut table = Vec::new();
    for (reader_kind, reader) in &readers {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
        command.args(["peers", "--json", "--bootstrap", &bootstrap]);
        let out = bed.run(reader, &command).unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        let seen: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (node_kind, node) in &nodes {
            let id = node.addr.rsplit('/').next().unwrap();
            let found = seen.iter().find(|r| r["peer"] == id).unwrap_or_else(|| {
                panic!("{reader_kind} reader did not find a {node_kind} node: {seen:?}")
            });
            let path = found["path"].as_str().unwrap().to_string();
            let want = if *reader_kind == "symmetric"
                && ["punchable", "carrier-grade"].contains(node_kind)
            {
                "relayed"
            } else {
                "direct"
            };
            assert_eq!(
                path, want,
                "{reader_kind} reader to a {node_kind} node: {found}"
            );
            table.push((
                *reader_kind,
                *node_kind,
                path,
                found["ms"].as_u64().unwrap(),
            ));
        }
    }
    eprintln!("reader         node           path     ms");
    for (reader, node, path, ms) in &table {
        eprintln!("{reader:<14} {node:<14} {path:<8} {ms}");
    }
    for (reader_kind, _) in &readers {
        let rows: Vec<_> = table.iter().filter(|r| r.0 == *reader_kind).collect();
        let direct = rows.iter().filter(|r| r.2 == "direct").count();
        eprintln!(
            "{reader_kind} reader: {direct} of {} nodes direct",
            rows.len()
        );
    }
}

/// Audits and repairs reach nodes at home: a public auditor challenges the pieces of a
/// dataset held by nodes behind port-preserving NATs (they answer over punched connections),
/// and when one of them goes, it rebuilds the lost piece from the others at home.
#[test]
fn audits_and_repairs_reach_nodes_behind_nat() {
    let Some(mut bed) = testbed_or_skip("audits_and_repairs_reach_nodes_behind_nat") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (pub1, pub2, publisher) = (
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
        bed.public_host().unwrap(),
    );
    // The auditor: a round every 2 s, every piece each round; a holder that fails once is
    // waited for 1 s before its pieces count as lost. No room for pieces itself.
    let config = dir.path().join("auditor.toml");
    std::fs::write(
        &config,
        "audit-interval = \"2s\"\naudit-period = \"2s\"\naudit-failures = 1\naudit-grace = \"1s\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let quiet = ["--audit-interval", "0s"];
    let auditor = start_node_args(
        &mut bed,
        &pub1,
        &dir.path().join("pub1"),
        None,
        &["--config", config, "--capacity", "1KiB"],
    );
    let bootstrap = auditor.addr.clone();
    let relay = start_node_args(
        &mut bed,
        &pub2,
        &dir.path().join("pub2"),
        Some(&bootstrap),
        &[&quiet[..], &["--capacity", "1KiB"]].concat(),
    );
    let mut homes = Vec::new();
    for i in 0..5 {
        let home = bed.home(Nat::PortPreserving).unwrap();
        let dir = dir.path().join(format!("home{i}"));
        homes.push((
            start_node_args(&mut bed, &home, &dir, Some(&bootstrap), &quiet),
            dir,
        ));
    }
    let mut expected = vec![(&auditor, "public"), (&relay, "public")];
    expected.extend(homes.iter().map(|(n, _)| (n, "punchable")));
    wait_for_reachability(&expected, Duration::from_secs(90));
    for (home, _) in &homes {
        wait_for_relays(std::slice::from_ref(home), Duration::from_secs(30));
    }

    publish_dataset(
        &bed,
        &publisher,
        &dir.path().join("data"),
        "nat-audit",
        &bootstrap,
    );

    // The four holders, all at home (the public nodes have no room), answer the auditor's
    // challenges.
    let started = Instant::now();
    let answered = |node: &Node| metric(node, "tessera_challenges_answered_total").unwrap_or(0);
    loop {
        if homes.iter().filter(|(n, _)| answered(n) > 0).count() >= 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "holders at home not all audited: {:?}",
            get(&auditor, "/v1/audit")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = get(&auditor, "/v1/audit").unwrap();
    assert!(status["audits_passed"].as_u64().unwrap() >= 4, "{status}");
    assert_eq!(status["audits_failed"], 0, "{status}");

    // One holder goes: the auditor rebuilds its pieces onto the home that holds none.
    let (gone, gone_dir) = homes.iter().find(|(n, _)| answered(n) > 0).unwrap();
    let kill = Command::new("pkill")
        .args(["-f", gone_dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(kill.success(), "stopping {}", gone.host.namespace);
    let started = Instant::now();
    loop {
        let status = get(&auditor, "/v1/audit").unwrap();
        if status["pieces_repaired"].as_u64() > Some(0) {
            eprintln!(
                "repaired in {:.1} s: {status}",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "nothing repaired: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
