//! A typed client of a storage node's HTTP API: `/status`, `/v1/audit` and `/v1/receipts`,
//! read into the node's own types; refusals in the one error shape. What `tessera audit status`
//! and `tessera rewards` use.

use std::time::Duration;

use tessera_node::api_client::{CallError, http_client, read};

use crate::{
    audit::AuditStatus,
    http::{CharterAnswer, ReceiptPage, Status},
};

/// A storage node's HTTP API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
}

impl NodeClient {
    /// The API of the node at `base` (`http://HOST:PORT`); every call ends within `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, CallError> {
        Ok(Self {
            http: http_client(base, timeout)?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// The address it was made with, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The node's `/status`.
    pub async fn status(&self) -> Result<Status, CallError> {
        self.get("/status").await
    }

    /// What its auditor knows (`/v1/audit`).
    pub async fn audit(&self) -> Result<AuditStatus, CallError> {
        self.get("/v1/audit").await
    }

    /// A page of the receipts it keeps made in `[from_ms, to_ms)`, after the cursor `after`
    /// of an earlier page.
    pub async fn receipts(
        &self,
        from_ms: u64,
        to_ms: u64,
        after: Option<&str>,
    ) -> Result<ReceiptPage, CallError> {
        // The cursor is hex: nothing to escape.
        let path = match after {
            Some(after) => format!("/v1/receipts?from={from_ms}&to={to_ms}&after={after}"),
            None => format!("/v1/receipts?from={from_ms}&to={to_ms}"),
        };
        self.get(&path).await
    }

    /// Hands the node the network's next charter (`POST /v1/charter`).
    pub async fn next_charter(&self, block: Vec<u8>) -> Result<CharterAnswer, CallError> {
        let url = format!("{}/v1/charter", self.base);
        read(&url, self.http.post(&url).body(block)).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        let url = format!("{}{path}", self.base);
        read(&url, self.http.get(&url)).await
    }
}
