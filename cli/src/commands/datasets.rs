//! `tessera datasets list|log|resolve`: what the registry knows. Listings are a table with a
//! header (publishers cut to the 16 hex digits a reference needs, UTC times, rows and sizes
//! from each version's manifest), or `--json` with every field whole.

use bytesize::ByteSize;
use serde_json::{Value, json};
use tessera_client::Session;
use tessera_dataset::fetch_manifest;
use tessera_dataset_registry::{Entry, remote};
use tessera_formats::{DatasetRef, Manifest, VersionSel};
use tokio::task::JoinSet;

use super::{join::JoinArgs, reader::ReaderArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
#[command(rename_all = "kebab-case")]
enum Command {
    /// The latest version of every dataset.
    List {
        /// One JSON array, every field whole, instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        join: JoinArgs,
    },
    /// Every version of a dataset, oldest first.
    Log {
        /// [PUBLISHER/]NAME.
        name: String,
        /// One JSON array, every field whole, instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reader: ReaderArgs,
    },
    /// Print the manifest CID that a reference names.
    Resolve {
        /// [PUBLISHER/]NAME[@latest|@vN].
        reference: String,
        #[command(flatten)]
        reader: ReaderArgs,
    },
}

/// Manifests read at once for a listing.
const MANIFESTS_AT_ONCE: usize = 16;

/// Each entry's manifest (none where it cannot be read), read a few at a time.
async fn manifests(session: &Session, entries: &[Entry]) -> Vec<Option<Manifest>> {
    let mut out = vec![None; entries.len()];
    let mut tasks = JoinSet::new();
    for (i, entry) in entries.iter().enumerate() {
        if tasks.len() >= MANIFESTS_AT_ONCE
            && let Some(Ok((j, m))) = tasks.join_next().await
        {
            out[j] = m;
        }
        let (session, cid) = (session.clone_handle(), entry.record.record.manifest);
        tasks.spawn(async move { (i, fetch_manifest(&session, cid).await.ok()) });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((j, m)) = joined {
            out[j] = m;
        }
    }
    out
}

fn utc(time_ms: u64) -> String {
    i64::try_from(time_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "?".into(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

fn as_json(e: &Entry, m: Option<&Manifest>) -> Value {
    let r = &e.record.record;
    json!({
        "publisher": r.publisher.to_string(),
        "name": r.name,
        "version": r.version,
        "reference": format!("{}/{}@v{}", r.publisher, r.name, r.version),
        "manifest": r.manifest.to_string(),
        "record": e.cid.to_string(),
        "time": utc(r.time_ms),
        "time_ms": r.time_ms,
        "message": r.message,
        "rows": m.map(Manifest::total_rows),
        "bytes": m.map(Manifest::total_bytes),
        "shards": m.map(|m| m.shards.len()),
    })
}

/// Prints `entries` as a table under a header, or as JSON.
#[allow(clippy::print_stdout)]
async fn print(session: &Session, entries: &[Entry], json: bool) -> anyhow::Result<()> {
    let manifests = manifests(session, entries).await;
    if json {
        let all: Vec<Value> = entries
            .iter()
            .zip(&manifests)
            .map(|(e, m)| as_json(e, m.as_ref()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .zip(&manifests)
        .map(|(e, m)| {
            let r = &e.record.record;
            let publisher = r.publisher.to_string();
            [
                format!(
                    "{}/{}@v{}",
                    &publisher[..16.min(publisher.len())],
                    r.name,
                    r.version
                ),
                utc(r.time_ms),
                m.as_ref()
                    .map_or_else(|| "?".into(), |m| m.total_rows().to_string()),
                m.as_ref()
                    .map_or_else(|| "?".into(), |m| ByteSize::b(m.total_bytes()).to_string()),
                r.manifest.to_string(),
                r.message.lines().next().unwrap_or("").to_string(),
            ]
        })
        .collect();
    let header = [
        "DATASET",
        "PUBLISHED (UTC)",
        "ROWS",
        "SIZE",
        "MANIFEST",
        "MESSAGE",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else if i == 2 || i == 3 {
                out.push_str(&format!("{cell:>w$}  ", w = widths[i]));
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    println!("{}", line(header));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    Ok(())
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List { json, join } => {
            let session = join.join().await?;
            let entries = remote::list(&session, 10_000).await?;
            print(&session, &entries, json).await?;
        }
        Command::Log { name, json, reader } => {
            let reference: DatasetRef = name.parse()?;
            let DatasetRef::Named {
                publisher, name, ..
            } = reference
            else {
                anyhow::bail!("log takes [PUBLISHER/]NAME, not a CID");
            };
            let session = reader.join().await?;
            let own = reader.preferred()?;
            let head = remote::find(
                &session,
                publisher.as_deref(),
                &name,
                VersionSel::Latest,
                own.as_ref(),
            )
            .await?;
            let entries = remote::log(&session, &head.record.record.publisher, &name).await?;
            print(&session, &entries, json).await?;
        }
        Command::Resolve { reference, reader } => {
            let reference: DatasetRef = reference.parse()?;
            let session = reader.join().await?;
            let own = reader.preferred()?;
            let (cid, _) = remote::resolve(&session, &reference, own.as_ref()).await?;
            println!("{cid}");
        }
    }
    Ok(())
}
