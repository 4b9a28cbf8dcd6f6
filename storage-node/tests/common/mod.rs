//! Helpers shared by the storage node's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use tessera_net::{Client, PeerId};
use tessera_storage_protocol::{MAX_PUT_CHUNK, PieceProtocol, PieceRequest, PieceResponse};

/// Uploads `bytes` under `piece` and returns the final response.
pub(crate) async fn upload(
    client: &Client,
    node: PeerId,
    piece: cid::Cid,
    bytes: &[u8],
) -> PieceResponse {
    let ready = client
        .request::<PieceProtocol>(
            node,
            PieceRequest::PutBegin {
                piece,
                size: bytes.len() as u64,
            },
        )
        .await
        .unwrap();
    match ready {
        PieceResponse::PutReady { offset: 0, .. } => {}
        other => return other,
    }
    let mut offset = 0u64;
    for chunk in bytes.chunks(usize::try_from(MAX_PUT_CHUNK).unwrap()) {
        let r = client
            .request::<PieceProtocol>(
                node,
                PieceRequest::PutChunk {
                    piece,
                    offset,
                    bytes: chunk.to_vec(),
                },
            )
            .await
            .unwrap();
        match r {
            PieceResponse::PutProgress { offset: o, .. } => offset = o,
            other => return other,
        }
    }
    client
        .request::<PieceProtocol>(node, PieceRequest::PutEnd { piece })
        .await
        .unwrap()
}

pub(crate) fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key("tessera service test")
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// A GET of `path` on a node's HTTP port: the response's head and body.
pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// A short-lived client peer joined through `bootstrap`.
pub(crate) async fn user(bootstrap: tessera_net::Multiaddr) -> Client {
    tessera_net::start(
        tessera_net::Keypair::generate_ed25519(),
        tessera_net::NetworkConfig::client(vec![bootstrap]),
    )
    .await
    .unwrap()
    .client
}
