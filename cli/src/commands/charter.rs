//! `tessera charter found|next|sign|show|publish`: founding a network and changing its
//! committee. One founder writes the charter (network id, validators, threshold, rules); each
//! validator signs it with its node's identity; once `threshold` have signed, every node is
//! started with it (`charter = FILE`). A committee change is the next epoch's charter, signed
//! by the threshold of the committee in force and handed to any node, which passes it on.
//!
//! ```text
//! tessera charter found --network main --validator PEER... --threshold 2 -o charter.block
//! tessera charter sign charter.block --node-dir /var/lib/tessera/storage   (each validator)
//! tessera charter show charter.block                                        (anyone)
//! tessera charter next --from charter.block --validator PEER... --threshold 2 -o epoch-1.block
//! tessera charter sign epoch-1.block --after charter.block --node-dir ...  (each validator)
//! tessera charter publish epoch-1.block --node http://127.0.0.1:8080
//! ```

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tessera_formats::{
    PublisherKey,
    charter::{Charter, CharterParams, SignedCharter},
};
use tessera_net::{PeerId, identity};
use tessera_storage_node::audit::{node_key, signing_key};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
#[command(rename_all = "kebab-case")]
enum Command {
    /// Write a new network's founding charter, unsigned.
    Found {
        /// The network's id: a-z, 0-9 and inner '-', at most 32.
        #[arg(long)]
        network: String,
        /// A validator: its node's peer id or its 64-hex key (repeatable).
        #[arg(long = "validator", required = true)]
        validators: Vec<String>,
        /// Signatures of the committee a change of the charter needs.
        #[arg(long)]
        threshold: u32,
        /// Validators assigned to audit each piece in a period [default: 2, or 1 with one
        /// validator].
        #[arg(long)]
        validators_per_piece: Option<u32>,
        /// Time in which every admitted piece is audited once.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
        audit_period: Duration,
        /// A publisher whose datasets are admitted (repeatable; none admits every publisher).
        #[arg(long = "publisher")]
        publishers: Vec<PublisherKey>,
        /// What one validated page of a scraped dataset is paid in settlement, as this much
        /// proven storage: a size and a time, e.g. `1MiB:1h` [default: pages are not paid].
        #[arg(long, value_parser = page_worth)]
        page_worth: Option<u64>,
        /// Where to write the charter block.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Write the charter of the next epoch, unsigned: a new committee and threshold, the
    /// rules of the one in force.
    Next {
        /// The charter in force.
        #[arg(long)]
        from: PathBuf,
        /// A validator of the new committee: its node's peer id or its 64-hex key
        /// (repeatable).
        #[arg(long = "validator", required = true)]
        validators: Vec<String>,
        /// Signatures of the new committee the change after this one needs.
        #[arg(long)]
        threshold: u32,
        /// When it comes into force (RFC 3339): receipts made from then on are judged by
        /// it [default: now].
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        starts: Option<std::time::SystemTime>,
        /// Where to write the charter block.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Add a validator's signature to a charter, with its node's identity.
    Sign {
        /// The charter block.
        file: PathBuf,
        /// The validator node's data directory (its identity.key).
        #[arg(long)]
        node_dir: PathBuf,
        /// The charter in force, for a later epoch: its committee signs the next one.
        #[arg(long)]
        after: Option<PathBuf>,
    },
    /// Print a charter: its network, committee, rules, signatures and CID.
    Show {
        /// The charter block.
        file: PathBuf,
        /// The charter before it, to check a later epoch's signatures.
        #[arg(long)]
        after: Option<PathBuf>,
    },
    /// Hand a new epoch's charter to a storage node of the network, which takes it (when the
    /// committee in force signed it) and passes it on to every node.
    Publish {
        /// The charter block.
        file: PathBuf,
        /// The node's HTTP port.
        #[arg(long, default_value = super::audit::DEFAULT_NODE)]
        node: String,
    },
}

/// A validator given as a peer id or as 64 hex digits.
/// The signing key of the validator node in `node_dir` (its identity), refused unless it is
/// in `charter`'s committee.
pub(crate) fn validator_signing_key(
    node_dir: &std::path::Path,
    charter: &tessera_formats::charter::Charter,
) -> anyhow::Result<tessera_formats::record::SigningKey> {
    if !node_dir.join(identity::IDENTITY_FILE).exists() {
        bail!("{} has no node identity", node_dir.display());
    }
    let keypair = identity::load_or_create(node_dir)?;
    let key = signing_key(&keypair).context("the node's identity is not Ed25519")?;
    let me = PublisherKey::of(&key);
    if !charter.is_validator(&me) {
        bail!("{me} is not a validator of this charter");
    }
    Ok(key)
}

fn validator_key(text: &str) -> anyhow::Result<PublisherKey> {
    if let Ok(key) = text.parse::<PublisherKey>() {
        return Ok(key);
    }
    let peer: PeerId = text
        .parse()
        .with_context(|| format!("validator {text:?} is neither a peer id nor 64 hex digits"))?;
    node_key(&peer).with_context(|| format!("validator {peer} is not an Ed25519 identity"))
}

fn read(file: &Path) -> anyhow::Result<SignedCharter> {
    Ok(tessera_node::charter::read(file)?)
}

fn write(file: &Path, signed: &SignedCharter) -> anyhow::Result<()> {
    let (_, block) = signed.to_block()?;
    std::fs::write(file, block).with_context(|| format!("writing {}", file.display()))
}

/// `SIZE:TIME` (`1MiB:1h`) as byte-milliseconds.
fn page_worth(text: &str) -> Result<u64, String> {
    let (size, time) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: write a size and a time, e.g. 1MiB:1h"))?;
    let size: bytesize::ByteSize = size.parse().map_err(|e| format!("{size:?}: {e}"))?;
    let time = humantime::parse_duration(time).map_err(|e| format!("{time:?}: {e}"))?;
    let ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX);
    size.as_u64()
        .checked_mul(ms)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?}: more than 0 and at most 2^64 byte-milliseconds"))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Found {
            network,
            validators,
            threshold,
            validators_per_piece,
            audit_period,
            mut publishers,
            page_worth,
            out,
        } => {
            if out.exists() {
                bail!("{} exists; a charter is never overwritten", out.display());
            }
            let committee = validators
                .iter()
                .map(|v| validator_key(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let size = u32::try_from(committee.len()).unwrap_or(u32::MAX);
            let validators_per_piece = validators_per_piece
                .unwrap_or_else(|| CharterParams::default().validators_per_piece.min(size));
            publishers.sort();
            publishers.dedup();
            let params = CharterParams {
                audit_period_ms: u64::try_from(audit_period.as_millis()).unwrap_or(u64::MAX),
                validators_per_piece,
                publishers,
                page_byte_ms: page_worth.unwrap_or(0),
                ..CharterParams::default()
            };
            let charter = Charter::found(&network, committee, threshold, params);
            charter.validate()?;
            write(&out, &charter.signed_by(&[])?)?;
            println!(
                "wrote {}: network {network}, {} validators, threshold {threshold}; each \
                 validator signs it with `tessera charter sign`",
                out.display(),
                validators.len()
            );
            Ok(())
        }
        Command::Next {
            from,
            validators,
            threshold,
            starts,
            out,
        } => {
            if out.exists() {
                bail!("{} exists; a charter is never overwritten", out.display());
            }
            let current = read(&from)?;
            let (cid, _) = current.to_block()?;
            let committee = validators
                .iter()
                .map(|v| validator_key(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let size = u32::try_from(committee.len()).unwrap_or(u32::MAX);
            let params = CharterParams {
                validators_per_piece: current.charter.params.validators_per_piece.min(size),
                ..current.charter.params.clone()
            };
            let starts =
                tessera_formats::time::ms_of(starts.unwrap_or_else(std::time::SystemTime::now));
            let next = Charter::after(&current.charter, cid, starts, committee, threshold, params);
            next.validate()?;
            write(
                &out,
                &SignedCharter {
                    charter: next,
                    signatures: Vec::new(),
                },
            )?;
            println!(
                "wrote epoch {} of {} to {}: {} of the committee in force must sign it \
                 (tessera charter sign {} --after {})",
                current.charter.epoch + 1,
                current.charter.network,
                out.display(),
                current.charter.threshold,
                out.display(),
                from.display()
            );
            Ok(())
        }
        Command::Publish { file, node } => {
            let block =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            SignedCharter::from_block(&block)?;
            let api =
                tessera_storage_node::api_client::NodeClient::new(&node, Duration::from_secs(30))?;
            let answer = api.next_charter(block).await?;
            println!(
                "{}: epoch {} in force ({}), charter {}",
                api.base(),
                answer.epoch,
                if answer.advanced {
                    "taken now"
                } else {
                    "taken already"
                },
                answer.charter
            );
            Ok(())
        }
        Command::Sign {
            file,
            node_dir,
            after,
        } => {
            let mut signed = read(&file)?;
            // The founding charter is signed by its own committee; a later one by the
            // committee in force.
            let signers = match (&after, signed.charter.epoch) {
                (_, 0) => signed.charter.clone(),
                (Some(after), _) => read(after)?.charter,
                (None, epoch) => bail!(
                    "epoch {epoch} is signed by the committee in force: name its charter with --after"
                ),
            };
            let key = validator_signing_key(&node_dir, &signers)?;
            let me = PublisherKey::of(&key);
            signed.signatures.retain(|s| s.signer != me);
            signed.signatures.push(signed.charter.sign(&key)?);
            write(&file, &signed)?;
            println!(
                "signed as {me}: {} of {} signatures needed",
                signed.signatures.len(),
                signed.charter.threshold
            );
            Ok(())
        }
        Command::Show { file, after } => {
            let signed = read(&file)?;
            let before = after.as_deref().map(read).transpose()?;
            let (cid, _) = signed.to_block()?;
            let c = &signed.charter;
            println!("charter    {cid}");
            println!("network    {} (epoch {})", c.network, c.epoch);
            if c.starts_ms > 0 {
                println!(
                    "in force   from {}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_millis(c.starts_ms)
                    )
                );
            }
            println!(
                "committee  {} validators, {} to change the charter",
                c.committee.len(),
                c.threshold
            );
            for key in &c.committee {
                let signed_it = signed.signatures.iter().any(|s| s.signer == *key);
                println!("  {key}{}", if signed_it { "  signed" } else { "" });
            }
            let p = &c.params;
            println!(
                "audits     every piece once per {}, {} samples, by {} validators",
                humantime::format_duration(Duration::from_millis(p.audit_period_ms)),
                p.audit_samples,
                p.validators_per_piece
            );
            if p.page_byte_ms > 0 {
                println!(
                    "pages      each validated page paid as {} byte-milliseconds of storage",
                    p.page_byte_ms
                );
            }
            if p.publishers.is_empty() {
                println!("publishers any");
            } else {
                println!("publishers {} listed", p.publishers.len());
            }
            match (&before, c.epoch) {
                (_, 0) => match signed.verify_founding() {
                    Ok(()) => println!("valid      yes: nodes can start with it"),
                    Err(e) => println!("valid      not yet: {e}"),
                },
                (Some(before), _) => match signed.verify_after(before) {
                    Ok(()) => println!("valid      yes: publish it to a node of the network"),
                    Err(e) => println!("valid      not yet: {e}"),
                },
                (None, _) => println!("valid      name the charter before it (--after) to check"),
            }
            Ok(())
        }
    }
}
