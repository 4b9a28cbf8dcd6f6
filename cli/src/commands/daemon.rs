//! What the long-running node commands share: their data directory, list settings where
//! flags win over the file, stdout lines, and waiting for Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;

/// The flag's directory, else the file's, else `~/.local/share/tessera/NAME`.
pub(crate) fn data_dir(
    flag: Option<PathBuf>,
    file: Option<PathBuf>,
    name: &str,
) -> anyhow::Result<PathBuf> {
    match flag.or(file) {
        Some(dir) => Ok(dir),
        None => Ok(
            PathBuf::from(std::env::var_os("HOME").context("no --data-dir and no $HOME")?)
                .join(".local/share/tessera")
                .join(name),
        ),
    }
}

/// The flags' list if any were given, else the file's if it has one, else `default`.
pub(crate) fn list<T>(flags: Vec<T>, file: Vec<T>, default: impl FnOnce() -> Vec<T>) -> Vec<T> {
    if !flags.is_empty() {
        flags
    } else if !file.is_empty() {
        file
    } else {
        default()
    }
}

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
