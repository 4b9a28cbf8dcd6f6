//! Reading TOML settings files: bounded in size, every error naming the file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::de::DeserializeOwned;

const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads and parses the TOML file at `path`.
pub(crate) fn read_toml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = read_bounded(path, MAX_CONFIG_BYTES, "config")?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

/// Reads the text file at `path` (a `what`, for messages), refusing one over `max` bytes
/// before reading it.
pub(crate) fn read_bounded(path: &Path, max: u64, what: &str) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {what} {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= max,
        "{what} {} is {len} bytes; at most {max}",
        path.display()
    );
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// A duration in a config file, like "30m".
pub(crate) fn duration(
    text: Option<&str>,
    what: &str,
) -> anyhow::Result<Option<std::time::Duration>> {
    text.map(|t| humantime::parse_duration(t).with_context(|| format!("{what}: {t:?}")))
        .transpose()
}

/// `$XDG_CONFIG_HOME/tessera/NAME` or `~/.config/tessera/NAME`.
pub(crate) fn default_path(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tessera").join(name))
}

/// `$XDG_CACHE_HOME/tessera/NAME` or `~/.cache/tessera/NAME`.
pub(crate) fn cache_path(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tessera").join(name))
}
