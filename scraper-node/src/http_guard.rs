//! Who may change a scraper node's crawls over HTTP.
//!
//! A crawl is published under the operator's key, so starting or stopping one must take more
//! than a web page the operator happens to visit. Every request that changes state passes:
//!
//! ```text
//! POST ─▶ Host is a loopback name or a configured one   (else 403 host_not_allowed: DNS rebinding)
//!      ─▶ Origin, if sent, names such a host too         (else 403 cross_origin: another site's page)
//!      ─▶ Content-Type is application/json               (else 415 json_only: no form or text/plain post)
//!      ─▶ Authorization: Bearer <the node's API token>   (else 401 token_required)
//! GET, HEAD ─▶ open: they only read
//! ```
//!
//! The token is made at the node's first start and kept in `api-token` in its data directory,
//! readable by the operator alone; `tessera crawl` reads it from there.

use std::{io, path::Path, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The file in a scraper node's data directory that holds its API token.
pub const TOKEN_FILE: &str = "api-token";

/// Reads the node's API token from `data_dir`, creating it (mode 0600) on first use.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_token(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a token (64 hex digits)", path.display()),
            ));
        }
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    tessera_net::identity::create_key_file(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

fn is_token(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the guard lets through.
#[derive(Debug, Clone)]
pub struct HttpGuard {
    token: Arc<str>,
    /// Host names besides the loopback ones that the API answers to.
    hosts: Arc<[String]>,
}

impl HttpGuard {
    /// A guard for `token`, answering to loopback names and to `hosts`.
    pub fn new(token: String, hosts: Vec<String>) -> Self {
        Self {
            token: token.into(),
            hosts: hosts
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .into(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]") || self.hosts.contains(&host)
    }

    /// Why a request that changes state is refused, if it is.
    fn check(&self, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str, String)> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !self.host_allowed(strip_port(host)) {
            return Err((
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!("Host {host:?} is not this node's; crawls change only from this machine"),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            // IPv6 hosts come in brackets, as in Host.
            let parsed = url::Url::parse(origin).ok();
            if !parsed
                .as_ref()
                .and_then(url::Url::host_str)
                .is_some_and(|h| self.host_allowed(h))
            {
                return Err((
                    StatusCode::FORBIDDEN,
                    "cross_origin",
                    format!("requests from {origin:?} may not change crawls"),
                ));
            }
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json_only",
                "requests that change crawls carry JSON (Content-Type: application/json)".into(),
            ));
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.trim().as_bytes(), self.token.as_bytes()) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "token_required",
                format!(
                    "send the node's API token ({TOKEN_FILE} in its data directory) as a bearer token"
                ),
            ));
        }
        Ok(())
    }
}

/// `host:port`, `[v6]:port` or a bare host, without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: reads pass, changes are checked.
pub async fn guard(State(guard): State<HttpGuard>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err((status, code, message)) => {
            tessera_node::http::ApiError::new(status, code, message).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn good() -> Vec<(header::HeaderName, &'static str)> {
        vec![
            (header::HOST, "127.0.0.1:8090"),
            (header::CONTENT_TYPE, "application/json"),
            (
                header::AUTHORIZATION,
                "Bearer 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            ),
        ]
    }

    fn refused_as(extra: &[(header::HeaderName, &str)]) -> Option<&'static str> {
        let guard = HttpGuard::new(TOKEN.into(), vec!["scraper.lan".into()]);
        let mut pairs = good();
        pairs.extend_from_slice(extra);
        guard.check(&headers(&pairs)).err().map(|(_, e, _)| e)
    }

    #[test]
    fn only_the_operators_own_json_requests_with_the_token_pass() {
        assert_eq!(refused_as(&[]), None);
        assert_eq!(refused_as(&[(header::HOST, "localhost:8090")]), None);
        assert_eq!(refused_as(&[(header::HOST, "[::1]:8090")]), None);
        assert_eq!(refused_as(&[(header::HOST, "scraper.lan:8090")]), None);
        assert_eq!(
            refused_as(&[(header::ORIGIN, "http://127.0.0.1:8090")]),
            None
        );
        assert_eq!(refused_as(&[(header::ORIGIN, "http://[::1]:8090")]), None);
        // DNS rebinding: a foreign name resolving to 127.0.0.1.
        assert_eq!(
            refused_as(&[(header::HOST, "evil.example:8090")]),
            Some("host_not_allowed")
        );
        assert_eq!(refused_as(&[(header::HOST, "")]), Some("host_not_allowed"));
        // Another site's page posting to the node.
        assert_eq!(
            refused_as(&[(header::ORIGIN, "https://evil.example")]),
            Some("cross_origin")
        );
        assert_eq!(
            refused_as(&[(header::ORIGIN, "null")]),
            Some("cross_origin")
        );
        // Forms and text/plain need no preflight; only JSON is taken.
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert_eq!(refused_as(&[(header::CONTENT_TYPE, t)]), Some("json_only"));
        }
        assert_eq!(
            refused_as(&[(header::AUTHORIZATION, "Bearer 00")]),
            Some("token_required")
        );
        let mut no_token = good();
        no_token.pop();
        let guard = HttpGuard::new(TOKEN.into(), vec![]);
        assert!(guard.check(&headers(&no_token)).is_err());
    }

    #[test]
    fn the_token_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_token(dir.path()).unwrap();
        assert!(is_token(&first));
        assert_eq!(load_or_create_token(dir.path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(TOKEN_FILE), "not a token").unwrap();
        assert!(load_or_create_token(dir.path()).is_err());
    }
}
