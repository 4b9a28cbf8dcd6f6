//! Progress bars for dataset commands, drawn on stderr only when it is a terminal.

use std::{sync::Arc, time::Duration};
use tessera_dataset::{Progress, ProgressSink};

use indicatif::{ProgressBar, ProgressStyle};
use tessera_client::Session;

/// A wait on one node this long is named on the progress line.
const NAMED_WAIT: Duration = Duration::from_secs(1);

/// A bar of bytes with a message of shards (and pieces when publishing), and the nodes the
/// session has waited on for more than a second; hidden when stderr is not a terminal.
pub(crate) fn bar(session: &Session) -> (ProgressBar, ProgressSink) {
    let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}{prefix}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let (net, waits) = (session.net().clone(), bar.clone());
    tokio::spawn(async move {
        while !waits.is_finished() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(stalled) = net.stalled_peers(NAMED_WAIT).await else {
                break;
            };
            waits.set_prefix(waiting_on(&stalled));
        }
    });
    let counts = Arc::new(parking_lot::Mutex::new((0usize, 0usize, 0usize, 0usize)));
    let sink_bar = bar.clone();
    let sink: ProgressSink = Some(Arc::new(move |event: Progress| {
        let mut c = counts.lock();
        match event {
            Progress::Planned {
                shards,
                bytes,
                pieces,
            } => {
                sink_bar.set_length(bytes);
                *c = (0, shards, 0, pieces);
            }
            Progress::ShardDone { bytes, .. } => {
                c.0 += 1;
                sink_bar.inc(bytes);
            }
            Progress::PieceStored { .. } => c.2 += 1,
            _ => {}
        }
        if c.3 > 0 {
            sink_bar.set_message(format!("files {}/{} pieces {}/{}", c.0, c.1, c.2, c.3));
        } else {
            sink_bar.set_message(format!("files {}/{}", c.0, c.1));
        }
    }));
    (bar, sink)
}

/// " waiting on PEER for 3.2 s (and 2 more)", or nothing.
fn waiting_on(stalled: &[(tessera_net::PeerId, Duration)]) -> String {
    let Some((peer, quiet)) = stalled.first() else {
        return String::new();
    };
    let id = peer.to_string();
    let short = &id[id.len().saturating_sub(8)..];
    let more = match stalled.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    format!(
        " waiting on node …{short} for {:.1} s{more}",
        quiet.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_wait_is_named_with_the_count_of_the_others() {
        assert_eq!(waiting_on(&[]), "");
        let (a, b) = (tessera_net::PeerId::random(), tessera_net::PeerId::random());
        let id = a.to_string();
        let line = waiting_on(&[
            (a, Duration::from_millis(3_240)),
            (b, Duration::from_secs(2)),
        ]);
        assert_eq!(
            line,
            format!(
                " waiting on node …{} for 3.2 s (and 1 more)",
                &id[id.len() - 8..]
            )
        );
    }
}
