//! Reading TOML settings files: bounded in size, every error naming the file.

use std::path::Path;

use anyhow::Context as _;
use serde::de::DeserializeOwned;

const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads and parses the TOML file at `path`.
pub(crate) fn read_toml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = read_bounded(path, MAX_CONFIG_BYTES, "config")?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

/// The settings in the file at `path`, or every default when there is no file.
pub(crate) fn read_settings<T: DeserializeOwned + Default>(
    path: Option<&Path>,
) -> anyhow::Result<T> {
    path.map_or_else(|| Ok(T::default()), read_toml)
}

/// A flag given on the command line replaces the file's setting.
pub(crate) fn flag<T>(setting: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *setting = value;
    }
}

/// A list flag given at least once replaces the file's list.
pub(crate) fn flags<T>(setting: &mut Vec<T>, flags: Vec<T>) {
    if !flags.is_empty() {
        *setting = flags;
    }
}

/// Reads the text file at `path` (a `what`, for messages), refusing one over `max` bytes
/// before reading it.
pub(crate) fn read_bounded(path: &Path, max: u64, what: &str) -> anyhow::Result<String> {
    tessera_client::local::read_bounded(path, max).with_context(|| format!("the {what}"))
}

pub(crate) use tessera_client::local::{cache_path, config_path as default_path};

/// Config files of any shape: lines of `key = value` from the keys a file may hold and values
/// at every edge (huge, negative, not a number, wrong type, unparsable durations).
#[cfg(test)]
pub(crate) fn any_config(
    keys: &'static [&'static str],
) -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let value = prop_oneof![
        Just("18446744073709551615".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("nan".to_string()),
        Just("true".to_string()),
        Just("\"99999999999999999999y\"".to_string()),
        Just("\"16EiB\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("[\"/ip4/0.0.0.0/tcp/99999\"]".to_string()),
        Just("\"300.1.1.1:8080\"".to_string()),
        Just("[]".to_string()),
        "\"[ -~]{0,20}\"",
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let key = prop_oneof![
        proptest::sample::select(keys).prop_map(str::to_string),
        "[a-z-]{1,12}",
    ];
    proptest::collection::vec((key, value), 0..6).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    })
}
