//! The publish journal: one line per piece stored, appended and flushed as each is acked, so
//! that a publish run again after an interruption skips what is already on the network.
//! Lines that do not parse (a torn last line) are ignored.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_net::PeerId;

use super::DatasetError;

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    piece: String,
    holder: String,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: parking_lot::Mutex<File>,
    stored: HashMap<Cid, PeerId>,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads what it holds.
    pub fn open(path: &Path) -> Result<Self, DatasetError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(DatasetError::io(format!("creating {}", dir.display())))?;
        }
        let mut stored = HashMap::new();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                if let Ok(Line { piece, holder }) = serde_json::from_str(&line)
                    && let Ok(cid) = Cid::try_from(piece.as_str())
                    && let Ok(holder) = holder.parse::<PeerId>()
                {
                    stored.insert(cid, holder);
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(DatasetError::io(format!("opening {}", path.display())))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: parking_lot::Mutex::new(file),
            stored,
        })
    }

    /// Pieces an earlier run stored, and the node each went to.
    pub fn stored(&self) -> &HashMap<Cid, PeerId> {
        &self.stored
    }

    /// Records a stored piece.
    pub fn record(&self, piece: &Cid, holder: &PeerId) {
        let line = Line {
            piece: piece.to_string(),
            holder: holder.to_string(),
        };
        if let Ok(mut text) = serde_json::to_string(&line) {
            text.push('\n');
            let mut file = self.file.lock();
            // A line that fails to reach the disk only means the piece is sent again.
            let _ = file.write_all(text.as_bytes()).and_then(|()| file.flush());
        }
    }

    /// Removes the journal once the publish is complete.
    pub fn finish(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
