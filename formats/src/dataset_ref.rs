//! What a user types to name a dataset version: a manifest CID, or
//! `[PUBLISHER/]NAME[@latest|@vN]`, where `PUBLISHER` is a publisher key in hex or a prefix of
//! at least [`MIN_PUBLISHER_PREFIX`] digits.

use std::{fmt, str::FromStr};

use cid::Cid;

use crate::{
    address,
    record::{RecordError, check_name},
};

/// Shortest publisher prefix accepted: 64 bits, which nobody grinds a key to match (32 bits
/// take minutes on a laptop, so a squatter could share an 8-digit prefix).
pub const MIN_PUBLISHER_PREFIX: usize = 16;

/// Which version of a named dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    /// The newest version.
    Latest,
    /// Version `n`.
    Number(u64),
}

/// A dataset version as a user names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetRef {
    /// A manifest CID.
    Cid(Cid),
    /// A name, resolved through a registry.
    Named {
        /// A publisher key or a prefix of it (lowercase hex), if given.
        publisher: Option<String>,
        /// The dataset's name.
        name: String,
        /// The version.
        version: VersionSel,
    },
}

/// A reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is neither a manifest CID nor [PUBLISHER/]NAME[@latest|@vN]: {reason}")]
pub struct RefError {
    /// What was given.
    pub text: String,
    /// Why it does not parse.
    pub reason: String,
}

impl FromStr for DatasetRef {
    type Err = RefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| RefError {
            text: text.to_string(),
            reason,
        };
        if !text.contains(['@', '/']) {
            match address::parse(text) {
                Ok(cid) => return Ok(DatasetRef::Cid(cid)),
                // A CID cut short, or mistyped, is not quietly taken for a name.
                Err(e) if looks_like_cid(text) => {
                    return Err(fail(format!(
                        "looks like a CID but is not one (cut short when copied?): {e}"
                    )));
                }
                Err(_) => {}
            }
        }
        let (path, version) = match text.split_once('@') {
            None => (text, VersionSel::Latest),
            Some((path, "latest")) => (path, VersionSel::Latest),
            Some((path, v)) => {
                let n = v
                    .strip_prefix('v')
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| fail(format!("version {v:?} is not 'latest' or vN (N ≥ 1)")))?;
                (path, VersionSel::Number(n))
            }
        };
        let (publisher, name) = match path.split_once('/') {
            None => (None, path),
            Some((publisher, name)) => {
                check_publisher(publisher).map_err(&fail)?;
                (Some(publisher.to_string()), name)
            }
        };
        check_name(name).map_err(|e: RecordError| fail(e.to_string()))?;
        Ok(DatasetRef::Named {
            publisher,
            name: name.to_string(),
            version,
        })
    }
}

fn check_publisher(p: &str) -> Result<(), String> {
    let hex = p
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex || p.len() < MIN_PUBLISHER_PREFIX || p.len() > 64 {
        return Err(format!(
            "publisher {p:?} is not {MIN_PUBLISHER_PREFIX} to 64 lowercase hex digits"
        ));
    }
    Ok(())
}

impl fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetRef::Cid(cid) => write!(f, "{cid}"),
            DatasetRef::Named {
                publisher,
                name,
                version,
            } => {
                if let Some(p) = publisher {
                    write!(f, "{p}/")?;
                }
                match version {
                    VersionSel::Latest => write!(f, "{name}@latest"),
                    VersionSel::Number(n) => write!(f, "{name}@v{n}"),
                }
            }
        }
    }
}

/// A CIDv1 in base32 as Tessera writes them (`bafy...`, `bafk...`): lowercase base32 only,
/// and longer than names are in practice.
fn looks_like_cid(text: &str) -> bool {
    (text.starts_with("bafy") || text.starts_with("bafk"))
        && text.len() >= 20
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cid_cut_short_is_no_name() {
        let whole = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";
        assert!(matches!(whole.parse(), Ok(DatasetRef::Cid(_))));
        let err = whole[..30].parse::<DatasetRef>().unwrap_err().to_string();
        assert!(err.contains("looks like a CID but is not one"), "{err}");
        // Short names, and names with other characters, are still names.
        for name in ["bafybook", "bafkr-corpus-2024-december", "baffle"] {
            assert!(
                matches!(name.parse(), Ok(DatasetRef::Named { .. })),
                "{name}"
            );
        }
    }

    fn named(publisher: Option<&str>, name: &str, version: VersionSel) -> DatasetRef {
        DatasetRef::Named {
            publisher: publisher.map(String::from),
            name: name.into(),
            version,
        }
    }

    #[test]
    fn every_form_parses() {
        let cid = address::dag_cbor_cid(b"m");
        assert_eq!(
            cid.to_string().parse::<DatasetRef>().unwrap(),
            DatasetRef::Cid(cid)
        );
        assert_eq!(
            "web".parse::<DatasetRef>().unwrap(),
            named(None, "web", VersionSel::Latest)
        );
        assert_eq!(
            "web@latest".parse::<DatasetRef>().unwrap(),
            named(None, "web", VersionSel::Latest)
        );
        assert_eq!(
            "web@v3".parse::<DatasetRef>().unwrap(),
            named(None, "web", VersionSel::Number(3))
        );
        let key = "ab".repeat(32);
        assert_eq!(
            format!("{key}/web@v3").parse::<DatasetRef>().unwrap(),
            named(Some(&key), "web", VersionSel::Number(3))
        );
        assert_eq!(
            "deadbeefdeadbeef/web".parse::<DatasetRef>().unwrap(),
            named(Some("deadbeefdeadbeef"), "web", VersionSel::Latest)
        );
        for r in ["web@v3", "deadbeefdeadbeef/web@latest"] {
            assert_eq!(r.parse::<DatasetRef>().unwrap().to_string(), r);
        }
    }

    #[test]
    fn bad_references_say_why() {
        for bad in [
            "",
            "web@",
            "web@v0",
            "web@3",
            "web@vx",
            "dead/web",
            "deadbeef/web",
            "DEADBEEFDEADBEEF/web",
            "a/b/c",
            "Web",
            "web@v1@v2",
        ] {
            let err = bad.parse::<DatasetRef>().unwrap_err();
            assert_eq!(err.text, bad);
            assert!(!err.reason.is_empty());
        }
    }
}
