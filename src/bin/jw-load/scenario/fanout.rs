//! `jw-load fanout`: one job writes B bytes; R readers follow it from byte
//! 0 and check a digest; compared with plain TLS over loopback.

use std::path::PathBuf;
use std::time::Instant;

use jw::client::ConnectOptions;
use jw::protocol::{Event, LogsRequest, OutputStream};
use serde_json::json;

use crate::baseline::tls_baseline;
use crate::clients::connect_all;
use crate::digest::Digest;
use crate::jobs::true_job;

/// The bytes the fanout job writes: `head -c B /dev/zero | tr` would be
/// cheap but uniform; a repeating counter pattern catches reordering.
pub(crate) fn pattern(len: u64) -> impl Iterator<Item = Vec<u8>> {
    let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(block.len() as u64) as usize;
        left -= n as u64;
        Some(block[..n].to_vec())
    })
}

/// Runs the scenario and the TLS baseline; the report, or an error if a
/// reader got other bytes than the job wrote.
pub(crate) async fn fanout(
    opts: &ConnectOptions,
    bytes: u64,
    readers: usize,
    connections: usize,
    server: (&PathBuf, &PathBuf, &PathBuf),
) -> Result<serde_json::Value, String> {
    let mut expected = Digest::new();
    for block in pattern(bytes) {
        expected.update(&block);
    }
    let connections = connections.max(1);
    let clients = connect_all(opts, connections).await?;
    // The job writes the same pattern with python3 (present on the hosts
    // jw targets), in 64 KiB writes.
    let script = format!(
        "python3 -c 'import sys; b=bytes(i % 251 for i in range(65536)); n={bytes}; w=sys.stdout.buffer\nwhile n>0:\n  k=min(n,65536); w.write(b[:k]); n-=k'"
    );
    let mut req = true_job();
    req.command = "sh".into();
    req.args = vec!["-c".into(), script];
    req.limits.output_bytes = Some(bytes.max(1));
    let job = clients[0].start(req).await.map_err(|e| e.to_string())?;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..readers {
        let client = clients[r % connections].clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut stream = client
                .logs(LogsRequest {
                    job,
                    stdout: Some(0),
                    stderr: None,
                    follow: true,
                    credit: 4 << 20,
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut hash = Digest::new();
            let mut got = 0u64;
            let mut owed = 0u32;
            loop {
                match stream.next().await.map_err(|e| e.to_string())? {
                    Some(Event::Output(c)) if c.stream == OutputStream::Stdout => {
                        hash.update(&c.data);
                        got += c.data.len() as u64;
                        owed += c.data.len() as u32;
                        if owed >= 1 << 20 {
                            stream.grant(owed).await.map_err(|e| e.to_string())?;
                            owed = 0;
                        }
                    }
                    Some(Event::End(info)) => {
                        return Ok::<_, String>((hash, got, t.elapsed(), info.exit_code))
                    }
                    other => return Err(format!("unexpected {other:?}")),
                }
            }
        }));
    }
    let mut per_reader = Vec::new();
    let mut ok = true;
    for t in tasks {
        let (hash, got, took, code) = t.await.map_err(|e| e.to_string())??;
        ok &= hash == expected && got == bytes && code == Some(0);
        per_reader.push(got as f64 / took.as_secs_f64() / 1e6);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let _ = clients[0].remove(job).await;
    let aggregate = (bytes * readers as u64) as f64 / elapsed / 1e6;
    let baseline = tls_baseline(bytes, readers, server).await?;
    eprintln!(
        "fanout: {} to {readers} readers on {connections} connections: {aggregate:.0} MB/s aggregate; TLS baseline {baseline:.0} MB/s; ratio {:.2}; hashes {}",
        jw::units::format_bytes(bytes),
        aggregate / baseline,
        if ok { "match" } else { "DIFFER" }
    );
    if !ok {
        return Err("a reader got different bytes than the job wrote".into());
    }
    Ok(json!({
        "scenario": "fanout",
        "bytes": bytes,
        "readers": readers,
        "connections": connections,
        "bytes_delivered": bytes * readers as u64,
        "aggregate_mb_per_s": aggregate,
        "per_reader_mb_per_s": per_reader,
        "baseline_tls_mb_per_s": baseline,
        "ratio_vs_tls": aggregate / baseline,
        "hashes_match": ok,
    }))
}
