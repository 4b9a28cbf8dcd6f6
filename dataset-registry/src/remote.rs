//! What clients ask registry nodes: submit a record, list datasets, read a dataset's log and
//! resolve a reference to a manifest CID. Every record that comes back is verified here again:
//! a registry node is trusted for availability, not for truth.

use std::{
    collections::{HashSet, VecDeque},
    time::{Duration, Instant},
};

use cid::Cid;
use serde_bytes::ByteBuf;
use tessera_client::Session;
use tessera_formats::{
    DatasetRef, PublisherKey, SignedRecord, VersionSel,
    address::dag_cbor_cid,
    rotation::{SignedRotation, check_chain},
};
use tessera_net::{NetError, PeerId};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::{
    protocol::{
        MAX_RECORDS_PER_RESPONSE, RegistryErrorCode, RegistryProtocol, RegistryRequest,
        RegistryResponse,
    },
    service::rendezvous,
    store::{Entry, Evidence},
};

/// A registry call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No registry node could be reached.
    #[error("no registry node answered{}", tried(.0))]
    NoRegistry(Vec<(PeerId, String)>),
    /// A registry node refused the record.
    #[error("the registry refused the record ({}): {message}", .code.as_str())]
    Refused {
        /// Why, for programs.
        code: RegistryErrorCode,
        /// Why, for people.
        message: String,
    },
    /// No dataset matches the reference.
    #[error("no dataset matches {0}")]
    NotFound(String),
    /// The dataset is there, but not the version asked for.
    #[error("{dataset} has no version {version}; its latest is v{latest}")]
    NoSuchVersion {
        /// The dataset, as asked for.
        dataset: String,
        /// The version asked for.
        version: u64,
        /// The latest version there is.
        latest: u64,
    },
    /// Several publishers have a dataset of that name.
    #[error("{name} is published by several keys; name one as PUBLISHER/{name}: {}", .publishers.join(", "))]
    Ambiguous {
        /// The dataset name.
        name: String,
        /// The publishers' keys.
        publishers: Vec<String>,
    },
    /// A publisher signed two records for one version with different manifests: the
    /// dataset's history forked, and neither record is taken.
    #[error(
        "publisher {publisher} signed two different records for {name}@v{version}: {first} and {second}; \
         neither is used"
    )]
    Equivocation {
        /// The publisher.
        publisher: PublisherKey,
        /// The dataset.
        name: String,
        /// The version signed twice.
        version: u64,
        /// One record's CID.
        first: Box<Cid>,
        /// The other's.
        second: Box<Cid>,
        /// Both signed record blocks: evidence anyone can check.
        evidence: Box<Evidence>,
    },
    /// A publisher signed two different rotations of its key with one number.
    #[error(
        "publisher {publisher} rotated its key two different ways; its records after that are not used"
    )]
    KeyFork {
        /// The publisher.
        publisher: PublisherKey,
    },
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

fn tried(attempts: &[(PeerId, String)]) -> String {
    if attempts.is_empty() {
        return " (none found)".into();
    }
    let list: Vec<String> = attempts
        .iter()
        .map(|(p, why)| format!("{p}: {why}"))
        .collect();
    format!(": {}", list.join("; "))
}

/// Registry requests in flight at once: a few, so that one node that is gone or frozen is
/// never waited on while others could answer, and a node with many connections does not ask
/// them all.
const ASKS_AT_ONCE: usize = 4;

