//! The one shape of an error on every node's HTTP API:
//!
//! ```text
//! HTTP/1.1 404 Not Found
//! content-type: application/json
//!
//! {"error": {"code": "not_found", "message": "no dataset alice/web"}}
//! ```
//!
//! Handlers answer [`ApiError`]; [`one_error_shape`] puts every other error answer of a router
//! into the same shape (axum's extractor rejections, unknown routes and methods, limits), so a
//! client reads errors one way whatever produced them.

use axum::{
    Json, Router,
    body::Body,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

/// Most bytes of a non-JSON error body kept as its message.
const MAX_MESSAGE: usize = 4096;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Its status.
    pub status: StatusCode,
    /// Why, for programs: a short snake_case word.
    pub code: &'static str,
    /// Why, for people.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: nothing there.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: the node cannot answer now; ask again later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: the node failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// An error answer's body, as clients read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Why, for programs.
    pub code: String,
    /// Why, for people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// The code of an error answer that did not name one, from its status.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "busy",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => "upstream",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    }
}

/// `router` with every error answer in the shape of [`ApiError`]: one whose body is already
/// JSON is left as it is (handlers answer `ApiError`); any other keeps its status and headers
/// and gets its text as the message. Unknown routes answer 404 in the same shape.
pub fn one_error_shape<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .fallback(|| async { ApiError::not_found("no such path") })
        .layer(axum::middleware::map_response(reshape))
}

async fn reshape(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = match axum::body::to_bytes(body, MAX_MESSAGE).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).trim().to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let shaped = ApiError::new(status, code_of(status), message).into_response();
    let (shaped_parts, shaped_body) = shaped.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &shaped_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, Body::new(shaped_body))
}

#[cfg(test)]
mod tests {
    use axum::{extract::Query, routing::get};

    use super::*;

    async fn answer(router: Router, uri: &str) -> (StatusCode, ErrorBody) {
        use tower::ServiceExt as _;
        let response = router
            .oneshot(
                axum::http::Request::builder()
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[derive(Deserialize)]
    struct Page {
        #[allow(dead_code)]
        limit: u32,
    }

    fn router() -> Router {
        one_error_shape(
            Router::new()
                .route(
                    "/teapot",
                    get(|| async {
                        ApiError::new(StatusCode::IM_A_TEAPOT, "teapot", "short and stout")
                    }),
                )
                .route("/page", get(|_: Query<Page>| async { "ok" }))
                .route(
                    "/plain",
                    get(|| async { (StatusCode::FORBIDDEN, "not from here") }),
                ),
        )
    }

    #[tokio::test]
    async fn every_error_answers_in_one_shape() {
        let (status, body) = answer(router(), "/teapot").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(
            (body.error.code.as_str(), body.error.message.as_str()),
            ("teapot", "short and stout")
        );

        // An extractor's rejection, a plain-text answer and an unknown path: the same shape.
        let (status, body) = answer(router(), "/page?limit=lots").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.error.code, "bad_request");
        assert!(
            body.error.message.contains("limit"),
            "{}",
            body.error.message
        );
        let (status, body) = answer(router(), "/plain").await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        assert_eq!(body.error.message, "not from here");
        let (status, body) = answer(router(), "/nowhere").await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (StatusCode::NOT_FOUND, "not_found")
        );
    }
}
