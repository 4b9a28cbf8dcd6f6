//! robots.txt as RFC 9309 reads it: which paths a crawler may fetch, and which line said so.
//!
//! ```text
//! bytes (first 500 KiB) ─▶ lines ─▶ groups: [user-agent...] + [allow/disallow/crawl-delay...]
//! agent ─▶ the groups naming its product token (case-insensitive), combined; else the `*`
//!          groups, combined; else no group: everything allowed
//! path  ─▶ every rule whose pattern matches (`*` any octets, `$` the end); the longest
//!          pattern wins, and `allow` wins a tie
//! ```
//!
//! Pure: fetching robots.txt, its status codes and its cache live in the fetcher.

use std::fmt;

/// Octets of a robots.txt that are parsed; the rest is ignored (RFC 9309 asks for at least
/// 500 KiB).
pub const MAX_ROBOTS_BYTES: usize = 500 * 1024;

/// A parsed robots.txt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Robots {
    groups: Vec<Group>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Group {
    /// Product tokens, lowercased; `*` for the catch-all group.
    agents: Vec<String>,
    rules: Vec<Rule>,
    crawl_delay: Option<f64>,
}

/// One `allow` or `disallow` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Whether the rule allows.
    pub allow: bool,
    /// The path pattern, with percent-encoding normalized.
    pub pattern: String,
    /// The line it came from, counting from 1.
    pub line: usize,
    /// The line as written, trimmed.
    pub text: String,
}

/// What robots.txt says of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the path may be fetched.
    pub allowed: bool,
    /// The rule that decided, or `None` when no rule matched (allowed).
    pub rule: Option<Rule>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.allowed {
            "allowed"
        } else {
            "disallowed"
        };
        match &self.rule {
            Some(rule) => write!(f, "{word} by line {}: {}", rule.line, rule.text),
            None => write!(f, "{word}: no rule matches"),
        }
    }
}

impl Robots {
    /// A robots.txt that allows everything (none found, or a 4xx answer).
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// A robots.txt that disallows everything (a 5xx answer, or the server unreachable).
    pub fn disallow_all() -> Self {
        Self {
            groups: vec![Group {
                agents: vec!["*".into()],
                rules: vec![Rule {
                    allow: false,
                    pattern: "/".into(),
                    line: 0,
                    text: "(robots.txt unreachable: everything disallowed)".into(),
                }],
                crawl_delay: None,
            }],
        }
    }

    /// Parses the first [`MAX_ROBOTS_BYTES`] of `bytes`. Never fails: lines that are not
    /// rules are ignored, as the RFC asks.
    pub fn parse(bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(MAX_ROBOTS_BYTES)];
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut groups: Vec<Group> = Vec::new();
        // Whether the last line that counted was a user-agent line: consecutive ones share a
        // group.
        let mut in_agents = false;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push(Group::default());
                    }
                    in_agents = true;
                    if let Some(group) = groups.last_mut() {
                        group.agents.push(product_token(value));
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    // Rules before any user-agent line belong to no group.
                    let Some(group) = groups.last_mut() else {
                        continue;
                    };
                    // An empty pattern matches nothing.
                    if value.is_empty() {
                        continue;
                    }
                    group.rules.push(Rule {
                        allow: key == "allow",
                        pattern: normalize(value),
                        line: index + 1,
                        text: raw.trim().to_string(),
                    });
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let (Some(group), Ok(delay)) = (groups.last_mut(), value.parse::<f64>())
                        && delay.is_finite()
                        && delay >= 0.0
                    {
                        group.crawl_delay = Some(delay);
                    }
                }
                // Sitemap and unknown keys neither start nor end a group.
                _ => {}
            }
        }
        Self { groups }
    }

    /// What robots.txt says of `path` (the URL's path and query, percent-encoded) for the
    /// crawler whose user agent is `agent`.
    pub fn check(&self, agent: &str, path: &str) -> Verdict {
        let path = if path.is_empty() { "/" } else { path };
        if path == "/robots.txt" {
            return Verdict {
                allowed: true,
                rule: None,
            };
        }
        let path = normalize(path);
        let mut best: Option<&Rule> = None;
        for group in self.groups_for(agent) {
            for rule in &group.rules {
                if !matches(&rule.pattern, &path) {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        rule.pattern.len() > b.pattern.len()
                            || (rule.pattern.len() == b.pattern.len() && rule.allow && !b.allow)
                    }
                };
                if better {
                    best = Some(rule);
                }
            }
        }
        Verdict {
            allowed: best.is_none_or(|r| r.allow),
            rule: best.cloned(),
        }
    }

    /// The `Crawl-delay` of the groups that apply to `agent`, in seconds (the largest, where
    /// several give one).
    pub fn crawl_delay(&self, agent: &str) -> Option<f64> {
        self.groups_for(agent)
            .filter_map(|g| g.crawl_delay)
            .reduce(f64::max)
    }

    /// The groups that apply: those naming the agent's product token, or else the `*` ones.
    fn groups_for<'a>(&'a self, agent: &str) -> impl Iterator<Item = &'a Group> + 'a {
        let token = product_token(agent);
        let named = !token.is_empty() && self.groups.iter().any(|g| g.agents.contains(&token));
        let wanted = if named { token } else { "*".to_string() };
        self.groups
            .iter()
            .filter(move |g| g.agents.contains(&wanted))
    }
}