/// Sends `request` to registry nodes, several at once, and returns their final answers: the
/// first, and up to `want` in all of those that come within as long again as the first took
/// (50 ms to 1 s), so that a reader can compare them and take the most complete rather than
/// the fastest. A refusal of the record itself is final; a busy, failing or silent node is passed
/// over. The peers this session is connected to are asked at once (a bootstrap node is often
/// a registry), the registry nodes the DHT names as the lookup finds them.
async fn ask(
    session: &Session,
    request: RegistryRequest,
    want: usize,
) -> Result<Vec<(PeerId, RegistryResponse)>, RemoteError> {
    let net = session.net();
    let mut asked: HashSet<PeerId> = HashSet::from([session.peer_id()]);
    let mut waiting: VecDeque<PeerId> = net.info().await?.connected_peers.into();
    let lookup = net.find_providers(rendezvous());
    tokio::pin!(lookup);
    let (mut looking, mut asks, mut attempts) = (true, JoinSet::new(), Vec::new());
    let (started, mut answers, mut until) = (Instant::now(), Vec::new(), None);
    loop {
        while answers.len() < want
            && asks.len() < ASKS_AT_ONCE
            && let Some(peer) = waiting.pop_front()
        {
            if asked.insert(peer) {
                let (net, request) = (net.clone(), request.clone());
                let timeout = session.timeouts().finish;
                asks.spawn(async move {
                    let call = net.request::<RegistryProtocol>(peer, request);
                    (peer, tokio::time::timeout(timeout, call).await)
                });
            }
        }
        if answers.len() >= want || (asks.is_empty() && (!looking || !answers.is_empty())) {
            break;
        }
        tokio::select! {
            found = &mut lookup, if looking => {
                looking = false;
                // Known registry nodes go before the other connected peers.
                for peer in found.unwrap_or_default() {
                    waiting.push_front(peer);
                }
            }
            Some(joined) = asks.join_next() => {
                let Ok((peer, answer)) = joined else { continue };
                match answer {
                    Ok(Ok(RegistryResponse::Error {
                        code: code @ (RegistryErrorCode::Busy | RegistryErrorCode::Internal),
                        message,
                    })) => attempts.push((peer, format!("{}: {message}", code.as_str()))),
                    Ok(Ok(response)) => {
                        answers.push((peer, response));
                        if answers.len() >= want {
                            break;
                        }
                        let grace = started.elapsed().clamp(GRACE_MIN, GRACE_MAX);
                        until.get_or_insert(tokio::time::Instant::now() + grace);
                        continue;
                    }
                    Ok(Err(e)) => attempts.push((peer, e.to_string())),
                    Err(_) => attempts.push((peer, "no answer in time".into())),
                }
                debug!(%peer, "registry node did not answer; asking the others");
            }
            () = tokio::time::sleep_until(until.unwrap_or_else(tokio::time::Instant::now)), if until.is_some() => break,
        }
    }
    if answers.is_empty() {
        return Err(RemoteError::NoRegistry(attempts));
    }
    Ok(answers)
}

/// How long a reader waits for more registry answers after the first: as long again as the
/// first took, within these bounds.
const GRACE_MIN: Duration = Duration::from_millis(50);
const GRACE_MAX: Duration = Duration::from_secs(1);

/// Submits a signed record block; returns its CID once a registry node accepted it.
pub async fn submit(session: &Session, block: Vec<u8>) -> Result<Cid, RemoteError> {
    let first = ask(session, RegistryRequest::Submit { record: block }, 1).await?;
    match first
        .into_iter()
        .next()
        .ok_or(RemoteError::NoRegistry(Vec::new()))?
    {
        (_, RegistryResponse::Accepted { record }) => Ok(record),
        (_, RegistryResponse::Error { code, message }) => {
            Err(RemoteError::Refused { code, message })
        }
        (peer, other) => Err(RemoteError::NoRegistry(vec![(
            peer,
            format!("unexpected answer {other:?}"),
        )])),
    }
}

/// Verifies record blocks from a registry node; drops (and logs) any that fail.
fn verified(peer: PeerId, records: Vec<ByteBuf>) -> Vec<Entry> {
    records
        .into_iter()
        .filter_map(|b| match SignedRecord::from_block(&b) {
            Ok(record) => Some(Entry {
                cid: dag_cbor_cid(&b),
                record,
                block: b.into_vec(),
            }),
            Err(e) => {
                debug!(%peer, error = %e, "registry node sent a bad record");
                None
            }
        })
        .collect()
}

/// Registry nodes a read asks, when that many answer: enough that one node cannot freeze or
/// roll back a dataset by answering alone.
pub const READ_QUORUM: usize = 3;

