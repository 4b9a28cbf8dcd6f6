//! `tessera datasets list|log|resolve`: what the registry knows.

use tessera_dataset_registry::{Entry, remote};
use tessera_formats::{DatasetRef, VersionSel};

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
        #[command(flatten)]
        join: JoinArgs,
    },
    /// Every version of a dataset, oldest first.
    Log {
        /// [PUBLISHER/]NAME.
        name: String,
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

fn line(e: &Entry) -> String {
    let r = &e.record.record;
    format!(
        "{}/{}@v{}\t{}\t{}\t{}",
        r.publisher,
        r.name,
        r.version,
        r.manifest,
        r.time_ms,
        r.message.lines().next().unwrap_or("")
    )
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List { join } => {
            let session = join.join().await?;
            for entry in remote::list(&session, 10_000).await? {
                println!("{}", line(&entry));
            }
        }
        Command::Log { name, reader } => {
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
            for entry in remote::log(&session, &head.record.record.publisher, &name).await? {
                println!("{}", line(&entry));
            }
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
