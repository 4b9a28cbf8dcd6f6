//! A testbed of homes and routers on one machine: Linux network namespaces joined by veth
//! pairs, one "internet" segment (a bridge, addresses from the benchmarking range
//! 198.18.0.0/15), and homes behind routers that NAT with `iptables`.
//!
//! ```text
//!                 internet (bridge in namespace tb-ID-inet, 198.18.0.0/16)
//!        ┌──────────────┬───────────────┴───────────────┬─────────────────────┐
//!   public host     public host                 router (WAN 198.18.1.N; 198.20.1.N with UPnP)
//!   198.18.0.10     198.18.0.11                 NAT: masquerade (port-preserving),
//!                                               --random-fully (symmetric), miniupnpd;
//!                                               or carrier-grade: ISP NAT at 198.18.2.N,
//!                                               home router's WAN 100.64.N.2 behind it
//!                                                   │ LAN 10.N.0.1/24
//!                                               home host 10.N.0.2
//! ```
//!
//! Processes run inside a namespace with `ip netns exec`. Everything the testbed creates
//! (namespaces, and with them their links and rules; processes) is removed when it is
//! dropped, also when a test fails; names carry a per-run suffix so runs never collide.
//! It needs root, `ip` and `iptables`: [`Testbed::new`] says plainly what is missing.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Child, Command, Stdio},
};

/// The internet addresses of routers offering UPnP: outside the benchmarking range, because
/// miniupnpd maps no port on a reserved address. They are held by the testbed's own
/// namespaces alone, which have no route off the machine.
const UPNP_WAN: &str = "198.20.0.0/16";

/// How a home's router treats outbound connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Masquerade keeping source ports where it can: endpoint-independent mapping, the
    /// common home router, which hole punching gets through.
    PortPreserving,
    /// Masquerade with random ports for every connection (`--random-fully`): a symmetric NAT,
    /// which hole punching does not get through.
    Symmetric,
    /// Port-preserving, with `miniupnpd` on the router offering UPnP IGD port mapping.
    Upnp,
    /// Two levels: a port-preserving home router whose WAN is in the shared address space
    /// (100.64.0.0/10) behind the ISP's carrier-grade NAT, itself port-preserving and
    /// endpoint-independent as RFC 6888 asks.
    CarrierGrade,
}

/// A host of the testbed: the namespace processes run in, and its address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace.
    pub namespace: String,
    /// Its address: public, or private behind its router.
    pub ip: Ipv4Addr,
    /// The router's public address, for a host at home.
    pub router: Option<Ipv4Addr>,
}

/// The testbed; everything it made goes when it is dropped.
#[derive(Debug)]
pub struct Testbed {
    id: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    publics: u8,
    homes: u8,
}

/// Runs `ip`/`iptables`/`sysctl` and the like; an error names the command and its output.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes namespace `router` a NAT router onto its `wan`: masquerade (with `--random-fully`
/// for a symmetric NAT), and unsolicited packets from the WAN dropped, not refused, as home
/// routers do: a hole punch's first packet may arrive before the router saw the one going
/// out, and must leave no trace that would make it map that one to another port. (Nothing
/// on the internet routes to a LAN, so the router's own input is what counts.)
fn nat_router(router: &str, symmetric: bool) -> Result<(), String> {
    let exec = |args: &[&str]| {
        let mut all = vec!["netns", "exec", router];
        all.extend_from_slice(args);
        run("ip", &all)
    };
    exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let mut masquerade = vec![
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "wan",
        "-j",
        "MASQUERADE",
    ];
    if symmetric {
        masquerade.push("--random-fully");
    }
    exec(&masquerade)?;
    exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-i",
        "wan",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-j",
        "DROP",
    ])
}

/// The environment variables `command` sets.
fn envs(command: &Command) -> impl Iterator<Item = (&std::ffi::OsStr, &std::ffi::OsStr)> {
    command
        .get_envs()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
}

impl Testbed {
    /// Creates the internet segment, or says why this machine cannot host the testbed (not
    /// root, no `ip netns`, no `iptables`).
    pub fn new() -> Result<Self, String> {
        let id = format!("{:x}", std::process::id() ^ rand_suffix());
        let mut bed = Self {
            id,
            namespaces: Vec::new(),
            children: Vec::new(),
            publics: 0,
            homes: 0,
        };
        run("iptables", &["--version"]).map_err(|e| format!("no iptables ({e})"))?;
        let inet = bed.namespace("inet")?;
        run("ip", &["-n", &inet, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &inet, "link", "set", "br0", "up"])?;
        Ok(bed)
    }

