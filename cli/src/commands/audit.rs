//! `tessera audit status`: what a storage node's auditor has checked, found failed and
//! repaired, and each dataset's redundancy, from the node's `GET /v1/audit`.

use std::time::Duration;

use bytesize::ByteSize;
use tessera_storage_node::{api_client::NodeClient, audit::AuditStatus};

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
    let status = NodeClient::new(&node, Duration::from_secs(30))?
        .audit()
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// The status as a few lines and a table.
fn render(s: &AuditStatus) -> String {
    let mut out = String::new();
    let running = if s.auditor {
        "running"
    } else {
        "not running on a timer (audit-interval 0s, or no registry role)"
    };
    out.push_str(&format!("auditor   {running}\n"));
    out.push_str(&format!(
        "audits    {} passed, {} failed\n",
        s.audits_passed, s.audits_failed
    ));
    out.push_str(&format!(
        "pieces    {} found failed, {} repaired ({} fetched, {} sent)\n",
        s.pieces_failed,
        s.pieces_repaired,
        ByteSize::b(s.repair_bytes_fetched),
        ByteSize::b(s.repair_bytes_sent),
    ));
    out.push_str(&format!(
        "shards    {} known, {} with fewer than k pieces intact\n",
        s.shards, s.shards_lost
    ));
    if !s.datasets.is_empty() {
        out.push_str(&format!(
            "\n{:<40} {:>7} {:>7} {:>8} {:>11} {:>6}\n",
            "dataset", "version", "shards", "checked", "min intact", "spare"
        ));
        for d in &s.datasets {
            let name = format!(
                "{}/{}",
                d.publisher
                    .get(..tessera_formats::dataset_ref::MIN_PUBLISHER_PREFIX)
                    .unwrap_or(&d.publisher),
                d.name
            );
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
            out.push_str(&format!(
                "{:<40} {:>7} {:>7} {:>8} {:>11} {:>6}\n",
                name,
                format!("v{}", d.version),
                d.shards,
                d.checked,
                or_dash(d.min_intact.map(|v| v.to_string())),
                or_dash(d.min_spare.map(|v| v.to_string())),
            ));
        }
    }
    if !s.failing.is_empty() {
        out.push_str("\nfailing holders\n");
        for f in &s.failing {
            out.push_str(&format!(
                "  {}  {}  {} failures in a row{}\n",
                f.node,
                f.piece,
                f.failures,
                if f.failed { ", counted lost" } else { "" }
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
            "datasets": [{"publisher": "ab12cd34ef56ab78cd90", "name": "site", "version": 2,
                "manifest": "bafy", "shards": 4, "checked": 3, "min_intact": 4, "min_spare": 1}],
            "failing": [{"node": "12D3KooW", "piece": "bafk", "failures": 2, "since_ms": 0,
                "failed": true}],
        });
        let status: AuditStatus = serde_json::from_value(status).unwrap();
        let text = render(&status);
        assert!(text.contains("40 passed, 2 failed"), "{text}");
        assert!(text.contains("1 repaired"), "{text}");
        assert!(text.contains("ab12cd34ef56ab78/site"), "{text}");
        assert!(text.contains("counted lost"), "{text}");
    }
}
