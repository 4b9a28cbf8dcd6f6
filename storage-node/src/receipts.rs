//! Audit receipts in RocksDB: every receipt this node signed as an auditor and those it hears
//! from others on the receipt topic, kept as verified blocks, found by audited node and time
//! or by time alone.
//!
//! ```text
//! key                                         value
//! r/{node key 32 B}{time ms, 8 B BE}{cid}     the signed receipt's DAG-CBOR block
//! t/{time ms, 8 B BE}{cid}                    the same block
//! p/{piece cid}{node key 32 B}{time ms}{cid}  the same block (receipts kept before this index
//!                                             are not in it)
//! ```
//!
//! A piece CID is self-delimiting (its multihash names its length), so `p/{piece}{node}` is a
//! prefix of that pair's receipts alone.

use std::path::Path;

use cid::Cid;
use rocksdb::{Direction, IteratorMode};
use tessera_formats::{
    SignedReceipt,
    receipt::{NodeKey, ReceiptError},
};
use tessera_node::db::{Column, DEFAULT, Db, DbError, Durability};

/// The receipt store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptStoreError {
    /// RocksDB.
    #[error("receipt store: {0}")]
    Db(#[from] rocksdb::Error),
    /// The database could not be opened.
    #[error("receipt store: {0}")]
    Open(#[from] DbError),
    /// A receipt that does not verify, offered or found on disk.
    #[error("receipt: {0}")]
    Receipt(#[from] ReceiptError),
}

/// The receipts a node keeps; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ReceiptStore {
    db: Column,
}

/// The time index's keys of `time_ms` start with this; it sorts before all of them.
fn time_prefix(time_ms: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + 8 + 40);
    k.extend_from_slice(b"t/");
    k.extend_from_slice(&time_ms.to_be_bytes());
    k
}

fn time_key(time_ms: u64, cid: &Cid) -> Vec<u8> {
    let mut k = time_prefix(time_ms);
    k.extend_from_slice(&cid.to_bytes());
    k
}

fn piece_prefix(piece: &Cid, node: &NodeKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + 40 + 32 + 8 + 40);
    k.extend_from_slice(b"p/");
    k.extend_from_slice(&piece.to_bytes());
    k.extend_from_slice(&node.0);
    k
}

fn piece_key(piece: &Cid, node: &NodeKey, time_ms: u64, cid: &Cid) -> Vec<u8> {
    let mut k = piece_prefix(piece, node);
    k.extend_from_slice(&time_ms.to_be_bytes());
    k.extend_from_slice(&cid.to_bytes());
    k
}

/// Where a page of [`ReceiptStore::between`] ends: pass it back to get the next page.
pub type Cursor = Vec<u8>;

fn key(node: &NodeKey, time_ms: u64, cid: &Cid) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + 32 + 8 + 40);
    k.extend_from_slice(b"r/");
    k.extend_from_slice(&node.0);
    k.extend_from_slice(&time_ms.to_be_bytes());
    k.extend_from_slice(&cid.to_bytes());
    k
}

impl ReceiptStore {
    /// Opens (or creates) the store in a database of its own in `dir`.
    pub fn open(dir: &Path) -> Result<Self, ReceiptStoreError> {
        Ok(Self::in_column(Db::open(dir, &[])?.column(DEFAULT)?))
    }

    /// The store in `db`, a column of a node's database.
    pub fn in_column(db: Column) -> Self {
        Self { db }
    }

    /// Keeps a receipt after checking it; returns its CID. Keeping one twice is harmless.
    pub fn insert(&self, receipt: &SignedReceipt) -> Result<Cid, ReceiptStoreError> {
        let (cid, block) = receipt.to_block()?;
        let r = &receipt.receipt;
        let mut batch = self.db.batch();
        batch.put(key(&r.node, r.time_ms, &cid), &block);
        batch.put(time_key(r.time_ms, &cid), &block);
        batch.put(piece_key(&r.piece, &r.node, r.time_ms, &cid), &block);
        // Not synced: a receipt lost to a crash is one audit fewer, never a wrong one.
        self.db.write(batch, Durability::Buffered)?;
        Ok(cid)
    }

    /// Deletes every receipt made before `before_ms` (both its keys); returns how many.
    pub fn prune(&self, before_ms: u64) -> Result<usize, ReceiptStoreError> {
        let end = time_prefix(before_ms);
        let mut batch = self.db.batch();
        let mut pruned = 0;
        for item in self
            .db
            .iterator(IteratorMode::From(b"t/", Direction::Forward))
        {
            let (k, block) = item?;
            if !k.starts_with(b"t/") || *k >= *end {
                break;
            }
            // Blocks were checked when kept; one that no longer parses goes all the same.
            if let Ok(receipt) = SignedReceipt::from_block(&block)
                && let Ok((cid, _)) = receipt.to_block()
            {
                let r = &receipt.receipt;
                batch.delete(key(&r.node, r.time_ms, &cid));
                batch.delete(piece_key(&r.piece, &r.node, r.time_ms, &cid));
            }
            batch.delete(&k);
            pruned += 1;
        }
        self.db.write(batch, Durability::Buffered)?;
        Ok(pruned)
    }

