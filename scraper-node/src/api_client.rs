//! A typed client of a scraper node's crawl API (`/v1/crawls`), with the node's own types and
//! its one error shape: what `tessera crawl` and the tests use.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_node::http::ErrorBody;

use crate::{coordinator::CrawlStatus, spec::CrawlSpec};

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
    /// The node could not be reached.
    #[error("reaching the scraper node at {url}: {source}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The node refused, with its reason.
    #[error("{message} ({status}, {code})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Why, for programs.
        code: String,
        /// Why, for people.
        message: String,
    },
    /// The answer is not what the API answers.
    #[error("reading the scraper node's answer to {url}: {source}")]
    Answer {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A change was asked without the node's API token.
    #[error("changing crawls needs the scraper node's API token")]
    NoToken,
}

/// A scraper node's crawl API.
#[derive(Debug, Clone)]
pub struct CrawlClient {
    http: reqwest::Client,
    api: String,
    token: Option<String>,
}

impl CrawlClient {
    /// The API of the node at `base` (`http://HOST:PORT`); `token` is needed to start and stop
    /// crawls, not to read them.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, CrawlClientError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|source| CrawlClientError::Unreachable {
                url: base.to_string(),
                source,
            })?;
        Ok(Self {
            http,
            api: format!("{}/v1/crawls", base.trim_end_matches('/')),
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
        read(&self.api, self.http.get(&self.api)).await
    }

    /// The crawl `id`.
    pub async fn status(&self, id: &str) -> Result<CrawlStatus, CrawlClientError> {
        let url = format!("{}/{id}", self.api);
        read(&url, self.http.get(&url)).await
    }

    /// Stops the crawl `id`: no new leases.
    pub async fn stop(&self, id: &str) -> Result<(), CrawlClientError> {
        let url = format!("{}/{id}/stop", self.api);
        let request = self
            .http
            .post(&url)
            .bearer_auth(self.token()?)
            .json(&serde_json::json!({}));
        send(&url, request).await.map(drop)
    }

    fn token(&self) -> Result<&str, CrawlClientError> {
        self.token.as_deref().ok_or(CrawlClientError::NoToken)
    }
}

/// Sends `request`; the response if it succeeded, else the node's reason.
async fn send(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, CrawlClientError> {
    let response = request
        .send()
        .await
        .map_err(|source| CrawlClientError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let (code, message) = match response.json::<ErrorBody>().await {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => (
            "unknown".to_string(),
            format!("the scraper node answered {status}"),
        ),
    };
    Err(CrawlClientError::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

/// Sends `request` and reads its JSON answer as a `T`.
async fn read<T: serde::de::DeserializeOwned>(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, CrawlClientError> {
    send(url, request)
        .await?
        .json()
        .await
        .map_err(|source| CrawlClientError::Answer {
            url: url.to_string(),
            source,
        })
}