/// What the registry nodes that answered a read said, compared.
#[derive(Debug)]
struct Merged {
    /// The most complete page, then the one with the newest version.
    best: Vec<Entry>,
    /// Whether more pages follow it.
    more: bool,
    /// Nodes whose answer lacked the newest version of a dataset another node had.
    stale: Vec<PeerId>,
}

/// Verified records from the registry nodes that answer: of the answers that come together,
/// the one with the most valid records, then the newest version. A node that lags (it has not
/// heard of the latest version yet) is outvoted by one that has, and named; a liar cannot
/// forge records, only withhold them, and withholding loses here. Two valid records for one
/// version of a dataset are a fork: refused.
async fn records(
    session: &Session,
    request: RegistryRequest,
) -> Result<(Vec<Entry>, bool), RemoteError> {
    let answers = ask(session, request, READ_QUORUM).await?;
    let asked: Vec<PeerId> = answers.iter().map(|(peer, _)| *peer).collect();
    let merged = match merge(answers) {
        Err(e @ RemoteError::Equivocation { .. }) => {
            // Every node asked learns of the fork, and refuses the dataset from then on.
            if let RemoteError::Equivocation { evidence, .. } = &e {
                share_evidence(session, &asked, evidence).await;
            }
            return Err(e);
        }
        other => other?,
    };
    for peer in &merged.stale {
        warn!(%peer, "a registry node answered an older version than others have");
    }
    let best = signed_by_keys_in_force(session, merged.best).await?;
    Ok((best, merged.more))
}

/// Drops the records whose signing key does not sign for their publisher at their time.
/// A record signed by another key than its publisher's own needs the publisher's rotations,
/// read from the registry nodes and checked here.
async fn signed_by_keys_in_force(
    session: &Session,
    entries: Vec<Entry>,
) -> Result<Vec<Entry>, RemoteError> {
    let rotated: std::collections::BTreeSet<PublisherKey> = entries
        .iter()
        .filter(|e| e.record.signer.is_some())
        .map(|e| e.record.record.publisher)
        .collect();
    let mut chains = std::collections::BTreeMap::new();
    for publisher in rotated {
        chains.insert(publisher, rotations(session, &publisher).await?);
    }
    Ok(entries
        .into_iter()
        .filter(|e| {
            let Some(chain) = chains.get(&e.record.record.publisher) else {
                return true;
            };
            match e.record.check_key(chain) {
                Ok(()) => true,
                Err(why) => {
                    warn!(record = %e.cid, %why, "a registry node sent a record signed by a key not in force");
                    false
                }
            }
        })
        .collect())
}

/// A publisher's key rotations, as the registry nodes that answer keep them: each answer's
/// chain is checked from the publisher's own key, and the longest valid one is taken (a
/// node can withhold rotations, not forge them). Two valid chains that differ are a fork of
/// the publisher's keys, and refused.
pub async fn rotations(
    session: &Session,
    publisher: &PublisherKey,
) -> Result<Vec<SignedRotation>, RemoteError> {
    let request = RegistryRequest::Rotations {
        publisher: *publisher,
    };
    let answers = ask(session, request, READ_QUORUM).await?;
    longest_chain(publisher, answers)
}

