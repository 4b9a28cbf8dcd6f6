//! The registry node's read-only HTTP API and shard gateway.
//!
//! ```text
//! GET /v1/datasets                               latest version of every dataset
//! GET /v1/datasets/{publisher}/{name}            every version, oldest first
//! GET /v1/datasets/{publisher}/{name}/{version}  one version (N, vN or latest) and its manifest
//! GET /v1/manifests/{cid}                        a manifest as JSON
//! GET /v1/shards/{cid}                           a shard's bytes, verified before they are sent
//! HEAD /v1/shards/{cid}                          its size, from the manifest
//! ```
//!
//! Shards answer `Range` requests (one range; 206, or 416 past the end) and carry their CID as
//! `ETag` with an immutable `Cache-Control`: a CID's bytes never change, so `If-None-Match`
//! with it is answered 304 and caches keep them forever. Verified shards stay on disk for the
//! next requests (a reader of Parquet over HTTP asks for the footer, then for each column
//! chunk), up to [`GATEWAY_KEEP`] of them and [`GATEWAY_KEEP_BYTES`].
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` with a status that matches the
//! code: `bad_request` 400, `not_found` 404, `busy` 503, `unavailable` 502, `internal` 500.

use std::{collections::VecDeque, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cid::Cid;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use tempfile::TempDir;
use tessera_client::{GetOptions, get::fetch_shard};
use tessera_formats::{Manifest, PublisherKey, address, layout::ShardLayout};
use tessera_node::http::ApiError;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::services::ServeFile;
use tracing::info;

use crate::{
    service::Registry,
    store::{AdmitError, Entry},
};

/// Shards fetched for the gateway at once; more requests get `busy`.
const GATEWAY_PARALLEL: usize = 4;
/// Most datasets in one list page.
const MAX_LIST: usize = 1000;
/// Verified shards kept on disk for the requests after the first.
pub const GATEWAY_KEEP: usize = 8;
/// Most bytes of verified shards kept.
pub const GATEWAY_KEEP_BYTES: u64 = 2 << 30;
/// A CID names the same bytes forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[derive(Clone)]
struct Api {
    registry: Registry,
    gateway: Arc<Semaphore>,
    kept: Arc<Mutex<VecDeque<Kept>>>,
}

/// A verified shard file, removed with its directory when it is let go.
struct Kept {
    cid: Cid,
    size: u64,
    dir: Arc<TempDir>,
}

/// The routes, to be merged into the node's HTTP server.
pub fn router(registry: Registry) -> Router {
    let api = Api {
        registry,
        gateway: Arc::new(Semaphore::new(GATEWAY_PARALLEL)),
        kept: Arc::new(Mutex::new(VecDeque::new())),
    };
    Router::new()
        .route("/v1/datasets", get(list))
        .route("/v1/datasets/{publisher}/{name}", get(versions))
        .route("/v1/datasets/{publisher}/{name}/{version}", get(version))
        .route("/v1/manifests/{cid}", get(manifest))
        .route("/v1/shards/{cid}", get(shard).head(shard_head))
        .with_state(api)
}

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> Self {
        ApiError::internal(e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdmitError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::service::blocking(f).await.map_err(ApiError::from)
}

fn record_json(e: &Entry) -> Value {
    let r = &e.record.record;
    json!({
        "record": e.cid.to_string(),
        "publisher": r.publisher.to_string(),
        "name": r.name,
        "version": r.version,
        "manifest": r.manifest.to_string(),
        "parent": r.parent.map(|c| c.to_string()),
        "time_ms": r.time_ms,
        "message": r.message,
    })
}

fn manifest_json(cid: &Cid, m: &Manifest) -> Value {
    let shards: Vec<Value> = m
        .shards
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "cid": s.layout.content.to_string(),
                "size": s.layout.size,
                "rows": s.rows,
                "row_groups": s.row_groups.iter().map(|g| json!({
                    "offset": g.offset, "size": g.size, "rows": g.rows,
                })).collect::<Vec<_>>(),
                "erasure": {
                    "k": s.layout.erasure.k,
                    "m": s.layout.erasure.m,
                    "stripe_size": s.layout.erasure.stripe_size,
                },
                "pieces": s.layout.pieces.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "cid": cid.to_string(),
        "version": m.version,
        "schema": m.schema.as_ref().map(|s| json!({ "format": s.format, "bytes": s.bytes.len() })),
        "shards": shards,
        "rows": m.total_rows(),
        "bytes": m.total_bytes(),
        "parent": m.parent.map(|c| c.to_string()),
        "created_ms": m.created_ms,
        "metadata": m.metadata,
    })
}

fn publisher(text: &str) -> Result<PublisherKey, ApiError> {
    text.parse()
        .map_err(|e: tessera_formats::record::RecordError| ApiError::bad_request(e.to_string()))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    /// `PUBLISHER/NAME` where the previous page ended.
    after: Option<String>,
}

async fn list(State(api): State<Api>, Query(q): Query<ListQuery>) -> ApiResult {
    let after = match q.after.as_deref().map(|a| a.split_once('/')) {
        None => None,
        Some(Some((p, name))) => Some((publisher(p)?, name.to_string())),
        Some(None) => return Err(ApiError::bad_request("after is PUBLISHER/NAME")),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let store = api.registry.store().clone();
    let (entries, more) = blocking(move || store.heads(after.as_ref(), limit)).await?;
    let datasets: Vec<Value> = entries.iter().map(record_json).collect();
    Ok(Json(json!({ "datasets": datasets, "more": more })).into_response())
}

async fn versions(State(api): State<Api>, Path((p, name)): Path<(String, String)>) -> ApiResult {
    let key = publisher(&p)?;
    let store = api.registry.store().clone();
    let mut all = Vec::new();
    loop {
        let (store, name) = (store.clone(), name.clone());
        let from = all.len() as u64 + 1;
        let (page, more) = blocking(move || store.chain(&key, &name, from, 1000)).await?;
        all.extend(page);
        if !more {
            break;
        }
    }
    if all.is_empty() {
        return Err(ApiError::not_found(format!("no dataset {p}/{name}")));
    }
    let versions: Vec<Value> = all.iter().map(record_json).collect();
    Ok(Json(json!({ "publisher": p, "name": name, "versions": versions })).into_response())
}

async fn version(
    State(api): State<Api>,
    Path((p, name, v)): Path<(String, String, String)>,
) -> ApiResult {
    let key = publisher(&p)?;
    let number = match v.as_str() {
        "latest" => None,
        v => Some(
            v.strip_prefix('v')
                .unwrap_or(v)
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("version {v:?} is N, vN or latest")))?,
        ),
    };
    let store = api.registry.store().clone();
    let lookup = name.clone();
    let entry = blocking(move || match number {
        Some(n) => store.version(&key, &lookup, n),
        None => store.head(&key, &lookup),
    })
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no version {v} of {p}/{name}")))?;
    let manifest_cid = entry.record.record.manifest;
    let manifest = load_manifest(&api, manifest_cid).await?;
    Ok(Json(json!({
        "record": record_json(&entry),
        "manifest": manifest_json(&manifest_cid, &manifest),
    }))
    .into_response())
}

async fn load_manifest(api: &Api, cid: Cid) -> Result<Manifest, ApiError> {
    let store = api.registry.store().clone();
    let block = blocking(move || store.manifest(&cid))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no manifest {cid} in this registry")))?;
    Manifest::from_block(&block).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("stored manifest {cid}: {e}"),
        )
    })
}

fn parse_cid(text: &str) -> Result<Cid, ApiError> {
    address::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn manifest(State(api): State<Api>, Path(cid): Path<String>) -> ApiResult {
    let cid = parse_cid(&cid)?;
    let manifest = load_manifest(&api, cid).await?;
    Ok(Json(manifest_json(&cid, &manifest)).into_response())
}

/// The layout of shard `cid` of a dataset this registry holds.
async fn shard_layout(api: &Api, cid: &str) -> Result<ShardLayout, ApiError> {
    let cid = parse_cid(cid)?;
    let store = api.registry.store().clone();
    let (manifest_cid, index) = blocking(move || store.shard(&cid)).await?.ok_or_else(|| {
        ApiError::not_found(format!("no dataset in this registry has shard {cid}"))
    })?;
    let manifest = load_manifest(api, manifest_cid).await?;
    manifest
        .shards
        .get(index)
        .filter(|s| s.layout.content == cid)
        .map(|s| s.layout.clone())
        .ok_or_else(|| {
            ApiError::not_found(format!("shard {cid} is not in manifest {manifest_cid}"))
        })
}

/// The headers every answer about a shard carries.
fn shard_headers(headers: &mut HeaderMap, cid: &Cid) {
    let etag = HeaderValue::from_str(&format!("\"{cid}\""));
    if let Ok(etag) = etag {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apache.parquet"),
    );
}

/// Whether the request already holds these bytes (`If-None-Match` with the CID).
fn unchanged(request: &HeaderMap, cid: &Cid) -> bool {
    let tag = cid.to_string();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/").trim_matches('"') == tag)
}

fn not_modified(cid: &Cid) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    shard_headers(response.headers_mut(), cid);
    response
}

async fn shard_head(
    State(api): State<Api>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let layout = shard_layout(&api, &cid).await?;
    if unchanged(&headers, &layout.content) {
        return Ok(not_modified(&layout.content));
    }
    let mut response = StatusCode::OK.into_response();
    shard_headers(response.headers_mut(), &layout.content);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(layout.size));
    Ok(response)
}

async fn shard(State(api): State<Api>, Path(cid): Path<String>, request: Request) -> ApiResult {
    let layout = shard_layout(&api, &cid).await?;
    let cid = layout.content;
    if unchanged(request.headers(), &cid) {
        return Ok(not_modified(&cid));
    }
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("whole")
        .to_owned();
    info!(%cid, size = layout.size, %range, "gateway: serving a shard");
    let dir = kept_or_fetched(&api, &layout).await?;
    let served = ServeFile::new(dir.path().join("shard"))
        .oneshot(request)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = served.into_response();
    if response.status().is_success() {
        shard_headers(response.headers_mut(), &cid);
        response.headers_mut().remove(header::LAST_MODIFIED);
    }
    Ok(response)
}

/// The directory holding shard `layout`'s verified file: kept from an earlier request, or
/// fetched now.
async fn kept_or_fetched(api: &Api, layout: &ShardLayout) -> Result<Arc<TempDir>, ApiError> {
    let cid = layout.content;
    {
        let mut kept = api.kept.lock();
        if let Some(i) = kept.iter().position(|k| k.cid == cid) {
            let hit = kept
                .remove(i)
                .ok_or_else(|| ApiError::internal("kept shard vanished"))?;
            let dir = hit.dir.clone();
            kept.push_back(hit);
            return Ok(dir);
        }
    }
    let Ok(_permit) = api.gateway.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the gateway is serving as many shards as it may; try again",
        ));
    };
    let spool = api
        .registry
        .spool()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // fetch_shard names the file only once its bytes hash to the shard's CID.
    fetch_shard(
        api.registry.session(),
        layout,
        &spool.path().join("shard"),
        &GetOptions::default(),
    )
    .await
    .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "unavailable", e.to_string()))?;
    let dir = Arc::new(spool);
    let mut kept = api.kept.lock();
    kept.push_back(Kept {
        cid,
        size: layout.size,
        dir: dir.clone(),
    });
    // A file being served stays readable through its open handle after its directory goes.
    while kept.len() > GATEWAY_KEEP
        || (kept.len() > 1 && kept.iter().map(|k| k.size).sum::<u64>() > GATEWAY_KEEP_BYTES)
    {
        kept.pop_front();
    }
    Ok(dir)
}
