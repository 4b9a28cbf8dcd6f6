//! A typed client of a scraper node's crawl API (`/v1/crawls`), with the node's own types and
//! its one error shape: what `tessera crawl` and the tests use.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_node::api_client::{CallError, http_client, read, send};

use crate::{coordinator::CrawlStatus, crawl_store::CrawlState, node::NodeStatus, spec::CrawlSpec};

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to `POST /v1/crawls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The new crawl's id.
    pub id: String,
}

/// A call to the crawl API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrawlClientError {
    /// The call failed, or the node refused it with its reason.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A change was asked without the node's API token.
    #[error("changing crawls needs the scraper node's API token")]
    NoToken,
    /// What was waited for did not happen in time.
    #[error("{0}")]
    TimedOut(String),
    /// The crawl ended without being published.
    #[error("crawl {id} cannot be published: {why}")]
    Unpublishable {
        /// The crawl.
        id: String,
        /// Why.
        why: String,
    },
}

/// A scraper node's crawl API.
#[derive(Debug, Clone)]
pub struct CrawlClient {
    http: reqwest::Client,
    base: String,
    api: String,
    token: Option<String>,
}

impl CrawlClient {
    /// The API of the node at `base` (`http://HOST:PORT`); `token` is needed to start and stop
    /// crawls, not to read them.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, CrawlClientError> {
        let base = base.trim_end_matches('/');
        Ok(Self {
            http: http_client(base, TIMEOUT)?,
            base: base.to_string(),
            api: format!("{base}/v1/crawls"),
            token,
        })
    }

    /// Starts a crawl of `spec`; its id.
    pub async fn start(&self, spec: &CrawlSpec) -> Result<String, CrawlClientError> {
        let request = self
            .http
            .post(&self.api)
            .bearer_auth(self.token()?)
            .json(spec);
        let started: Started = read(&self.api, request).await?;
        Ok(started.id)
    }

    /// Every crawl of the node.
    pub async fn list(&self) -> Result<Vec<CrawlStatus>, CrawlClientError> {
        Ok(read(&self.api, self.http.get(&self.api)).await?)
    }

    /// The crawl `id`.
    pub async fn status(&self, id: &str) -> Result<CrawlStatus, CrawlClientError> {
        let url = format!("{}/{id}", self.api);
        Ok(read(&url, self.http.get(&url)).await?)
    }

    /// Stops the crawl `id`: no new leases.
    pub async fn stop(&self, id: &str) -> Result<(), CrawlClientError> {
        let url = format!("{}/{id}/stop", self.api);
        let request = self
            .http
            .post(&url)
            .bearer_auth(self.token()?)
            .json(&serde_json::json!({}));
        send(&url, request).await?;
        Ok(())
    }

    /// The node's status (`GET /v1/node`).
    pub async fn node(&self) -> Result<NodeStatus, CrawlClientError> {
        let url = format!("{}/v1/node", self.base);
        Ok(read(&url, self.http.get(&url)).await?)
    }

    /// Waits until `count` nodes work for this coordinator (itself included when it works).
    pub async fn wait_for_workers(
        &self,
        count: usize,
        within: Duration,
    ) -> Result<(), CrawlClientError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.node().await?.workers.len();
            if seen >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CrawlClientError::TimedOut(format!(
                    "{seen} of {count} nodes asked for work within {within:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the crawl `id` is published; its status then.
    pub async fn wait_published(
        &self,
        id: &str,
        within: Duration,
    ) -> Result<CrawlStatus, CrawlClientError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self.status(id).await?;
            match &status.state {
                CrawlState::Published { .. } => return Ok(status),
                CrawlState::Unpublishable(why) => {
                    return Err(CrawlClientError::Unpublishable {
                        id: id.to_string(),
                        why: why.clone(),
                    });
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(CrawlClientError::TimedOut(format!(
                        "crawl {id} was not published within {within:?}: {}",
                        status.state
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn token(&self) -> Result<&str, CrawlClientError> {
        self.token.as_deref().ok_or(CrawlClientError::NoToken)
    }
}