/// Keeps `publisher`'s key rotations `chain` (signed blocks, in order) on the registry nodes
/// that answer; returns the chain as the first of them keeps it.
pub async fn rotate(
    session: &Session,
    publisher: &PublisherKey,
    chain: &[SignedRotation],
) -> Result<Vec<SignedRotation>, RemoteError> {
    let rotations = chain
        .iter()
        .map(|r| r.to_block().map(ByteBuf::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RemoteError::Refused {
            code: RegistryErrorCode::BadRequest,
            message: e.to_string(),
        })?;
    let answers = ask(session, RegistryRequest::Rotate { rotations }, READ_QUORUM).await?;
    if let Some((_, RegistryResponse::Error { code, message })) = answers
        .iter()
        .find(|(_, a)| matches!(a, RegistryResponse::Error { .. }))
    {
        return Err(RemoteError::Refused {
            code: *code,
            message: message.clone(),
        });
    }
    longest_chain(publisher, answers)
}

/// The longest of the rotation chains in `answers` that checks out; see [`rotations`].
fn longest_chain(
    publisher: &PublisherKey,
    answers: Vec<(PeerId, RegistryResponse)>,
) -> Result<Vec<SignedRotation>, RemoteError> {
    let mut best: Vec<SignedRotation> = Vec::new();
    for (peer, answer) in answers {
        let RegistryResponse::Rotations { rotations } = answer else {
            debug!(%peer, ?answer, "unexpected answer to a rotations request");
            continue;
        };
        let chain: Result<Vec<SignedRotation>, _> = rotations
            .iter()
            .map(|b| SignedRotation::from_block(b))
            .collect();
        let chain = match chain.and_then(|c| check_chain(publisher, &c).map(|()| c)) {
            Ok(chain) => chain,
            Err(e) => {
                debug!(%peer, error = %e, "registry node sent bad key rotations");
                continue;
            }
        };
        let (short, long) = if chain.len() < best.len() {
            (&chain, &best)
        } else {
            (&best, &chain)
        };
        if long[..short.len()] != short[..] {
            return Err(RemoteError::KeyFork {
                publisher: *publisher,
            });
        }
        if chain.len() > best.len() {
            best = chain;
        }
    }
    Ok(best)
}

/// Sends `evidence` of a fork to `peers`, each answer awaited at most a few seconds.
async fn share_evidence(session: &Session, peers: &[PeerId], evidence: &Evidence) {
    let mut sends = JoinSet::new();
    for peer in peers {
        let (net, peer) = (session.net().clone(), *peer);
        let request = RegistryRequest::Evidence {
            first: evidence.first.clone(),
            second: evidence.second.clone(),
        };
        sends.spawn(async move {
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                net.request::<RegistryProtocol>(peer, request),
            )
            .await;
            (peer, sent)
        });
    }
    while let Some(Ok((peer, sent))) = sends.join_next().await {
        match sent {
            Ok(Ok(RegistryResponse::Accepted { .. })) => debug!(%peer, "evidence of a fork shared"),
            other => debug!(%peer, ?other, "sharing evidence of a fork failed"),
        }
    }
}

/// Compares registry answers: see [`records`].
fn merge(answers: Vec<(PeerId, RegistryResponse)>) -> Result<Merged, RemoteError> {
    let mut best: Option<(Vec<Entry>, bool)> = None;
    let mut refused = None;
    let mut odd = Vec::new();
    let mut pages: Vec<(PeerId, Vec<Entry>)> = Vec::new();
    for (peer, answer) in answers {
        match answer {
            RegistryResponse::Records { records, more } => {
                let page = verified(peer, records);
                let rank = |p: &[Entry]| {
                    let newest = p.iter().map(|e| e.record.record.version).max();
                    (p.len(), newest)
                };
                if best.as_ref().is_none_or(|(b, _)| rank(&page) > rank(b)) {
                    best = Some((page.clone(), more));
                }
                pages.push((peer, page));
            }
            RegistryResponse::Error { code, message } => {
                refused.get_or_insert(RemoteError::Refused { code, message });
            }
            // A node that says the dataset is forked shows the two records; a claim that does
            // not check out is a lie, and ignored.
            RegistryResponse::Forked { first, second } => {
                let evidence = Evidence { first, second };
                match evidence.check() {
                    Ok((a, _)) => {
                        let r = a.record;
                        return Err(RemoteError::Equivocation {
                            publisher: r.publisher,
                            name: r.name,
                            version: r.version,
                            first: Box::new(dag_cbor_cid(&evidence.first)),
                            second: Box::new(dag_cbor_cid(&evidence.second)),
                            evidence: Box::new(evidence),
                        });
                    }
                    Err(e) => odd.push((peer, format!("false evidence of a fork: {e}"))),
                }
            }
            other => odd.push((peer, format!("unexpected answer {other:?}"))),
        }
    }
    // One record per (publisher, name, version) across every answer; the newest version of
    // each dataset that any node has.
    let mut seen: std::collections::BTreeMap<(PublisherKey, String, u64), &Entry> =
        std::collections::BTreeMap::new();
    let mut newest: std::collections::BTreeMap<(PublisherKey, String), u64> =
        std::collections::BTreeMap::new();
    for (_, page) in &pages {
        for e in page {
            let r = &e.record.record;
            let key = (r.publisher, r.name.clone(), r.version);
            match seen.get(&key) {
                Some(first) if first.cid != e.cid => {
                    return Err(RemoteError::Equivocation {
                        publisher: r.publisher,
                        name: r.name.clone(),
                        version: r.version,
                        first: Box::new(first.cid),
                        second: Box::new(e.cid),
                        evidence: Box::new(Evidence {
                            first: first.block.clone(),
                            second: e.block.clone(),
                        }),
                    });
                }
                _ => {
                    seen.insert(key, e);
                }
            }
            let latest = newest.entry((r.publisher, r.name.clone())).or_default();
            *latest = (*latest).max(r.version);
        }
    }
    // A node is stale when, for a dataset it answered about, its newest version is older
    // than another node's.
    let stale = pages
        .iter()
        .filter(|(_, page)| {
            let mut own: std::collections::BTreeMap<(PublisherKey, String), u64> =
                std::collections::BTreeMap::new();
            for e in page {
                let r = &e.record.record;
                let v = own.entry((r.publisher, r.name.clone())).or_default();
                *v = (*v).max(r.version);
            }
            own.iter()
                .any(|(dataset, v)| newest.get(dataset).is_some_and(|n| n > v))
        })
        .map(|(peer, _)| *peer)
        .collect();
    match (best, refused) {
        (Some((best, more)), _) => Ok(Merged { best, more, stale }),
        (None, Some(refused)) => Err(refused),
        (None, None) => Err(RemoteError::NoRegistry(odd)),
    }
}

