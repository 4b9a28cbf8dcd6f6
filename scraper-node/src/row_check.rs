//! Checking a crawl's shards against what their nodes reported: every row must be a page its
//! node stored, with the text whose hash it reported when it completed the lease (the hash
//! that other nodes' fetches of the page are compared with), and each such page once.
//!
//! ```text
//! lease completed: node N reports (URL, BLAKE3 of the text) per stored page ─▶ the frontier
//!   keeps them ─▶ crawl done: each shard fetched from the network ─▶ every row signed by N,
//!   its (URL, BLAKE3 of its text) one of N's pages not yet used ─▶ all pass: published;
//!   one fails: the whole shard is left out, with the row and the reason
//! ```
//!
//! Without this a worker could report the true hash of every page, pass every check, and
//! write anything into its rows. Pure: the publish step fetches the shards and feeds them in.

use std::collections::HashMap;

use arrow::{
    array::{Array, RecordBatch, StringArray},
    datatypes::DataType,
};

use crate::provenance::verify_batch;

/// The pages of a crawl whose rows may be published: per (node, URL, text hash), how many.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredPages {
    pages: HashMap<(String, String, String), u32>,
}

impl StoredPages {
    /// Adds a page `node` stored, whose row names `url` and has text hashing to `text_blake3`
    /// (hex).
    pub fn insert(&mut self, node: &str, url: &str, text_blake3: &str) {
        *self
            .pages
            .entry((node.into(), url.into(), text_blake3.into()))
            .or_default() += 1;
    }

    /// Pages not used by a shard yet.
    pub fn remaining(&self) -> u64 {
        self.pages.values().map(|&n| u64::from(n)).sum()
    }

    /// Checks the rows of one shard written by `node`, all or nothing: when every row is one
    /// of `node`'s pages, those pages are used up and the rows counted; otherwise nothing is
    /// used and the first bad row is described.
    pub fn take_shard(
        &mut self,
        node: &str,
        batches: impl IntoIterator<Item = Result<RecordBatch, String>>,
    ) -> Result<u64, String> {
        let mut used: HashMap<(String, String, String), u32> = HashMap::new();
        let mut rows = 0u64;
        for batch in batches {
            let batch = batch?;
            if let Some((i, why)) = verify_batch(&batch)
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
            {
                return Err(format!("row {}: {why}", rows + i as u64));
            }
            let (text, url, scraper) = (
                strings(&batch, "text")?,
                strings(&batch, "url")?,
                strings(&batch, "scraper_peer_id")?,
            );
            for i in 0..batch.num_rows() {
                let row = rows + i as u64;
                if scraper.value(i) != node {
                    return Err(format!(
                        "row {row} is signed by {}, not by the node that wrote the shard",
                        scraper.value(i)
                    ));
                }
                let hash = blake3::hash(text.value(i).as_bytes()).to_hex().to_string();
                let key = (node.to_string(), url.value(i).to_string(), hash);
                let have = self.pages.get(&key).copied().unwrap_or(0);
                let n = used.entry(key).or_default();
                if *n >= have {
                    return Err(format!(
                        "row {row} ({}) is not a page the node reported storing with that text{}",
                        url.value(i),
                        if have > 0 { " (it is there twice)" } else { "" }
                    ));
                }
                *n += 1;
            }
            rows += batch.num_rows() as u64;
        }
        for (key, n) in used {
            if let Some(have) = self.pages.get_mut(&key) {
                *have -= n;
                if *have == 0 {
                    self.pages.remove(&key);
                }
            }
        }
        Ok(rows)
    }
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column {name}"))?;
    if column.data_type() != &DataType::Utf8 || column.null_count() > 0 {
        return Err(format!("{name} is not a string column without nulls"));
    }
    column
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| format!("{name} is not a string column"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{Row, RowBuilder, tests::row};
    use libp2p::identity::Keypair;

    fn hash(text: &str) -> String {
        blake3::hash(text.as_bytes()).to_hex().to_string()
    }

    fn shard(rows: &[Row]) -> Vec<Result<RecordBatch, String>> {
        let mut builder = RowBuilder::default();
        for row in rows {
            builder.push(row).unwrap();
        }
        vec![builder.finish().map_err(|e| e.to_string())]
    }

    #[test]
    fn rows_must_be_the_pages_their_node_reported_each_once() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (na, nb) = (
            a.public().to_peer_id().to_string(),
            b.public().to_peer_id().to_string(),
        );
        let mut pages = StoredPages::default();
        pages.insert(&na, "http://s.test/1", &hash("one"));
        pages.insert(&na, "http://s.test/2", &hash("two"));
        pages.insert(&nb, "http://s.test/3", &hash("three"));

        // Text other than reported: the whole shard is refused and nothing is used.
        let forged = [
            row(&a, "http://s.test/1", "one"),
            row(&a, "http://s.test/2", "spam"),
        ];
        let why = pages.take_shard(&na, shard(&forged)).unwrap_err();
        assert!(why.contains("row 1 (http://s.test/2)"), "{why}");
        assert_eq!(pages.remaining(), 3);

        // Another node's page, even signed by that node, is not this node's row.
        let theirs = [row(&b, "http://s.test/3", "three")];
        let why = pages.take_shard(&na, shard(&theirs)).unwrap_err();
        assert!(why.contains("not by the node"), "{why}");

        // A page twice in one shard.
        let twice = [
            row(&a, "http://s.test/1", "one"),
            row(&a, "http://s.test/1", "one"),
        ];
        let why = pages.take_shard(&na, shard(&twice)).unwrap_err();
        assert!(why.contains("twice"), "{why}");

        // A row whose signature does not cover its text.
        let mut tampered = row(&a, "http://s.test/1", "one");
        tampered.text = "two".into();
        assert!(pages.take_shard(&na, shard(&[tampered])).is_err());

        // The true rows pass, once.
        let good = [
            row(&a, "http://s.test/1", "one"),
            row(&a, "http://s.test/2", "two"),
        ];
        assert_eq!(pages.take_shard(&na, shard(&good)), Ok(2));
        assert_eq!(pages.remaining(), 1);
        let why = pages.take_shard(&na, shard(&good[..1])).unwrap_err();
        assert!(why.contains("not a page"), "{why}");
        assert_eq!(pages.take_shard(&nb, shard(&theirs)), Ok(1));
    }
}
