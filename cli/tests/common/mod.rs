//! Starting `tessera storage-node` processes for the binary's tests.

#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

/// The binary under test.
pub(crate) fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

/// A started node: the process, its libp2p address, its HTTP line (if any) and its
/// "data ... (N pieces" line.
pub(crate) struct Started {
    pub(crate) child: Child,
    pub(crate) peer: String,
    pub(crate) addr: String,
    pub(crate) http: Option<String>,
    pub(crate) data: String,
}

/// Starts `tessera storage-node --data-dir DIR` on 127.0.0.1 with `extra` flags and reads its
/// start-up lines.
pub(crate) fn spawn_node(dir: &Path, extra: &[&str]) -> Started {
    let mut child = tessera()
        .args(["storage-node", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--capacity", "1GiB", "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let peer = lines.next().unwrap().unwrap();
    let addr = lines.next().unwrap().unwrap();
    let addr = addr.trim_start_matches("listening ").to_string();
    let mut http = None;
    let data = loop {
        let line = lines.next().unwrap().unwrap();
        if line.starts_with("data") {
            break line;
        }
        http = Some(line);
    };
    Started {
        child,
        peer,
        addr,
        http,
        data,
    }
}
