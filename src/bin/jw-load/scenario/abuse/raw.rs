//! Raw connections for abusers: TLS, Hello and Welcome by hand (without
//! `Client`), frames sent when the abuser chooses, never read unless it
//! chooses.

use std::sync::Arc;

use jw::protocol::{
    ClientMessage, FrameDecoder, Hello, JobId, LogsRequest, Request, ServerMessage, MAX_FRAME,
    PROTOCOL_VERSION,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Credit of every abusive logs stream.
pub(crate) const ABUSE_CREDIT: u32 = 16 << 20;

/// A raw client connection: TLS over TCP, no routing task.
pub(crate) type RawTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The name the server's certificate is checked against, as `Client` does.
pub(crate) fn raw_server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|e| format!("connect: {host:?}: {e}"))
}

/// A connection that has done TLS, Hello and Welcome without `Client`,
/// whose routing task reads everything as it arrives: an abuser decides
/// itself when, and whether, to read. `rcvbuf` sets SO_RCVBUF before
/// connecting (the window is fixed at the handshake), so a reader that
/// stops reading stops jwd's sends at the TCP level within a few KiB.
pub(crate) async fn raw_connect(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    rcvbuf: Option<u32>,
) -> Result<RawTls, String> {
    let name = raw_server_name(addr)?;
    let sa = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?
        .next()
        .ok_or_else(|| format!("connect: {addr} has no address"))?;
    let socket = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| format!("connect: {e}"))?;
    if let Some(size) = rcvbuf {
        socket
            .set_recv_buffer_size(size)
            .map_err(|e| format!("connect: SO_RCVBUF: {e}"))?;
    }
    let tcp = socket
        .connect(sa)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    raw_send(
        &mut tls,
        &[ClientMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: concat!("jw-load/", env!("CARGO_PKG_VERSION"), " abuse").into(),
        })],
    )
    .await?;
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    loop {
        if let Some(payload) = decoder.next_frame().map_err(|e| format!("hello: {e}"))? {
            return match jw::protocol::decode::<ServerMessage>(payload) {
                Ok(ServerMessage::Welcome(_)) => Ok(tls),
                Ok(ServerMessage::Fatal(e)) => Err(format!("fatal {}: {}", e.code, e.message)),
                Ok(other) => Err(format!("hello: {other:?} before Welcome")),
                Err(e) => Err(format!("hello: {e}")),
            };
        }
        let n = tls
            .read_buf(decoder.append_buffer(4096))
            .await
            .map_err(|e| format!("hello: {e}"))?;
        if n == 0 {
            return Err("closed: during Hello".into());
        }
    }
}

/// Encodes `msgs` as frames and writes them in one go.
pub(crate) async fn raw_send(tls: &mut RawTls, msgs: &[ClientMessage]) -> Result<(), String> {
    let mut frames = Vec::new();
    for m in msgs {
        jw::protocol::encode(m, &mut frames).map_err(|e| format!("encode: {e}"))?;
    }
    tls.write_all(&frames)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tls.flush().await.map_err(|e| format!("write: {e}"))
}

/// A following logs request of both streams of `job` on `stream`, with
/// [`ABUSE_CREDIT`].
pub(crate) fn abusive_logs(stream: u32, job: JobId) -> ClientMessage {
    ClientMessage::Request {
        stream,
        request: Request::Logs(LogsRequest {
            job,
            stdout: Some(0),
            stderr: Some(0),
            follow: true,
            credit: ABUSE_CREDIT,
        }),
    }
}
