//! The baselines measured without jw in the same run: a plain fork/exec,
//! the same kinds of namespaces with unshare, and plain TLS over loopback.

use std::path::PathBuf;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::clients::share;

/// Local baselines: a plain fork/exec, and the same kinds of namespaces
/// without jw (unshare, which itself costs one exec more).
pub(crate) fn local_spawn(n: usize, namespaced: bool) -> Result<Histogram<u64>, String> {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..n {
        let t = Instant::now();
        let status = if namespaced {
            std::process::Command::new("unshare")
                .args(["-p", "-f", "-m", "-n", "-u", "-i", "/bin/true"])
                .status()
        } else {
            std::process::Command::new("/bin/true").status()
        }
        .map_err(|e| format!("cannot run the local baseline: {e}"))?;
        if !status.success() {
            return Err(format!("the local baseline failed: {status}"));
        }
        h.record(t.elapsed().as_micros() as u64).ok();
    }
    Ok(h)
}

/// The namespaced baseline's throughput at the same concurrency: what this
/// machine can spawn into new namespaces per second without jw.
pub(crate) fn unshare_rate(n: usize, concurrency: usize) -> Result<f64, String> {
    let began = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|i| {
            let part = share(n, concurrency, i);
            std::thread::spawn(move || local_spawn(part, true).map(|_| ()))
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| "a baseline thread panicked".to_string())??;
    }
    Ok(n as f64 / began.elapsed().as_secs_f64())
}

/// Plain TLS 1.3 over loopback with jw's rustls configurations: a sink
/// server in this process and `readers` connections each sending `bytes`.
pub(crate) async fn tls_baseline(
    bytes: u64,
    readers: usize,
    (cert, key, client_ca): (&PathBuf, &PathBuf, &PathBuf),
) -> Result<f64, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server_config = jw::tls::ServerTls {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: client_ca.clone(),
        crls: Vec::new(),
    }
    .load()
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let server = tokio::spawn(async move {
        let mut sinks = Vec::new();
        for _ in 0..readers {
            let (tcp, _) = listener.accept().await?;
            let acceptor = acceptor.clone();
            sinks.push(tokio::spawn(async move {
                // The server sends, as jwd does; the client receives.
                let mut tls = acceptor.accept(tcp).await?;
                let block = vec![7u8; 65536];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(block.len() as u64) as usize;
                    tls.write_all(&block[..n]).await?;
                    left -= n as u64;
                }
                tls.shutdown().await?;
                Ok::<_, std::io::Error>(())
            }));
        }
        for s in sinks {
            s.await.map_err(std::io::Error::other)??;
        }
        Ok::<_, std::io::Error>(())
    });
    let client_config = jw::tls::client_config(
        &PathBuf::from("certs/server-ca.crt"),
        &PathBuf::from("certs/alice.crt"),
        &PathBuf::from("certs/alice.key"),
    )
    .map_err(|e| e.to_string())?;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let config = client_config.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
                .map_err(std::io::Error::other)?;
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            let mut buf = vec![0u8; 65536];
            let mut got = 0u64;
            loop {
                let n = tls.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            Ok::<_, std::io::Error>(got)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("TLS baseline: {e}"))?;
    }
    server
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("TLS baseline: {e}"))?;
    Ok(total as f64 / began.elapsed().as_secs_f64() / 1e6)
}
