//! Tessera's scraper node.
//!
//! Not built yet. The node will take leases of URLs from a crawl coordinator, fetch them
//! politely (robots.txt, crawl delays, AI opt-outs) without reaching the contributor's private
//! network, and write Parquet shards with a signed provenance record for every row. See
//! `docs/ARCHITECTURE.md`.
