//! A raw protocol session for tests: real TLS and a real Hello, then any
//! frames at all, as a hostile or broken client would send them.

use std::sync::Arc;
use std::time::Duration;

use jw::protocol::{self, ClientMessage, FrameDecoder, Hello, ServerMessage, Welcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{certs, Jwd};

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A client configuration with `cert` and `key` from certs/.
pub fn client_config(cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    jw::tls::client_config(
        &certs().join("server-ca.crt"),
        &certs().join(cert),
        &certs().join(key),
    )
    .unwrap()
}

/// A TLS connection as `user` (certs/USER.crt), with a small TCP receive
/// buffer if asked (so a client that does not read stops the server's
/// writes after little data), and a Hello of `version` naming `client`.
/// Returns the stream and the server's Welcome.
pub async fn connect(
    jwd: &Jwd,
    user: &str,
    version: u32,
    client: &str,
    recv_buffer: Option<u32>,
) -> (Tls, Welcome) {
    let addr: std::net::SocketAddr = jwd.addr.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let config = client_config(&format!("{user}.crt"), &format!("{user}.key"));
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let mut hello = Vec::new();
    protocol::encode(
        &ClientMessage::Hello(Hello {
            version,
            client: client.into(),
        }),
        &mut hello,
    )
    .unwrap();
    tls.write_all(&hello).await.unwrap();
    match read_message(&mut tls, &mut FrameDecoder::new(protocol::MAX_FRAME)).await {
        Some(ServerMessage::Welcome(w)) => (tls, w),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// The next whole message, or `None` once the connection closed (or
/// nothing came for 10 s). Frames read past the message stay in `decoder`.
pub async fn read_message(tls: &mut Tls, decoder: &mut FrameDecoder) -> Option<ServerMessage> {
    read_message_within(tls, decoder, Duration::from_secs(10)).await
}

/// `read_message`, waiting up to `quiet` for the next bytes.
pub async fn read_message_within(
    tls: &mut Tls,
    decoder: &mut FrameDecoder,
    quiet: Duration,
) -> Option<ServerMessage> {
    let mut buf = vec![0u8; 65536];
    loop {
        if let Some(payload) = decoder.next_frame().unwrap() {
            // A JobInfo in the form of versions 1 and 2 is shorter than in
            // version 3, so each frame decodes in exactly one of the two.
            return Some(
                protocol::decode(payload)
                    .or_else(|_| protocol::decode_for(2, payload))
                    .unwrap(),
            );
        }
        let n = tokio::time::timeout(quiet, tls.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        decoder.feed(&buf[..n]);
    }
}

/// A raw session: send any message, read each reply in turn.
pub struct Raw {
    pub tls: Tls,
    pub welcome: Welcome,
    decoder: FrameDecoder,
}

impl Raw {
    /// A version-`version` session as `user`.
    pub async fn new(jwd: &Jwd, user: &str, version: u32) -> Raw {
        let (tls, welcome) = connect(jwd, user, version, "raw", None).await;
        Raw {
            tls,
            welcome,
            decoder: FrameDecoder::new(protocol::MAX_FRAME),
        }
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        let mut frame = Vec::new();
        protocol::encode(msg, &mut frame).unwrap();
        self.tls.write_all(&frame).await.unwrap();
    }

    /// The next message (`None`: the connection closed).
    pub async fn next(&mut self) -> Option<ServerMessage> {
        read_message(&mut self.tls, &mut self.decoder).await
    }

    /// The next message, waiting up to `quiet` for it (a server working
    /// through a flood answers late on a slow machine).
    pub async fn next_within(&mut self, quiet: Duration) -> Option<ServerMessage> {
        read_message_within(&mut self.tls, &mut self.decoder, quiet).await
    }
}