    /// A new namespace named for this run, with its loopback up.
    fn namespace(&mut self, role: &str) -> Result<String, String> {
        let name = format!("tb{}-{role}", self.id);
        run("ip", &["netns", "add", &name]).map_err(|e| format!("no network namespaces ({e})"))?;
        self.namespaces.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// A veth pair from namespace `a` (named `a_end`) to namespace `b` (named `b_end`).
    fn link(&self, (a, a_end): (&str, &str), (b, b_end): (&str, &str)) -> Result<(), String> {
        // Created in `a`, so that the names never meet the host's own interfaces.
        run(
            "ip",
            &[
                "-n", a, "link", "add", a_end, "type", "veth", "peer", "name", b_end, "netns", b,
            ],
        )?;
        run("ip", &["-n", a, "link", "set", a_end, "up"])?;
        run("ip", &["-n", b, "link", "set", b_end, "up"])
    }

    /// Plugs namespace `ns` into the internet as `ip`/16 on interface `wan`.
    fn to_internet(&self, ns: &str, wan: &str, ip: Ipv4Addr) -> Result<(), String> {
        let inet = format!("tb{}-inet", self.id);
        let port = format!("p{}", ns.rsplit('-').next().unwrap_or(ns));
        self.link((ns, wan), (&inet, &port))?;
        run("ip", &["-n", &inet, "link", "set", &port, "master", "br0"])?;
        run(
            "ip",
            &["-n", ns, "addr", "add", &format!("{ip}/16"), "dev", wan],
        )?;
        // Both halves of the internet are on the one segment, whichever this host is in.
        let other = if ip.octets()[1] == 18 {
            UPNP_WAN
        } else {
            "198.18.0.0/16"
        };
        run("ip", &["-n", ns, "route", "add", other, "dev", wan])
    }

    /// A host on the internet with its own public address.
    pub fn public_host(&mut self) -> Result<Host, String> {
        self.publics += 1;
        let ip = Ipv4Addr::new(198, 18, 0, 9 + self.publics);
        let ns = self.namespace(&format!("pub{}", self.publics))?;
        self.to_internet(&ns, "wan", ip)?;
        Ok(Host {
            namespace: ns,
            ip,
            router: None,
        })
    }

    /// A home: a router on the internet doing `nat`, and one host behind it.
    pub fn home(&mut self, nat: Nat) -> Result<Host, String> {
        self.homes += 1;
        let n = self.homes;
        // miniupnpd refuses to forward ports on a reserved WAN address such as 198.18/15's:
        // a UPnP router gets one of UPNP_WAN, which only the testbed's namespaces hold.
        let wan_ip = if nat == Nat::Upnp {
            Ipv4Addr::new(198, 20, 1, n)
        } else {
            Ipv4Addr::new(198, 18, 1, n)
        };
        let router = self.namespace(&format!("r{n}"))?;
        let home = self.namespace(&format!("h{n}"))?;
        let wan_ip = if nat == Nat::CarrierGrade {
            self.carrier_grade(n, &router)?
        } else {
            self.to_internet(&router, "wan", wan_ip)?;
            wan_ip
        };
        self.link((&router, "lan"), (&home, "eth0"))?;
        let (gateway, ip) = (Ipv4Addr::new(10, n, 0, 1), Ipv4Addr::new(10, n, 0, 2));
        run(
            "ip",
            &[
                "-n",
                &router,
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                "lan",
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &home,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &home,
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
            ],
        )?;
        nat_router(&router, nat == Nat::Symmetric)?;
        if nat == Nat::Upnp {
            self.start_miniupnpd(&router)?;
        }
        Ok(Host {
            namespace: home,
            ip,
            router: Some(wan_ip),
        })
    }

    /// The ISP's carrier-grade NAT for home `n`: on the internet at 198.18.2.`n`, serving
    /// the home's router (its `wan`) at 100.64.`n`.2. Returns the public address.
    fn carrier_grade(&mut self, n: u8, router: &str) -> Result<Ipv4Addr, String> {
        let isp = self.namespace(&format!("cg{n}"))?;
        let public = Ipv4Addr::new(198, 18, 2, n);
        self.to_internet(&isp, "wan", public)?;
        self.link((&isp, "cust"), (router, "wan"))?;
        let (isp_side, customer) = (Ipv4Addr::new(100, 64, n, 1), Ipv4Addr::new(100, 64, n, 2));
        run(
            "ip",
            &[
                "-n",
                &isp,
                "addr",
                "add",
                &format!("{isp_side}/24"),
                "dev",
                "cust",
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                router,
                "addr",
                "add",
                &format!("{customer}/24"),
                "dev",
                "wan",
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                router,
                "route",
                "add",
                "default",
                "via",
                &isp_side.to_string(),
            ],
        )?;
        nat_router(&isp, false)?;
        Ok(public)
    }

    /// `miniupnpd` in the router namespace, serving the LAN, mapping on the WAN.
    fn start_miniupnpd(&mut self, router: &str) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("{router}-upnp"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let conf = dir.join("miniupnpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ext_ifname=wan\nlistening_ip=lan\nenable_upnp=yes\nenable_natpmp=yes\n\
                 secure_mode=no\nsystem_uptime=yes\nuuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
                 lease_file={}\nallow 1024-65535 10.0.0.0/8 1024-65535\n\
                 deny 0-65535 0.0.0.0/0 0-65535\n",
                dir.join("leases").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        // The nftables chains miniupnpd (Debian's nftables build) adds its rules to, as its
        // nft_init.sh makes them but forwarding everything else, as a home router does.
        let rules = dir.join("miniupnpd.nft");
        std::fs::write(
            &rules,
            "table inet filter {\n\
             chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }\n\
             chain miniupnpd { }\n\
             chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }\n\
             chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }\n\
             chain prerouting_miniupnpd { }\n\
             chain postrouting_miniupnpd { }\n\
             }\n",
        )
        .map_err(|e| e.to_string())?;
        let rules = rules.to_string_lossy().to_string();
        run("ip", &["netns", "exec", router, "nft", "-f", &rules])?;
        let child = Command::new("ip")
            .args(["netns", "exec", router, "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting miniupnpd: {e}"))?;
        self.children.push(child);
        Ok(())
    }

    /// Runs `command` inside `host`'s namespace to its end; its output.
    pub fn run(&self, host: &Host, command: &Command) -> Result<std::process::Output, String> {
        Command::new("ip")
            .args(["netns", "exec", &host.namespace])
            .arg(command.get_program())
            .args(command.get_args())
            .envs(envs(command))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {:?}: {e}", command.get_program()))
    }

    /// Runs `command` (its program and arguments) inside `host`'s namespace; the process is
    /// killed when the testbed goes. Returns it, for its output.
    pub fn spawn(&mut self, host: &Host, command: &Command) -> Result<&mut Child, String> {
        let mut inside = Command::new("ip");
        // With TESSERA_TESTBED_LOGS=DIR each process's stderr goes to DIR/NAMESPACE.log.
        let stderr = match std::env::var_os("TESSERA_TESTBED_LOGS") {
            Some(dir) => {
                std::fs::File::create(Path::new(&dir).join(format!("{}.log", host.namespace)))
                    .map_or_else(|_| Stdio::null(), Stdio::from)
            }
            None => Stdio::null(),
        };
        inside
            .args(["netns", "exec", &host.namespace])
            .arg(command.get_program())
            .args(command.get_args())
            .envs(envs(command))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => inside.env(key, value),
                None => inside.env_remove(key),
            };
        }
        let child = inside
            .spawn()
            .map_err(|e| format!("starting {:?}: {e}", command.get_program()))?;
        self.children.push(child);
        self.children
            .last_mut()
            .ok_or_else(|| "no process".to_string())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("{ns}-upnp")));
        }
    }
}

/// A few bits that differ between runs in one process.
fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos & 0xffff
}

/// The testbed, or a clear line saying the test is skipped and why (on stderr, where `cargo
/// test` shows it): never a silent pass.
pub fn testbed_or_skip(test: &str) -> Option<Testbed> {
    match Testbed::new() {
        Ok(bed) => Some(bed),
        Err(why) => {
            eprintln!("SKIPPED {test}: this machine cannot host the network testbed: {why}");
            None
        }
    }
}