    /// Receipt blocks made in `[from_ms, to_ms)`, oldest first, at most `limit`, starting
    /// after `after` (a cursor from an earlier page); the cursor of the last one returned if
    /// more may follow. Blocks are returned as stored (they were verified when kept).
    pub fn between(
        &self,
        from_ms: u64,
        to_ms: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<Cursor>), ReceiptStoreError> {
        let start = match after {
            Some(cursor) if cursor.starts_with(b"t/") => {
                let mut k = cursor.to_vec();
                k.push(0); // just past the cursor
                k
            }
            _ => time_prefix(from_ms),
        };
        let end = time_prefix(to_ms);
        let mut out = Vec::new();
        let mut last = None;
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, block) = item?;
            if !k.starts_with(b"t/") || *k >= *end {
                return Ok((out, None));
            }
            if out.len() == limit {
                return Ok((out, last));
            }
            out.push(block.to_vec());
            last = Some(k.to_vec());
        }
        Ok((out, None))
    }

    /// The receipts about `node`'s proofs of `piece` from `since_ms` on, oldest first, at most
    /// `limit`.
    pub fn about_piece(
        &self,
        piece: &Cid,
        node: &NodeKey,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<SignedReceipt>, ReceiptStoreError> {
        let prefix = piece_prefix(piece, node);
        let mut start = prefix.clone();
        start.extend_from_slice(&since_ms.to_be_bytes());
        self.read_from(&prefix, &start, limit)
    }

    fn read_from(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<SignedReceipt>, ReceiptStoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(start, Direction::Forward))
        {
            let (k, block) = item?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push(SignedReceipt::from_block(&block)?);
        }
        Ok(out)
    }

    /// The receipts about `node` from `since_ms` on, oldest first, at most `limit`.
    pub fn about(
        &self,
        node: &NodeKey,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<SignedReceipt>, ReceiptStoreError> {
        let mut prefix = b"r/".to_vec();
        prefix.extend_from_slice(&node.0);
        let mut start = prefix.clone();
        start.extend_from_slice(&since_ms.to_be_bytes());
        self.read_from(&prefix, &start, limit)
    }
}

#[cfg(test)]
mod tests {
    use tessera_formats::{
        AuditReceipt, AuditResult, PublisherKey, address::raw_cid, receipt::RECEIPT_VERSION,
        record::SigningKey,
    };

    use super::*;

    #[test]
    fn receipts_are_found_by_node_and_time_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = SigningKey::from_bytes(&[1; 32]);
        let (a, b) = (PublisherKey([2; 32]), PublisherKey([3; 32]));
        let receipt = |node: NodeKey, time_ms: u64, result: AuditResult| {
            AuditReceipt {
                format: RECEIPT_VERSION,
                auditor: PublisherKey::of(&auditor),
                node,
                piece: raw_cid(b"piece"),
                size: if result.passed() { 4096 } else { 0 },
                nonce: [5; 32],
                samples: 16,
                result,
                time_ms,
            }
            .sign(&auditor)
            .unwrap()
        };
        {
            let store = ReceiptStore::open(dir.path()).unwrap();
            for t in [30, 10, 20] {
                store.insert(&receipt(a, t, AuditResult::Passed)).unwrap();
            }
            store.insert(&receipt(b, 15, AuditResult::Timeout)).unwrap();
            // The same receipt twice is kept once.
            store.insert(&receipt(b, 15, AuditResult::Timeout)).unwrap();
        }
        let store = ReceiptStore::open(dir.path()).unwrap();
        let times = |node, since, limit| -> Vec<u64> {
            store
                .about(&node, since, limit)
                .unwrap()
                .iter()
                .map(|r| r.receipt.time_ms)
                .collect()
        };
        assert_eq!(times(a, 0, 10), [10, 20, 30]);
        assert_eq!(times(a, 15, 10), [20, 30]);
        assert_eq!(times(a, 0, 2), [10, 20]);
        assert_eq!(times(b, 0, 10), [15]);
        assert!(times(PublisherKey([4; 32]), 0, 10).is_empty());
        let piece = raw_cid(b"piece");
        let of_piece = |node, since| -> Vec<u64> {
            store
                .about_piece(&piece, &node, since, 10)
                .unwrap()
                .iter()
                .map(|r| r.receipt.time_ms)
                .collect()
        };
        assert_eq!(of_piece(a, 0), [10, 20, 30]);
        assert_eq!(of_piece(a, 25), [30]);
        assert_eq!(of_piece(b, 0), [15]);
        assert!(
            store
                .about_piece(&raw_cid(b"another"), &a, 0, 10)
                .unwrap()
                .is_empty()
        );

        // By time alone, in pages.
        let page_times = |blocks: &[Vec<u8>]| -> Vec<u64> {
            blocks
                .iter()
                .map(|b| SignedReceipt::from_block(b).unwrap().receipt.time_ms)
                .collect()
        };
        let (all, more) = store.between(0, u64::MAX, None, 10).unwrap();
        assert_eq!(page_times(&all), [10, 15, 20, 30]);
        assert!(more.is_none());
        let (first, cursor) = store.between(12, 31, None, 2).unwrap();
        assert_eq!(page_times(&first), [15, 20]);
        let (rest, end) = store.between(12, 31, cursor.as_deref(), 2).unwrap();
        assert_eq!(page_times(&rest), [30]);
        assert!(end.is_none());
        assert!(store.between(31, 40, None, 10).unwrap().0.is_empty());

        // Pruning drops what is older, from both indexes.
        assert_eq!(store.prune(20).unwrap(), 2);
        assert_eq!(times(a, 0, 10), [20, 30]);
        assert!(times(b, 0, 10).is_empty());
        assert_eq!(of_piece(a, 0), [20, 30]);
        assert!(of_piece(b, 0).is_empty());
        assert_eq!(store.between(0, u64::MAX, None, 10).unwrap().0.len(), 2);

        // A receipt whose signature does not verify is not kept.
        let mut forged = receipt(a, 40, AuditResult::Passed);
        forged.receipt.result = AuditResult::BadProof;
        assert!(store.insert(&forged).is_err());
        assert_eq!(times(a, 0, 10), [20, 30]);
    }
}
