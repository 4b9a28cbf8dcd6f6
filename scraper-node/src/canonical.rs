//! One spelling per page: URL canonicalization, and the crawl's scope.
//!
//! Two links to one page must be one frontier entry, or the page is fetched (and stored)
//! twice. The `url` crate does the WHATWG work (lowercase scheme and host, IDNA, default ports
//! dropped, dot segments resolved); on top, fragments and empty queries go, percent-encoded
//! unreserved characters are decoded and hex digits upper-cased.

use url::Url;

use crate::robots::normalize;

/// Longest URL the crawler keeps; longer links are traps or junk.
pub const MAX_URL_LEN: usize = 2048;

/// Why a link is not crawlable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL, even relative to its page.
    #[error("not a URL: {0}")]
    Parse(String),
    /// Not http or https.
    #[error("scheme {0} is not crawled (http and https only)")]
    Scheme(String),
    /// Carries a user name or password, which a crawler never sends.
    #[error("URL carries credentials")]
    Credentials,
    /// No host.
    #[error("URL has no host")]
    NoHost,
    /// Over [`MAX_URL_LEN`].
    #[error("URL is {0} bytes; at most {MAX_URL_LEN}")]
    TooLong(usize),
}

/// Parses `link` (relative to `base` when given) into its canonical form.
pub fn canonicalize(link: &str, base: Option<&Url>) -> Result<Url, UrlError> {
    let link = link.trim();
    if link.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong(link.len()));
    }
    let mut url = match base {
        Some(base) => base.join(link),
        None => Url::parse(link),
    }
    .map_err(|e| UrlError::Parse(format!("{link}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    url.set_fragment(None);
    if url.query().is_some_and(str::is_empty) {
        url.set_query(None);
    }
    let path = normalize(url.path());
    if path != url.path() {
        url.set_path(&path);
    }
    if let Some(query) = url.query().map(normalize)
        && Some(query.as_str()) != url.query()
    {
        url.set_query(Some(&query));
    }
    let len = url.as_str().len();
    if len > MAX_URL_LEN {
        return Err(UrlError::TooLong(len));
    }
    Ok(url)
}

/// Which URLs a crawl may visit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Hosts whose pages (and whose subdomains' pages) are in scope.
    pub domains: Vec<String>,
    /// URL patterns in scope: `*` matches any characters, a final `$` the end.
    pub patterns: Vec<String>,
}

impl Scope {
    /// Whether `url` (canonical) is in scope. An empty scope admits nothing.
    pub fn admits(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_end_matches('.');
        self.domains.iter().any(|d| {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            host == d || host.strip_suffix(&d).is_some_and(|p| p.ends_with('.'))
        }) || self
            .patterns
            .iter()
            .any(|p| crate::robots::matches(p, url.as_str()))
    }
}

/// The frontier's key for a host: `host:port`, the unit of politeness.
pub fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonicalize(s, None).unwrap().to_string()
    }

    #[test]
    fn spellings_of_one_page_become_one() {
        let one = "http://example.com/a/b?x=1";
        for s in [
            "HTTP://Example.COM:80/a/b?x=1",
            "http://example.com/a/./c/../b?x=1#frag",
            "http://example.com/%61/b?x=1",
        ] {
            assert_eq!(canon(s), one, "{s}");
        }
        assert_eq!(canon("http://example.com"), "http://example.com/");
        assert_eq!(canon("http://example.com/?"), "http://example.com/");
        assert_eq!(
            canon("http://example.com/%7ejoe"),
            "http://example.com/~joe"
        );
        assert_eq!(
            canon("http://example.com/a%2fb"),
            "http://example.com/a%2Fb"
        );
        assert_eq!(
            canon("https://bücher.example/"),
            "https://xn--bcher-kva.example/"
        );
    }

    #[test]
    fn relative_links_resolve_against_their_page() {
        let base = Url::parse("http://example.com/dir/page.html").unwrap();
        let got = |s| canonicalize(s, Some(&base)).map(|u| u.to_string());
        assert_eq!(
            got("other.html").unwrap(),
            "http://example.com/dir/other.html"
        );
        assert_eq!(got("/top#x").unwrap(), "http://example.com/top");
        assert_eq!(got("//other.org/x").unwrap(), "http://other.org/x");
        assert_eq!(got("mailto:a@b.c"), Err(UrlError::Scheme("mailto".into())));
        assert_eq!(
            got("javascript:void(0)"),
            Err(UrlError::Scheme("javascript".into()))
        );
    }

    #[test]
    fn unwanted_urls_are_refused() {
        assert_eq!(
            canonicalize("http://user:pw@example.com/", None),
            Err(UrlError::Credentials)
        );
        assert!(matches!(
            canonicalize("not a url", None),
            Err(UrlError::Parse(_))
        ));
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            canonicalize(&long, None),
            Err(UrlError::TooLong(_))
        ));
    }

    #[test]
    fn scope_by_domain_and_pattern() {
        let scope = Scope {
            domains: vec!["example.com".into()],
            patterns: vec!["https://other.org/docs/*".into()],
        };
        let yes = |s: &str| scope.admits(&Url::parse(s).unwrap());
        assert!(yes("http://example.com/x"));
        assert!(yes("http://www.example.com/x"));
        assert!(!yes("http://badexample.com/x"));
        assert!(!yes("http://example.com.evil.net/x"));
        assert!(yes("https://other.org/docs/a"));
        assert!(!yes("https://other.org/blog/a"));
        assert!(!Scope::default().admits(&Url::parse("http://example.com/").unwrap()));
    }

    #[test]
    fn hosts_are_keyed_with_their_port() {
        let key = |s: &str| host_key(&Url::parse(s).unwrap());
        assert_eq!(key("http://example.com/a"), "example.com:80");
        assert_eq!(key("https://example.com/a"), "example.com:443");
        assert_eq!(key("http://127.0.0.1:8080/"), "127.0.0.1:8080");
    }
}
