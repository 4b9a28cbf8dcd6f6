//! What every node's settings share: durations written as people write them, the default data
//! directory, and the error that names the setting at fault.
//!
//! Each role describes its settings once, as a serde struct with its defaults (`Default`) and
//! its checks (`check`); the TOML file, the flags that override it and `--print-config` all
//! read and write that one struct.

use std::path::PathBuf;

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    /// The setting, as the config file spells it.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl InvalidSetting {
    /// `key` is wrong because of `reason`.
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

/// `~/.local/share/tessera/NAME`; empty when there is no `$HOME`, which a node's check refuses
/// (so the operator is asked for a data directory instead of finding one in the working folder).
pub fn default_data_dir(name: &str) -> PathBuf {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".local/share/tessera").join(name))
        .unwrap_or_default()
}

/// Checks that a data directory was given or found.
pub fn check_data_dir(dir: &std::path::Path) -> Result<(), InvalidSetting> {
    if dir.as_os_str().is_empty() {
        return Err(InvalidSetting::new(
            "data-dir",
            "none given, and no $HOME to default to",
        ));
    }
    Ok(())
}

/// A duration as `"30m"`, `"1h 30m"`, `"0s"` (humantime), or as whole seconds (`1800`), the
/// form older config files used. Written back as humantime.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer, de};

    /// Writes `d` as humantime (`"30m"`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Reads humantime text or whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like \"30m\" or whole seconds")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                humantime::parse_duration(text).map_err(|e| E::custom(format!("{text:?}: {e}")))
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(secs))
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
                u64::try_from(secs)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("{secs} seconds is negative")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A byte size as `"50GiB"` or a number of bytes; written back exactly (`"64MiB"`, or bytes
/// when no unit divides it), never rounded the way `ByteSize`'s own display rounds.
pub mod byte_size {
    use bytesize::ByteSize;
    use serde::{Deserialize, Deserializer, Serializer};

    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];

    /// Writes `b` in the largest unit that divides it.
    pub fn serialize<S: Serializer>(b: &ByteSize, s: S) -> Result<S::Ok, S::Error> {
        let n = b.as_u64();
        match UNITS
            .iter()
            .find(|(_, size)| n >= *size && n.is_multiple_of(*size))
        {
            Some((unit, size)) => s.collect_str(&format_args!("{}{unit}", n / size)),
            None => s.serialize_u64(n),
        }
    }

    /// Reads `"50GiB"`, `"1.5 MB"` or bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        ByteSize::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Timed {
        #[serde(with = "super::duration")]
        every: Duration,
    }

    fn read(text: &str) -> Result<Duration, String> {
        serde_json::from_str::<Timed>(text)
            .map(|t| t.every)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_read_as_text_or_seconds_and_write_as_text() {
        assert_eq!(read(r#"{"every": "30m"}"#), Ok(Duration::from_secs(1800)));
        assert_eq!(
            read(r#"{"every": "1h 30m"}"#),
            Ok(Duration::from_secs(5400))
        );
        assert_eq!(read(r#"{"every": 90}"#), Ok(Duration::from_secs(90)));
        assert_eq!(read(r#"{"every": "0s"}"#), Ok(Duration::ZERO));
        assert!(read(r#"{"every": "soon"}"#).unwrap_err().contains("soon"));
        assert!(read(r#"{"every": -1}"#).unwrap_err().contains("negative"));
        assert!(read(r#"{"every": 1.5}"#).is_err());
        let written = serde_json::to_string(&Timed {
            every: Duration::from_secs(5400),
        })
        .unwrap();
        assert_eq!(written, r#"{"every":"1h 30m"}"#);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sized {
        #[serde(with = "super::byte_size")]
        size: bytesize::ByteSize,
    }

    #[test]
    fn byte_sizes_write_back_exactly() {
        for n in [
            0,
            1,
            1023,
            1024,
            64 << 20,
            (64 << 20) + 1,
            50 << 30,
            3 << 40,
        ] {
            let written = serde_json::to_string(&Sized {
                size: bytesize::ByteSize(n),
            })
            .unwrap();
            let read: Sized = serde_json::from_str(&written).unwrap();
            assert_eq!(read.size.as_u64(), n, "{written}");
        }
        let written = serde_json::to_string(&Sized {
            size: bytesize::ByteSize::mib(64),
        })
        .unwrap();
        assert_eq!(written, r#"{"size":"64MiB"}"#);
    }

    #[test]
    fn a_missing_data_directory_is_named() {
        let err = super::check_data_dir(std::path::Path::new("")).unwrap_err();
        assert_eq!(err.key, "data-dir");
        assert!(super::check_data_dir(std::path::Path::new("/srv/t")).is_ok());
    }
}