/// The latest record of every dataset a registry node knows, up to `max` of them.
pub async fn list(session: &Session, max: usize) -> Result<Vec<Entry>, RemoteError> {
    let mut out: Vec<Entry> = Vec::new();
    let mut after = None;
    while out.len() < max {
        let request = RegistryRequest::Heads {
            after: after.clone(),
            limit: MAX_RECORDS_PER_RESPONSE,
        };
        let (page, more) = records(session, request).await?;
        let Some(last) = page.last() else { break };
        after = Some((
            last.record.record.publisher,
            last.record.record.name.clone(),
        ));
        out.extend(page);
        if !more {
            break;
        }
    }
    out.truncate(max);
    Ok(out)
}

/// Every version of one dataset, oldest first, each checked to follow the one before.
pub async fn log(
    session: &Session,
    publisher: &PublisherKey,
    name: &str,
) -> Result<Vec<Entry>, RemoteError> {
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let request = RegistryRequest::Chain {
            publisher: *publisher,
            name: name.to_string(),
            from: out.len() as u64 + 1,
            limit: MAX_RECORDS_PER_RESPONSE,
        };
        let (page, more) = records(session, request).await?;
        if page.is_empty() {
            break;
        }
        for entry in page {
            let follows = match out.last() {
                None => entry.record.record.version == 1 && entry.record.record.parent.is_none(),
                Some(prev) => entry.record.check_follows(&prev.record, &prev.cid).is_ok(),
            };
            if !follows || entry.record.record.publisher != *publisher {
                return Err(RemoteError::NoRegistry(vec![(
                    session.peer_id(),
                    format!(
                        "the log of {name} does not chain at version {}",
                        entry.record.record.version
                    ),
                )]));
            }
            out.push(entry);
        }
        if !more {
            break;
        }
    }
    Ok(out)
}

