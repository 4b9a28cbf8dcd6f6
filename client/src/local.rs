//! Where a client keeps its files on this machine, and its settings file
//! (`~/.config/tessera/client.toml`), shared by every front end (the CLI, the Python package).
//!
//! ```toml
//! bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]
//! network = "ID"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tessera_net::Multiaddr;

/// Settings files larger than this are refused before they are read.
pub const MAX_SETTINGS_BYTES: u64 = 1024 * 1024;

/// `$XDG_CONFIG_HOME/tessera/NAME` or `~/.config/tessera/NAME`.
pub fn config_path(name: &str) -> Option<PathBuf> {
    under("XDG_CONFIG_HOME", ".config", name)
}

/// `$XDG_CACHE_HOME/tessera/NAME` or `~/.cache/tessera/NAME`.
pub fn cache_path(name: &str) -> Option<PathBuf> {
    under("XDG_CACHE_HOME", ".cache", name)
}

fn under(var: &str, home_dir: &str, name: &str) -> Option<PathBuf> {
    let base = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_dir)))?;
    Some(base.join("tessera").join(name))
}

/// A settings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than it may be.
    #[error("{path} is {len} bytes; at most {max} are read")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The most read.
        max: u64,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("parsing {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// How a client joins the network, from its settings file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// Peers to join through.
    #[serde(default)]
    pub bootstrap: Vec<Multiaddr>,
    /// The network's id.
    pub network: Option<String>,
}

impl ClientSettings {
    /// The settings in `path`, else in the default file when it exists, else none.
    pub fn load(path: Option<&Path>) -> Result<Self, SettingsError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => match config_path("client.toml").filter(|p| p.exists()) {
                Some(p) => p,
                None => return Ok(Self::default()),
            },
        };
        let text = read_bounded(&path, MAX_SETTINGS_BYTES)?;
        toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path,
            reason: e.to_string(),
        })
    }
}

/// The text of `path`, refused before it is read when it holds more than `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> Result<String, SettingsError> {
    let read = |source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > max {
        return Err(SettingsError::TooLarge {
            path: path.to_path_buf(),
            len,
            max,
        });
    }
    std::fs::read_to_string(path).map_err(read)
}
