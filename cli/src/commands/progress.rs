//! Progress bars for dataset commands, drawn on stderr only when it is a terminal.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use tessera_client::dataset::{Progress, ProgressSink};

/// A bar of bytes with a message of shards (and pieces when publishing); hidden when stderr is
/// not a terminal.
pub(crate) fn bar() -> (ProgressBar, ProgressSink) {
    let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let counts = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize, 0usize)));
    let sink_bar = bar.clone();
    let sink: ProgressSink = Some(Arc::new(move |event: Progress| {
        let mut c = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
