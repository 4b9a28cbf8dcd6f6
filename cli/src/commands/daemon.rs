//! What the long-running node commands share: stdout lines, and waiting for Ctrl-C or
//! SIGTERM.

use anyhow::Context as _;

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn until_stopped() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Writes a line to stdout; a node keeps running when nobody reads its stdout any more.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}
