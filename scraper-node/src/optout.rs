//! Opt-outs from AI use, honoured by default: TDMRep (the `tdm-reservation` header and meta
//! tag, `/.well-known/tdmrep.json`) and `noai` (robots meta tags, `X-Robots-Tag`).
//!
//! Pure: the fetcher hands in headers and bytes; the extractor hands in meta tags.

use serde::Deserialize;

use crate::robots::{matches, product_token};

/// Largest `tdmrep.json` read.
pub const MAX_TDMREP_BYTES: usize = 64 * 1024;

/// What a page's robots directives say, from meta tags and `X-Robots-Tag` headers that apply
/// to this crawler (unnamed, or naming its product token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `noai`: the page must not be used for AI.
    pub noai: bool,
    /// `noindex` or `none`: the page must not be kept.
    pub noindex: bool,
    /// `nofollow` or `none`: the page's links must not be followed.
    pub nofollow: bool,
}

impl Directives {
    /// Whether the page may go into a dataset.
    pub fn keep(&self) -> bool {
        !self.noai && !self.noindex
    }

    /// Adds one `X-Robots-Tag` header value: `noai, nofollow`, or `agent: noai`.
    pub fn add_header(&mut self, value: &str, agent: &str) {
        // A value may name an agent before its directives; a name is a token before a colon
        // that is not itself a directive (unavailable_after: takes a date).
        let (named, list) = match value.split_once(':') {
            Some((name, rest)) if !name.trim().eq_ignore_ascii_case("unavailable_after") => {
                (Some(name.trim()), rest)
            }
            _ => (None, value),
        };
        if named.is_none_or(|n| product_token(n) == product_token(agent)) {
            self.add_list(list);
        }
    }

    /// Adds one `<meta name=NAME content=CONTENT>`: `robots` applies to every crawler, a
    /// product token to that crawler alone.
    pub fn add_meta(&mut self, name: &str, content: &str, agent: &str) {
        let name = name.trim();
        if name.eq_ignore_ascii_case("robots") || product_token(name) == product_token(agent) {
            self.add_list(content);
        }
    }

    fn add_list(&mut self, list: &str) {
        for directive in list.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            match directive.as_str() {
                "noai" => self.noai = true,
                "noindex" => self.noindex = true,
                "nofollow" => self.nofollow = true,
                "none" => {
                    self.noindex = true;
                    self.nofollow = true;
                }
                _ => {}
            }
        }
    }
}

/// Whether a `tdm-reservation` value (header or meta tag) reserves the rights: `1`.
pub fn tdm_reserved(value: &str) -> bool {
    value.trim() == "1"
}

/// A site's `/.well-known/tdmrep.json`: rules matched in order, the first that matches a path
/// decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TdmRep {
    rules: Vec<(String, bool)>,
}

#[derive(Deserialize)]
struct TdmRule {
    location: String,
    #[serde(rename = "tdm-reservation")]
    reservation: u8,
}

/// A `tdmrep.json` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tdmrep.json: {0}")]
pub struct TdmRepError(String);

impl TdmRep {
    /// No reservations (no file, or a 4xx).
    pub fn none() -> Self {
        Self::default()
    }

    /// Every path reserved: the file could not be read, so the crawler assumes the worst.
    pub fn reserve_all() -> Self {
        Self {
            rules: vec![("/".into(), true)],
        }
    }

    /// Parses the file, refusing one over [`MAX_TDMREP_BYTES`].
    pub fn parse(bytes: &[u8]) -> Result<Self, TdmRepError> {
        if bytes.len() > MAX_TDMREP_BYTES {
            return Err(TdmRepError(format!(
                "{} bytes; at most {MAX_TDMREP_BYTES}",
                bytes.len()
            )));
        }
        let rules: Vec<TdmRule> =
            serde_json::from_slice(bytes).map_err(|e| TdmRepError(e.to_string()))?;
        Ok(Self {
            rules: rules
                .into_iter()
                .map(|r| {
                    let location = if r.location.starts_with('/') {
                        r.location
                    } else {
                        format!("/{}", r.location)
                    };
                    (location, r.reservation == 1)
                })
                .collect(),
        })
    }

    /// Whether the rights on `path` are reserved.
    pub fn reserved(&self, path: &str) -> bool {
        self.rules
            .iter()
            .find(|(location, _)| matches(location, path))
            .is_some_and(|(_, reserved)| *reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "TesseraBot/0.1";

    #[test]
    fn headers_and_meta_tags_apply_to_this_crawler_only() {
        let mut d = Directives::default();
        d.add_header("otherbot: noai", AGENT);
        assert!(d.keep());
        d.add_header("unavailable_after: 25 Jun 2010 15:00:00 PST", AGENT);
        assert!(d.keep());
        d.add_header("tesserabot: noindex", AGENT);
        assert!(!d.keep());

        let mut d = Directives::default();
        d.add_header("NoAI, noimageai", AGENT);
        assert!(d.noai && !d.nofollow);

        let mut d = Directives::default();
        d.add_meta("robots", "none", AGENT);
        assert!(d.noindex && d.nofollow);
        let mut d = Directives::default();
        d.add_meta("googlebot", "noai", AGENT);
        d.add_meta("TesseraBot", "nofollow", AGENT);
        assert!(d.keep() && d.nofollow);
    }

    #[test]
    fn tdmrep_rules_match_in_order() {
        let file = br#"[
            {"location": "/public/*", "tdm-reservation": 0},
            {"location": "/*", "tdm-reservation": 1, "tdm-policy": "https://example.com/policy.json"}
        ]"#;
        let rep = TdmRep::parse(file).unwrap();
        assert!(!rep.reserved("/public/a.html"));
        assert!(rep.reserved("/private/a.html"));
        assert!(!TdmRep::none().reserved("/x"));
        assert!(TdmRep::reserve_all().reserved("/x"));
        assert!(TdmRep::parse(b"{not json").is_err());
        assert!(TdmRep::parse(&vec![b' '; MAX_TDMREP_BYTES + 1]).is_err());
        assert!(tdm_reserved(" 1 ") && !tdm_reserved("0"));
    }
}
