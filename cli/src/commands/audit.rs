//! `tessera audit status`: what a storage node's auditor has checked, found failed and
//! repaired, and each dataset's redundancy, from the node's `GET /v1/audit`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytesize::ByteSize;
use serde_json::Value;

/// Where a node's HTTP port is when none is named.
pub(crate) const DEFAULT_NODE: &str = "http://127.0.0.1:8080";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Audits passed and failed, pieces repaired, redundancy per dataset, failing holders.
    Status {
        /// The storage node's HTTP port.
        #[arg(long, default_value = DEFAULT_NODE)]
        node: String,
        /// Print the node's JSON as it is.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let Command::Status { node, json } = args.command;
    let url = format!("{}/v1/audit", node.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let status: Value = response.json().await.context("reading the node's answer")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The status as a few lines and a table.
fn render(s: &Value) -> String {
    let mut out = String::new();
    let running = if s["auditor"].as_bool().unwrap_or(false) {
        "running"
    } else {
        "not running on a timer (audit-interval 0s, or no registry role)"
    };
    out.push_str(&format!("auditor   {running}\n"));
    out.push_str(&format!(
        "audits    {} passed, {} failed\n",
        n(&s["audits_passed"]),
        n(&s["audits_failed"])
    ));
    out.push_str(&format!(
        "pieces    {} found failed, {} repaired ({} fetched, {} sent)\n",
        n(&s["pieces_failed"]),
        n(&s["pieces_repaired"]),
        ByteSize::b(n(&s["repair_bytes_fetched"])),
        ByteSize::b(n(&s["repair_bytes_sent"])),
    ));
    out.push_str(&format!(
        "shards    {} known, {} with fewer than k pieces intact\n",
        n(&s["shards"]),
        n(&s["shards_lost"])
    ));
    let datasets = s["datasets"].as_array().cloned().unwrap_or_default();
    if !datasets.is_empty() {
        out.push_str(&format!(
            "\n{:<40} {:>7} {:>7} {:>8} {:>11} {:>6}\n",
            "dataset", "version", "shards", "checked", "min intact", "spare"
        ));
        for d in &datasets {
            let publisher = d["publisher"].as_str().unwrap_or("");
            let name = format!(
                "{}/{}",
                publisher.get(..8).unwrap_or(publisher),
                d["name"].as_str().unwrap_or("")
            );
            let or_dash = |v: &Value| v.as_i64().map_or("-".to_string(), |v| v.to_string());
            out.push_str(&format!(
                "{:<40} {:>7} {:>7} {:>8} {:>11} {:>6}\n",
                name,
                format!("v{}", n(&d["version"])),
                n(&d["shards"]),
                n(&d["checked"]),
                or_dash(&d["min_intact"]),
                or_dash(&d["min_spare"]),
            ));
        }
    }
    let failing = s["failing"].as_array().cloned().unwrap_or_default();
    if !failing.is_empty() {
        out.push_str("\nfailing holders\n");
        for f in &failing {
            out.push_str(&format!(
                "  {}  {}  {} failures in a row{}\n",
                f["node"].as_str().unwrap_or(""),
                f["piece"].as_str().unwrap_or(""),
                n(&f["failures"]),
                if f["failed"].as_bool().unwrap_or(false) {
                    ", counted lost"
                } else {
                    ""
                }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_names_datasets_and_failing_holders() {
        let status = serde_json::json!({
            "auditor": true, "audits_passed": 40, "audits_failed": 2, "pieces_failed": 1,
            "pieces_repaired": 1, "repair_bytes_fetched": 3_145_728, "repair_bytes_sent": 1_048_576,
            "shards": 4, "shards_lost": 0,
            "datasets": [{"publisher": "ab12cd34ef", "name": "site", "version": 2,
                "manifest": "bafy", "shards": 4, "checked": 3, "min_intact": 4, "min_spare": 1}],
            "failing": [{"node": "12D3KooW", "piece": "bafk", "failures": 2, "since_ms": 0,
                "failed": true}],
        });
        let text = render(&status);
        assert!(text.contains("40 passed, 2 failed"), "{text}");
        assert!(text.contains("1 repaired"), "{text}");
        assert!(text.contains("ab12cd34/site"), "{text}");
        assert!(text.contains("counted lost"), "{text}");
    }
}
