//! The client side of a node's HTTP API: a call's refusal read in the one error shape
//! ([`crate::http::ErrorBody`]), and its JSON answer read into the node's own types. Each
//! node's typed client (the scraper's crawl API, the storage node's status, audits, receipts
//! and rewards) is a few lines over these.

use serde::de::DeserializeOwned;

use crate::http::ErrorBody;

/// A call to a node's HTTP API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The node could not be reached.
    #[error("reaching {url}: {source}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The node refused, with its reason.
    #[error("{message} ({url} answered {status}, {code})")]
    Refused {
        /// What was asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Why, for programs.
        code: String,
        /// Why, for people.
        message: String,
    },
    /// The answer is not what the API answers.
    #[error("reading the answer of {url}: {source}")]
    Answer {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
}

/// Sends `request` (to `url`); the response if it succeeded, else the node's reason.
pub async fn send(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, CallError> {
    let response = request
        .send()
        .await
        .map_err(|source| CallError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let (code, message) = match response.json::<ErrorBody>().await {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => ("unknown".to_string(), format!("no reason given ({status})")),
    };
    Err(CallError::Refused {
        url: url.to_string(),
        status: status.as_u16(),
        code,
        message,
    })
}

/// Sends `request` (to `url`) and reads its JSON answer as a `T`.
pub async fn read<T: DeserializeOwned>(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, CallError> {
    send(url, request)
        .await?
        .json()
        .await
        .map_err(|source| CallError::Answer {
            url: url.to_string(),
            source,
        })
}

/// An HTTP client for `base` whose every call ends within `timeout`.
pub fn http_client(base: &str, timeout: std::time::Duration) -> Result<reqwest::Client, CallError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|source| CallError::Unreachable {
            url: base.to_string(),
            source,
        })
}