/// The product token of a user agent (`TesseraBot/0.1 (+url)` -> `tesserabot`), lowercased:
/// its leading letters, `_` and `-`. `*` stays `*`.
pub fn product_token(agent: &str) -> String {
    let agent = agent.trim();
    if agent.starts_with('*') {
        return "*".into();
    }
    agent
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_' || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether `path` matches `pattern`: `*` matches any octets, a final `$` the end of the path,
/// and without `$` the pattern need only match a prefix.
pub fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: a prefix match, or the whole path when anchored.
        return !anchored || rest.is_empty();
    };
    // Leftmost matches of the middle parts leave the most room for the rest.
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    if anchored {
        rest.ends_with(last)
    } else {
        rest.contains(last)
    }
}

/// Percent-encoding made comparable: octets outside printable ASCII are encoded, hex digits
/// upper-cased, and encoded unreserved characters decoded (RFC 9309 2.2.2, RFC 3986 6.2.2).
pub(crate) fn normalize(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| hex(*c)),
                bytes.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            let decoded = h << 4 | l;
            if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                out.push(char::from(decoded));
            } else {
                out.push_str(&format!("%{decoded:02X}"));
            }
            i += 3;
            continue;
        }
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const AGENT: &str = "TesseraBot/0.1 (+https://tessera.example/bot)";

    fn allowed(robots: &str, path: &str) -> bool {
        Robots::parse(robots.as_bytes()).check(AGENT, path).allowed
    }

    #[test]
    fn longest_match_wins_and_allow_wins_a_tie() {
        let r =
            "User-agent: *\nDisallow: /a\nAllow: /a/b\nDisallow: /a/b/c\nAllow: /x\nDisallow: /x\n";
        assert!(!allowed(r, "/a"));
        assert!(allowed(r, "/a/b"));
        assert!(!allowed(r, "/a/b/c/d"));
        assert!(allowed(r, "/x/y"));
        assert!(allowed(r, "/other"));
    }

    #[test]
    fn wildcards_and_end_anchors() {
        let r = "User-agent: *\nDisallow: /*.pdf$\nDisallow: /private*/secret\nAllow: /$\nDisallow: /\n";
        assert!(allowed(r, "/"));
        assert!(!allowed(r, "/index.html"));
        let r = "User-agent: *\nDisallow: /*.pdf$\nDisallow: /p*/s\n";
        assert!(!allowed(r, "/docs/a.pdf"));
        assert!(allowed(r, "/docs/a.pdf?x=1"));
        assert!(!allowed(r, "/private/area/secret"));
        assert!(allowed(r, "/public"));
    }

    #[test]
    fn the_named_group_replaces_the_catch_all_and_same_agent_groups_combine() {
        let r = "User-agent: *\nDisallow: /\n\nUser-agent: tesserabot\nDisallow: /a\n\nUser-agent: Other\nUser-agent: TESSERABOT\nDisallow: /b\nCrawl-delay: 2.5\n";
        let robots = Robots::parse(r.as_bytes());
        assert!(robots.check(AGENT, "/c").allowed);
        assert!(!robots.check(AGENT, "/a").allowed);
        assert!(!robots.check(AGENT, "/b").allowed);
        assert!(!robots.check("SomeoneElse", "/c").allowed);
        assert_eq!(robots.crawl_delay(AGENT), Some(2.5));
        assert_eq!(robots.crawl_delay("SomeoneElse"), None);
    }

    #[test]
    fn the_deciding_line_is_reported() {
        let r = "# comment\nUser-agent: *\nDisallow: /private # keep out\nAllow: /private/ok\n";
        let robots = Robots::parse(r.as_bytes());
        let v = robots.check(AGENT, "/private/x");
        assert!(!v.allowed);
        let rule = v.rule.unwrap();
        assert_eq!(
            (rule.line, rule.text.as_str()),
            (3, "Disallow: /private # keep out")
        );
        assert_eq!(
            robots.check(AGENT, "/private/ok").to_string(),
            "allowed by line 4: Allow: /private/ok"
        );
        assert_eq!(
            robots.check(AGENT, "/x").to_string(),
            "allowed: no rule matches"
        );
    }

    #[test]
    fn odd_input_is_tolerated() {
        // Rules before any group, empty disallow, garbage lines, CRLF, a BOM, no colon.
        let r = "\u{feff}Disallow: /\r\nnonsense\r\nUser-agent: *\r\nDisallow:\r\nDisallow: /z\r\n";
        assert!(allowed(r, "/a"));
        assert!(!allowed(r, "/z"));
        assert!(allowed("", "/anything"));
        assert!(
            Robots::parse(&[0xff, 0xfe, 0x00, b'\n'])
                .check(AGENT, "/")
                .allowed
        );
        // robots.txt itself is always allowed.
        assert!(allowed("User-agent: *\nDisallow: /", "/robots.txt"));
        assert!(!Robots::disallow_all().check(AGENT, "/").allowed);
    }

    #[test]
    fn percent_encoding_is_compared_normalized() {
        let r = "User-agent: *\nDisallow: /%7Ejoe/\nDisallow: /caf\u{e9}\nDisallow: /a%2fb\n";
        assert!(!allowed(r, "/~joe/index"));
        assert!(!allowed(r, "/caf%C3%A9"));
        assert!(!allowed(r, "/a%2Fb"));
        assert!(allowed(r, "/a/b"));
    }

    #[test]
    fn only_the_first_500_kib_are_read() {
        let mut r = String::from("User-agent: *\n");
        while r.len() < MAX_ROBOTS_BYTES {
            r.push_str("Allow: /filler\n");
        }
        r.push_str("Disallow: /late\n");
        assert!(allowed(&r, "/late"));
    }

    /// Matching by regular language, the slow way: `*` is any string, `$` the end.
    fn reference(pattern: &str, path: &str) -> bool {
        let (pattern, anchored) = match pattern.strip_suffix('$') {
            Some(p) => (p, true),
            None => (pattern, false),
        };
        let (p, s) = (pattern.as_bytes(), path.as_bytes());
        // m[i][j]: p[..i] matches s[..j].
        let mut m = vec![vec![false; s.len() + 1]; p.len() + 1];
        m[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=s.len() {
                m[i][j] = if p[i - 1] == b'*' {
                    m[i - 1][j] || (j > 0 && m[i][j - 1])
                } else {
                    j > 0 && m[i - 1][j - 1] && p[i - 1] == s[j - 1]
                };
            }
        }
        if anchored {
            m[p.len()][s.len()]
        } else {
            (0..=s.len()).any(|j| m[p.len()][j])
        }
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_reference(
            pattern in "/[ab*]{0,6}\\$?",
            path in "/[ab]{0,8}",
        ) {
            prop_assert_eq!(matches(&pattern, &path), reference(&pattern, &path));
        }

        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let robots = Robots::parse(&bytes);
            let _ = robots.check(AGENT, "/a");
            let _ = robots.crawl_delay(AGENT);
        }
    }
}
