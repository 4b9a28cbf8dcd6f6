//! What kind of network an IP address belongs to: the public internet, this machine, a
//! private network, or a range that is never a host. One classification for every use: the
//! scraper's address guard (which addresses it may fetch from) and the DHT (which addresses
//! a peer reports are worth handing on).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// What kind of network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reach {
    /// The public internet.
    Public,
    /// This machine (127.0.0.0/8, ::1).
    Loopback,
    /// A private network: RFC 1918 (10/8, 172.16/12, 192.168/16) or unique local (fc00::/7).
    Private,
    /// Link-local (169.254/16, fe80::/10), where cloud metadata services live.
    LinkLocal,
    /// Carrier-grade NAT (100.64/10), the ISP's side of a home connection.
    SharedNat,
    /// The benchmarking range (198.18/15), reserved for testing networks: where network
    /// testbeds put their simulated internet.
    Benchmarking,
    /// Anything else that is not a unicast public host: unspecified, broadcast, multicast,
    /// documentation, reserved and special-purpose ranges.
    Special,
    /// This node's own public address (its router's, behind a home connection): what a
    /// crawl reaching it would reach is the contributor's own network.
    Own,
}

impl Reach {
    /// Whether a node that allows private networks may connect: everything but the special
    /// ranges, which are never a web server.
    pub fn private_network(self) -> bool {
        !matches!(self, Reach::Public | Reach::Special | Reach::Own)
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reach::Public => "public",
            Reach::Loopback => "loopback",
            Reach::Private => "private",
            Reach::LinkLocal => "link-local",
            Reach::SharedNat => "carrier-grade NAT",
            Reach::Benchmarking => "benchmarking (testbed)",
            Reach::Special => "special-purpose",
            Reach::Own => "this node's own public address",
        })
    }
}

/// The kind of network `ip` belongs to. IPv4 addresses inside IPv6 (mapped, compatible,
/// NAT64, 6to4) are judged by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Reach::Loopback
    } else if ip.is_private() {
        Reach::Private
    } else if ip.is_link_local() {
        Reach::LinkLocal
    } else if a == 100 && (b & 0xc0) == 64 {
        Reach::SharedNat
    } else if a == 198 && (b & 0xfe) == 18 {
        Reach::Benchmarking
    } else if a == 0                                      // "this network"
        || a >= 224                                       // multicast, reserved, broadcast
        || (a == 192 && b == 0 && c == 0)                 // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                 // TEST-NET-1
        || (a == 198 && b == 51 && c == 100)              // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)               // TEST-NET-3
        || (a == 192 && b == 88 && c == 99)
    // 6to4 relay anycast
    {
        Reach::Special
    } else {
        Reach::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Reach {
    let seg = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    if ip.is_loopback() {
        Reach::Loopback
    } else if ip.is_unspecified() || ip.is_multicast() {
        Reach::Special
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        Reach::Private
    } else if (seg[0] & 0xffc0) == 0xfe80 || (seg[0] & 0xffc0) == 0xfec0 {
        // Link-local, and the deprecated site-local that some stacks still route.
        Reach::LinkLocal
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        // Documentation.
        Reach::Special
    } else if (seg[0] & 0xe000) == 0x2000 {
        // Global unicast.
        Reach::Public
    } else {
        Reach::Special
    }
}

/// The IPv4 address an IPv6 address stands for, where it stands for one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let o = ip.octets();
    let last_four = || Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (::a.b.c.d), deprecated but still parsed; not :: and ::1.
    if seg[..6] == [0; 6] && (seg[6] != 0 || seg[7] > 1) {
        return Some(last_four());
    }
    // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48.
    if seg[0] == 0x64 && seg[1] == 0xff9b && (seg[2..6] == [0; 4] || seg[2] == 1) {
        return Some(last_four());
    }
    // 6to4: 2002:a.b.c.d::/48.
    if seg[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(s: &str) -> Reach {
        classify(s.parse().unwrap())
    }

    #[test]
    fn addresses_are_classified() {
        for (addr, want) in [
            ("93.184.215.14", Reach::Public),
            ("8.8.8.8", Reach::Public),
            ("127.0.0.1", Reach::Loopback),
            ("127.255.1.2", Reach::Loopback),
            ("10.1.2.3", Reach::Private),
            ("172.16.0.1", Reach::Private),
            ("172.31.255.255", Reach::Private),
            ("172.32.0.1", Reach::Public),
            ("192.168.1.1", Reach::Private),
            ("169.254.169.254", Reach::LinkLocal),
            ("100.64.0.1", Reach::SharedNat),
            ("100.127.255.254", Reach::SharedNat),
            ("100.128.0.1", Reach::Public),
            ("0.0.0.0", Reach::Special),
            ("255.255.255.255", Reach::Special),
            ("224.0.0.1", Reach::Special),
            ("192.0.2.1", Reach::Special),
            ("198.18.0.1", Reach::Benchmarking),
            ("198.19.255.1", Reach::Benchmarking),
            ("2606:4700::1111", Reach::Public),
            ("::1", Reach::Loopback),
            ("::", Reach::Special),
            ("fd00::1", Reach::Private),
            ("fe80::1", Reach::LinkLocal),
            ("ff02::1", Reach::Special),
            ("2001:db8::1", Reach::Special),
            ("::ffff:127.0.0.1", Reach::Loopback),
            ("::ffff:169.254.169.254", Reach::LinkLocal),
            ("::ffff:8.8.8.8", Reach::Public),
            ("::10.0.0.1", Reach::Private),
            ("64:ff9b::10.0.0.1", Reach::Private),
            ("2002:c0a8:0101::1", Reach::Private),
        ] {
            assert_eq!(reach(addr), want, "{addr}");
        }
    }
}