/// Resolves a named reference to its record. Without a publisher, a name that several
/// publishers use resolves to `own`'s dataset if it has one, and is ambiguous otherwise.
pub async fn find(
    session: &Session,
    publisher: Option<&str>,
    name: &str,
    version: VersionSel,
    own: Option<&PublisherKey>,
) -> Result<Entry, RemoteError> {
    let version = match version {
        VersionSel::Latest => None,
        VersionSel::Number(n) => Some(n),
    };
    let request = RegistryRequest::Find {
        publisher: publisher.map(str::to_string),
        name: name.to_string(),
        version,
    };
    let (mut found, _) = records(session, request).await?;
    found.retain(|e| {
        let r = &e.record.record;
        r.name == name
            && version.is_none_or(|v| r.version == v)
            && publisher.is_none_or(|p| r.publisher.has_prefix(p))
    });
    if found.len() > 1
        && let Some(own) = own
        && let Some(i) = found.iter().position(|e| e.record.record.publisher == *own)
    {
        return Ok(found.swap_remove(i));
    }
    let dataset = match publisher {
        Some(p) => format!("{p}/{name}"),
        None => name.to_string(),
    };
    match found.len() {
        // A version that is not there, of a dataset that is: say which is missing.
        0 if let Some(version) = version => {
            match Box::pin(find(session, publisher, name, VersionSel::Latest, own)).await {
                Ok(latest) => Err(RemoteError::NoSuchVersion {
                    dataset,
                    version,
                    latest: latest.record.record.version,
                }),
                Err(RemoteError::NotFound(_)) => Err(RemoteError::NotFound(dataset)),
                Err(e) => Err(e),
            }
        }
        0 => Err(RemoteError::NotFound(dataset)),
        1 => Ok(found.remove(0)),
        _ => Err(RemoteError::Ambiguous {
            name: name.to_string(),
            publishers: found
                .iter()
                .map(|e| e.record.record.publisher.to_string())
                .collect(),
        }),
    }
}

/// The manifest CID a reference names, and the record it came from (none for a bare CID).
pub async fn resolve(
    session: &Session,
    reference: &DatasetRef,
    own: Option<&PublisherKey>,
) -> Result<(Cid, Option<Entry>), RemoteError> {
    match reference {
        DatasetRef::Cid(cid) => Ok((*cid, None)),
        DatasetRef::Named {
            publisher,
            name,
            version,
        } => {
            let entry = find(session, publisher.as_deref(), name, *version, own).await?;
            Ok((entry.record.record.manifest, Some(entry)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tessera_formats::{VersionRecord, record::RECORD_VERSION, record::SigningKey};

    use super::*;

    fn record(key: &SigningKey, version: u64, manifest: &[u8]) -> ByteBuf {
        let (_, block) = VersionRecord {
            format: RECORD_VERSION,
            publisher: PublisherKey::of(key),
            name: "data".into(),
            version,
            manifest: dag_cbor_cid(manifest),
            parent: (version > 1).then(|| dag_cbor_cid(b"the version before")),
            time_ms: version,
            message: String::new(),
        }
        .sign(key)
        .unwrap()
        .to_block()
        .unwrap();
        ByteBuf::from(block)
    }

    fn page(records: Vec<ByteBuf>) -> RegistryResponse {
        RegistryResponse::Records {
            records,
            more: false,
        }
    }

    #[test]
    fn the_newest_answer_wins_and_the_node_that_rolled_back_is_named() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let merged = merge(vec![
            (a, page(vec![record(&key, 1, b"m1")])),
            (b, page(vec![record(&key, 2, b"m2")])),
            (c, page(vec![record(&key, 2, b"m2")])),
        ])
        .unwrap();
        assert_eq!(merged.best[0].record.record.version, 2);
        assert_eq!(merged.stale, vec![a]);
        // A node that withholds every record is outvoted too.
        let merged = merge(vec![
            (a, page(vec![])),
            (b, page(vec![record(&key, 1, b"m1")])),
        ])
        .unwrap();
        assert_eq!(merged.best.len(), 1);
    }

    #[test]
    fn two_records_for_one_version_are_a_fork_and_refused() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (a, b) = (PeerId::random(), PeerId::random());
        let err = merge(vec![
            (a, page(vec![record(&key, 2, b"one manifest")])),
            (b, page(vec![record(&key, 2, b"another manifest")])),
        ])
        .unwrap_err();
        assert!(
            matches!(err, RemoteError::Equivocation { version: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("neither is used"));
    }
}
