//! PII anonymisation as FineWeb did it (datatrove's `PIIFormatter`): email addresses and
//! public IPv4 addresses are replaced by fixed stand-ins, taken in turn. Private, loopback
//! and other non-global addresses stay: they identify no one.

use std::{borrow::Cow, net::Ipv4Addr, sync::LazyLock};

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};

/// What is anonymised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pii {
    /// Replace email addresses.
    pub emails: bool,
    /// Replace public IPv4 addresses.
    pub ips: bool,
}

impl Default for Pii {
    fn default() -> Self {
        Self {
            emails: true,
            ips: true,
        }
    }
}

/// datatrove's replacements: example domains, and addresses that answered no ping.
const EMAILS: [&str; 2] = ["email@example.com", "firstname.lastname@example.org"];
const IPS: [&str; 6] = [
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
];

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?|\[(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[a-z0-9-]*[a-z0-9]:)\])",
    )
    .expect("a constant pattern compiles")
});

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)")
        .expect("a constant pattern compiles")
});

/// Whether a digit, a dot and a digit follow each other somewhere: every IPv4 address has
/// them.
fn has_dotted_digits(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[1] == b'.' && w[0].is_ascii_digit() && w[2].is_ascii_digit())
}

/// Whether `ip` is reachable on the internet (Python's `is_global`).
fn is_global(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0))
}

impl Pii {
    /// `text` with its email and public IP addresses replaced; the stand-ins start over on
    /// every page, so the same page always reads the same.
    pub fn apply(&self, text: &str) -> String {
        // Most pages hold neither: a byte scan rules the regexes out, which would otherwise
        // run their automata over the whole text.
        let emails = if self.emails && text.contains('@') {
            let mut i = 0;
            EMAIL.replace_all(text, |_: &Captures| {
                i += 1;
                EMAILS[(i - 1) % EMAILS.len()]
            })
        } else {
            Cow::Borrowed(text)
        };
        let ips = if self.ips && has_dotted_digits(&emails) {
            let mut i = 0;
            IPV4.replace_all(&emails, |c: &Captures| match c[0].parse::<Ipv4Addr>() {
                Ok(ip) if is_global(ip) => {
                    i += 1;
                    IPS[(i - 1) % IPS.len()].to_string()
                }
                _ => c[0].to_string(),
            })
        } else {
            Cow::Borrowed(&*emails)
        };
        ips.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_public_ips_are_replaced_in_turn() {
        let pii = Pii::default();
        let text = "Write to Jane.Doe@Example.co.uk or ops@tessera.dev; \
                    servers 8.8.8.8 and 1.1.1.1, router 192.168.1.1, local 127.0.0.1, \
                    test net 198.18.0.5, version 1.2.3.";
        assert_eq!(
            pii.apply(text),
            "Write to email@example.com or firstname.lastname@example.org; \
             servers 22.214.171.124 and 126.96.36.199, router 192.168.1.1, local 127.0.0.1, \
             test net 198.18.0.5, version 1.2.3."
        );
        let off = Pii {
            emails: false,
            ips: false,
        };
        assert_eq!(off.apply(text), text);
        assert_eq!(pii.apply("nothing here"), "nothing here");
        assert_eq!(pii.apply("at 8.8.8.8"), "at 22.214.171.124");
        assert_eq!(pii.apply("a@b.co"), "email@example.com");
        assert!(!has_dotted_digits("v1. 2.x"));
    }
}
