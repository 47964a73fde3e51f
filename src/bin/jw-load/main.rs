//! `jw-load`: load generator and benchmark for a running jwd. Every figure
//! comes with a baseline measured in the same run, and the ratio: this
//! machine is shared and noisy, so only ratios from one run mean anything.

mod abuse;

use abuse::{abuse, AbusePlan};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use jw::client::{Client, ClientError, ConnectOptions};
use jw::protocol::{
    ClientMessage, ErrorCode, Event, FrameDecoder, Hello, JobId, LogsRequest, Network,
    OutputStream, Request, ServerMessage, StartRequest, MAX_FRAME, PROTOCOL_VERSION,
};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Load generator and benchmarks for jwd.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[arg(long, env = "JW_ADDR", default_value = "127.0.0.1:7443", global = true)]
    addr: String,
    #[arg(
        long,
        env = "JW_CA",
        default_value = "certs/server-ca.crt",
        global = true
    )]
    ca: PathBuf,
    #[arg(
        long,
        env = "JW_CERT",
        default_value = "certs/alice.crt",
        global = true
    )]
    cert: PathBuf,
    #[arg(long, env = "JW_KEY", default_value = "certs/alice.key", global = true)]
    key: PathBuf,
    /// jwd's pid: adds its CPU time and RssAnon to every figure.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of the summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Start N jobs of /bin/true over C connections; start latency and rate.
    Start {
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Status requests per second on C connections.
    Status {
        #[arg(long, default_value_t = 20000)]
        requests: usize,
        #[arg(long, default_value_t = 1)]
        connections: usize,
    },
    /// One job writes B bytes; R readers follow it from 0 and check a hash.
    Fanout {
        #[arg(long, default_value = "256M", value_parser = jw::units::parse_bytes)]
        bytes: u64,
        #[arg(long, default_value_t = 10)]
        readers: usize,
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Server certificate and key for the in-process TLS baseline.
        #[arg(long, default_value = "certs/server.crt")]
        server_cert: PathBuf,
        #[arg(long, default_value = "certs/server.key")]
        server_key: PathBuf,
        #[arg(long, default_value = "certs/client-ca.crt")]
        client_ca: PathBuf,
    },
    /// A job writes a timestamped line every millisecond; a follower
    /// measures write-to-receipt delay.
    FollowLatency {
        #[arg(long, default_value_t = 10000)]
        writes: usize,
    },
    /// K sleeping jobs and L idle followers: server memory per job and per
    /// follower, and the time to start them all.
    Scale {
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        #[arg(long, default_value_t = 1000)]
        followers: usize,
        /// Connections to spread jobs and followers over.
        #[arg(long, default_value_t = 16)]
        connections: usize,
    },
    /// A mix of run/logs/status/stop/rm from several connections for S
    /// seconds; fails on any error and on leaked fds, processes or job
    /// cgroup directories (needs --server-pid for the leak check).
    Soak {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// The server's --cgroup-name: its job cgroups are counted under it.
        #[arg(long, default_value = "jw")]
        cgroup_name: String,
    },
    /// A normal user's start/wait/logs/rm loop, alone and then beside a
    /// second user's hostile clients (slow readers, hang-ups, half-open
    /// handshakes, a start storm): latency and rate of both runs, and jwd's
    /// memory, fds and CPU (with --server-pid).
    Abuse {
        /// Length of each of the two normal-workload runs.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Connections of the normal workload, each running the loop.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// The abusers' identity (a second user).
        #[arg(long, default_value = "certs/bob.crt")]
        abuser_cert: PathBuf,
        #[arg(long, default_value = "certs/bob.key")]
        abuser_key: PathBuf,
        /// Logs streams of a big job that are never read (0: none).
        #[arg(long, default_value_t = 64)]
        slow_readers: usize,
        /// Connections the slow readers are spread over.
        #[arg(long, default_value_t = 8)]
        abuser_connections: usize,
        /// Connections that open a logs stream, read a little and reset
        /// (0: none).
        #[arg(long, default_value_t = 200)]
        hangups: usize,
        /// TCP connections that never finish the TLS handshake (0: none).
        #[arg(long, default_value_t = 200)]
        half_open: usize,
        /// Loops starting `sleep 30` jobs as fast as they can (0: none).
        #[arg(long, default_value_t = 4)]
        storm: usize,
        /// Output of the abusers' big job, read by slow readers and hang-ups.
        #[arg(long, default_value = "64M", value_parser = jw::units::parse_bytes)]
        abuser_output: u64,
    },
    /// Inside a job: write N timestamped lines, one every interval.
    #[command(hide = true)]
    Emit {
        #[arg(long)]
        lines: usize,
        #[arg(long, default_value_t = 1000)]
        interval_us: u64,
    },
}

/// CPU time (user+system, seconds) and RssAnon (bytes) of a process.
fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())?
        * 1024;
    Some((cpu, rss))
}

struct ServerMeter {
    pid: Option<u32>,
    start: Option<(f64, u64)>,
}

impl ServerMeter {
    fn new(pid: Option<u32>) -> Self {
        ServerMeter {
            pid,
            start: pid.and_then(process_usage),
        }
    }

    /// (cpu seconds used since new, rss before, rss now)
    fn delta(&self) -> Option<(f64, u64, u64)> {
        let (cpu0, rss0) = self.start?;
        let (cpu1, rss1) = process_usage(self.pid?)?;
        Some((cpu1 - cpu0, rss0, rss1))
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50_us": h.value_at_quantile(0.5),
        "p90_us": h.value_at_quantile(0.9),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

fn fmt_us(us: u64) -> String {
    if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Scenario::Emit { lines, interval_us } = cli.scenario {
        emit(lines, interval_us);
        return ExitCode::SUCCESS;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jw-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn options(cli: &Cli) -> ConnectOptions {
    ConnectOptions {
        addr: cli.addr.clone(),
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let opts = options(&cli);
    let meter = ServerMeter::new(cli.server_pid);
    let mut report = match &cli.scenario {
        Scenario::Start { jobs, concurrency } => start(&opts, *jobs, *concurrency).await?,
        Scenario::Status {
            requests,
            connections,
        } => status(&opts, *requests, *connections).await?,
        Scenario::Fanout {
            bytes,
            readers,
            connections,
            server_cert,
            server_key,
            client_ca,
        } => {
            fanout(
                &opts,
                *bytes,
                *readers,
                *connections,
                (server_cert, server_key, client_ca),
            )
            .await?
        }
        Scenario::FollowLatency { writes } => follow_latency(&opts, *writes).await?,
        Scenario::Scale {
            jobs,
            followers,
            connections,
        } => scale(&opts, *jobs, *followers, *connections, cli.server_pid).await?,
        Scenario::Soak {
            seconds,
            connections,
            cgroup_name,
        } => soak(&opts, *seconds, *connections, cgroup_name, cli.server_pid).await?,
        Scenario::Abuse {
            seconds,
            connections,
            abuser_cert,
            abuser_key,
            slow_readers,
            abuser_connections,
            hangups,
            half_open,
            storm,
            abuser_output,
        } => {
            let abuser = ConnectOptions {
                cert: abuser_cert.clone(),
                key: abuser_key.clone(),
                ..opts.clone()
            };
            let plan = AbusePlan {
                seconds: *seconds,
                connections: (*connections).max(1),
                slow_readers: *slow_readers,
                abuser_connections: (*abuser_connections).max(1),
                hangups: *hangups,
                half_open: *half_open,
                storm: *storm,
                output: (*abuser_output).max(1),
            };
            abuse(&opts, &abuser, &plan, cli.server_pid).await?
        }
        Scenario::Emit { .. } => unreachable!("handled in main"),
    };
    if let Some((cpu, rss0, rss1)) = meter.delta() {
        let server = json!({
            "cpu_seconds": cpu,
            "rss_anon_before": rss0,
            "rss_anon_after": rss1,
            "cpu_ms_per_job": report.get("jobs").and_then(|j| j.as_u64()).map(|j| cpu * 1000.0 / j as f64),
            "cpu_seconds_per_gib": report.get("bytes_delivered").and_then(|b| b.as_u64()).map(|b| cpu / (b as f64 / (1u64 << 30) as f64)),
        });
        report["server"] = server;
    }
    if cli.json {
        println!("{report}");
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    Ok(())
}

fn true_job() -> StartRequest {
    StartRequest {
        command: "/bin/true".into(),
        args: vec![],
        env: vec![],
        workdir: None,
        limits: Default::default(),
        network: Network::None,
    }
}

/// Local baselines: a plain fork/exec, and the same kinds of namespaces
/// without jw (unshare, which itself costs one exec more).
fn local_spawn(n: usize, namespaced: bool) -> Result<Histogram<u64>, String> {
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

/// Part `i` of `total` split as evenly as possible over `parts`.
fn share(total: usize, parts: usize, i: usize) -> usize {
    total / parts + usize::from(i < total % parts)
}

/// `n` connections to the server.
async fn connect_all(opts: &ConnectOptions, n: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(opts).await.map_err(|e| e.to_string())?);
    }
    Ok(clients)
}

/// The namespaced baseline's throughput at the same concurrency: what this
/// machine can spawn into new namespaces per second without jw.
fn unshare_rate(n: usize, concurrency: usize) -> Result<f64, String> {
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

async fn start(
    opts: &ConnectOptions,
    jobs: usize,
    concurrency: usize,
) -> Result<serde_json::Value, String> {
    let concurrency = concurrency.max(1);
    let clients = connect_all(opts, concurrency).await?;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let n = share(jobs, concurrency, i);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut ids = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                let id = client.start(true_job()).await.map_err(|e| e.to_string())?;
                h.record(t.elapsed().as_micros() as u64).ok();
                ids.push(id);
            }
            Ok::<_, String>((h, ids))
        }));
    }
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut ids: Vec<JobId> = Vec::new();
    for t in tasks {
        let (part, part_ids) = t.await.map_err(|e| e.to_string())??;
        h.add(part).ok();
        ids.extend(part_ids);
    }
    let elapsed = began.elapsed().as_secs_f64();
    // Clean up: wait for each job and remove it.
    let c = &clients[0];
    for id in &ids {
        let _ = c.wait(*id).await;
        let _ = c.remove(*id).await;
    }
    let samples = 200.min(jobs).max(1);
    let plain = local_spawn(samples, false)?;
    let namespaced = local_spawn(samples, true)?;
    let rate_samples = (2 * samples).max(concurrency);
    let baseline_rate = unshare_rate(rate_samples, concurrency)?;
    let rate = jobs as f64 / elapsed;
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let report = json!({
        "scenario": "start",
        "jobs": jobs,
        "concurrency": concurrency,
        "jobs_per_second": jobs as f64 / elapsed,
        "latency": percentiles(&h),
        "baseline_fork_exec": percentiles(&plain),
        "baseline_unshare": percentiles(&namespaced),
        "ratio_p50_vs_unshare": ratio(h.value_at_quantile(0.5), namespaced.value_at_quantile(0.5)),
        "ratio_p99_vs_unshare": ratio(h.value_at_quantile(0.99), namespaced.value_at_quantile(0.99)),
        "ratio_p50_vs_fork_exec": ratio(h.value_at_quantile(0.5), plain.value_at_quantile(0.5)),
        "baseline_unshare_jobs_per_second": baseline_rate,
        "ratio_rate_vs_unshare": rate / baseline_rate,
    });
    eprintln!(
        "start: {jobs} jobs over {concurrency} connections, {rate:.0} jobs/s (unshare at the same concurrency: {baseline_rate:.0}/s); p50 {} p99 {} (unshare baseline p50 {}, fork/exec {})",
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(namespaced.value_at_quantile(0.5)),
        fmt_us(plain.value_at_quantile(0.5)),
    );
    Ok(report)
}

async fn status(
    opts: &ConnectOptions,
    requests: usize,
    connections: usize,
) -> Result<serde_json::Value, String> {
    let connections = connections.max(1);
    let setup = Client::connect(opts).await.map_err(|e| e.to_string())?;
    let id = setup.start(true_job()).await.map_err(|e| e.to_string())?;
    setup.wait(id).await.map_err(|e| e.to_string())?;
    let clients = connect_all(opts, connections).await?;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let n = share(requests, connections, i);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            for _ in 0..n {
                let t = Instant::now();
                client.status(id).await.map_err(|e| e.to_string())?;
                h.record(t.elapsed().as_micros() as u64).ok();
            }
            Ok::<_, String>(h)
        }));
    }
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        h.add(t.await.map_err(|e| e.to_string())??).ok();
    }
    let elapsed = began.elapsed().as_secs_f64();
    setup.remove(id).await.map_err(|e| e.to_string())?;
    eprintln!(
        "status: {requests} requests on {connections} connections: {:.0} req/s, p50 {} p99 {}",
        requests as f64 / elapsed,
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99))
    );
    Ok(json!({
        "scenario": "status",
        "requests": requests,
        "connections": connections,
        "requests_per_second": requests as f64 / elapsed,
        "latency": percentiles(&h),
    }))
}

/// An order-sensitive digest to compare streams: FNV-1a over 64-bit words
/// (byte-wise FNV would make the client, not jwd, the bottleneck). Chunk
/// boundaries do not matter: the state carries partial words.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Digest {
    hash: u64,
    word: u64,
    fill: u32,
}

impl Digest {
    fn new() -> Self {
        Digest {
            hash: FNV_START,
            word: 0,
            fill: 0,
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while self.fill != 0 && !bytes.is_empty() {
            self.push_byte(bytes[0]);
            bytes = &bytes[1..];
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        for &b in words.remainder() {
            self.push_byte(b);
        }
    }

    fn push_byte(&mut self, b: u8) {
        self.word |= u64::from(b) << (8 * self.fill);
        self.fill += 1;
        if self.fill == 8 {
            let w = self.word;
            self.word = 0;
            self.fill = 0;
            self.mix(w);
        }
    }

    fn mix(&mut self, w: u64) {
        self.hash = (self.hash ^ w).wrapping_mul(0x100000001b3);
    }
}

const FNV_START: u64 = 0xcbf29ce484222325;

/// The bytes the fanout job writes: `head -c B /dev/zero | tr` would be
/// cheap but uniform; a repeating counter pattern catches reordering.
fn pattern(len: u64) -> impl Iterator<Item = Vec<u8>> {
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

async fn fanout(
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

/// Plain TLS 1.3 over loopback with jw's rustls configurations: a sink
/// server in this process and `readers` connections each sending `bytes`.
async fn tls_baseline(
    bytes: u64,
    readers: usize,
    (cert, key, client_ca): (&PathBuf, &PathBuf, &PathBuf),
) -> Result<f64, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server_config = jw::tls::server_config(cert, key, client_ca).map_err(|e| e.to_string())?;
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

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The job side of follow-latency: one line per interval, each carrying the
/// wall-clock time it was written.
fn emit(lines: usize, interval_us: u64) {
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    for i in 0..lines {
        let due = start + Duration::from_micros(interval_us * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let _ = writeln!(out, "{}", now_ns());
        let _ = out.flush();
    }
}

async fn follow_latency(opts: &ConnectOptions, writes: usize) -> Result<serde_json::Value, String> {
    let client = Client::connect(opts).await.map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find jw-load itself: {e}"))?;
    let mut req = true_job();
    req.command = exe.display().to_string();
    req.args = vec![
        "emit".into(),
        "--lines".into(),
        writes.to_string(),
        "--interval-us".into(),
        "1000".into(),
    ];
    let job = client.start(req).await.map_err(|e| {
        format!(
            "{e} (the job runs jw-load itself: is {} readable by the job user?)",
            exe.display()
        )
    })?;
    let mut stream = client
        .logs(LogsRequest {
            job,
            stdout: Some(0),
            stderr: Some(0),
            follow: true,
            credit: 64 << 20,
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut partial = Vec::new();
    loop {
        match stream.next().await.map_err(|e| e.to_string())? {
            Some(Event::Output(c)) => {
                let received = now_ns();
                partial.extend_from_slice(&c.data);
                while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=pos).collect();
                    if let Some(sent) = std::str::from_utf8(&line)
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                    {
                        h.record(received.saturating_sub(sent) / 1000).ok();
                    }
                }
            }
            Some(Event::End(_)) => break,
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    let _ = client.remove(job).await;
    eprintln!(
        "follow-latency: {} writes at 1000/s: p50 {} p99 {} max {}",
        h.len(),
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.max())
    );
    Ok(json!({
        "scenario": "follow-latency",
        "writes": h.len(),
        "delay": percentiles(&h),
    }))
}

fn sleeper() -> StartRequest {
    let mut req = true_job();
    req.command = "sleep".into();
    req.args = vec!["3600".into()];
    req
}

async fn scale(
    opts: &ConnectOptions,
    jobs: usize,
    followers: usize,
    connections: usize,
    server_pid: Option<u32>,
) -> Result<serde_json::Value, String> {
    let connections = connections.max(1).max(followers.div_ceil(1000));
    let clients = connect_all(opts, connections).await?;
    let rss = |pid: Option<u32>| pid.and_then(process_usage).map(|(_, r)| r);
    let rss0 = rss(server_pid);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let n = share(jobs, connections, i);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..n {
                ids.push(client.start(sleeper()).await.map_err(|e| e.to_string())?);
            }
            Ok::<_, String>(ids)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.map_err(|e| e.to_string())??);
    }
    let start_all = began.elapsed().as_secs_f64();
    let rss_jobs = rss(server_pid);
    let mut streams = Vec::new();
    for f in 0..followers {
        let client = &clients[f % connections];
        let job = ids[f % ids.len().max(1)];
        streams.push(
            client
                .logs(LogsRequest {
                    job,
                    stdout: Some(0),
                    stderr: Some(0),
                    follow: true,
                    credit: 65536,
                })
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    // Let the server register every stream before measuring.
    clients[0].list(false).await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_followers = rss(server_pid);
    drop(streams);
    for batch in ids.chunks(64) {
        let handles: Vec<_> = batch
            .iter()
            .map(|id| {
                let c = clients[0].clone();
                let id = *id;
                tokio::spawn(async move {
                    let _ = c.stop(id, 0).await;
                    let _ = c.remove(id).await;
                })
            })
            .collect();
        for h in handles {
            let _ = h.await;
        }
    }
    let per = |a: Option<u64>, b: Option<u64>, n: usize| match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some(b.saturating_sub(a) as f64 / n as f64),
        _ => None,
    };
    let per_job = per(rss0, rss_jobs, jobs);
    let per_follower = per(rss_jobs, rss_followers, followers);
    eprintln!(
        "scale: {jobs} jobs started in {start_all:.1} s; {followers} followers; RssAnon per job {} B, per follower {} B",
        per_job.map(|v| format!("{v:.0}")).unwrap_or("?".into()),
        per_follower.map(|v| format!("{v:.0}")).unwrap_or("?".into()),
    );
    Ok(json!({
        "scenario": "scale",
        "jobs": jobs,
        "followers": followers,
        "connections": connections,
        "start_all_seconds": start_all,
        "rss_anon_per_job_bytes": per_job,
        "rss_anon_per_follower_bytes": per_follower,
    }))
}

fn count_dir(path: &str) -> Option<usize> {
    std::fs::read_dir(path).ok().map(|d| d.count())
}

/// Processes whose parent is `pid` (jwd's job inits).
fn children(pid: u32) -> Option<usize> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut n = text.split_whitespace().count();
    // Threads other than the main one have children lists too.
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(Result::ok)
    {
        if task.file_name().to_str() != Some(&pid.to_string()) {
            if let Ok(t) = std::fs::read_to_string(task.path().join("children")) {
                n += t.split_whitespace().count();
            }
        }
    }
    Some(n)
}

/// The job cgroup directories of the jwd `pid` started with `--cgroup-name
/// name`: the directories in `<its cgroup>/<name>` (and in its parent's, for
/// a jwd that moved itself into `<name>.server`) in every cgroup hierarchy
/// it is in. `None` if its cgroups cannot be read.
fn job_cgroups(pid: u32, name: &str) -> Option<usize> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // (mount point, "" for cgroup2 or the sorted v1 controllers)
    let mounts: Vec<(String, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?.to_string();
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or("");
            let key = |opts: &str| {
                let mut c: Vec<&str> = opts
                    .split(',')
                    .filter(|o| *o != "rw" && *o != "ro")
                    .collect();
                c.sort_unstable();
                c.join(",")
            };
            match fstype {
                "cgroup2" => Some((point, String::new())),
                "cgroup" => Some((point, key(options))),
                _ => None,
            }
        })
        .collect();
    let mut total = 0;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let mut wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        wanted.sort_unstable();
        let wanted = wanted.join(",");
        let Some((point, _)) = mounts.iter().find(|(_, k)| {
            if wanted.is_empty() {
                k.is_empty()
            } else {
                // v1 mount options carry more than the controllers.
                wanted.split(',').all(|c| k.split(',').any(|o| o == c))
            }
        }) else {
            continue;
        };
        let dir = std::path::Path::new(point).join(path.trim_start_matches('/'));
        for base in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            let subtree = base.join(name);
            if let Ok(entries) = std::fs::read_dir(&subtree) {
                total += entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .count();
            }
        }
    }
    Some(total)
}

async fn soak(
    opts: &ConnectOptions,
    seconds: u64,
    connections: usize,
    cgroup_name: &str,
    server_pid: Option<u32>,
) -> Result<serde_json::Value, String> {
    let fds = |pid: Option<u32>| pid.and_then(|p| count_dir(&format!("/proc/{p}/fd")));
    let kids = |pid: Option<u32>| pid.and_then(children);
    let cgroups = |pid: Option<u32>| pid.and_then(|p| job_cgroups(p, cgroup_name));
    let (fd0, kids0, cg0) = (fds(server_pid), kids(server_pid), cgroups(server_pid));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..connections.max(1) {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut ops = 0u64;
            let mut errors = Vec::new();
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                // A fresh connection now and then, as real clients come and go.
                let client = match Client::connect(&opts).await {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(format!("connect: {e}"));
                        continue;
                    }
                };
                for _ in 0..10 {
                    let result: Result<u64, String> = async {
                        let mut n = 0;
                        let mut req = true_job();
                        req.command = "sh".into();
                        req.args = vec![
                            "-c".into(),
                            format!("echo worker {worker} round {round}; echo err >&2"),
                        ];
                        let id = client.start(req).await.map_err(|e| format!("start: {e}"))?;
                        let info = client.wait(id).await.map_err(|e| format!("wait: {e}"))?;
                        if info.exit_code != Some(0) {
                            return Err(format!("job exited with {:?}", info.exit_code));
                        }
                        let mut s = client
                            .logs(LogsRequest {
                                job: id,
                                stdout: Some(0),
                                stderr: Some(0),
                                follow: false,
                                credit: 65536,
                            })
                            .await
                            .map_err(|e| format!("logs: {e}"))?;
                        let mut bytes = 0;
                        while let Some(ev) = s.next().await.map_err(|e| format!("logs: {e}"))? {
                            match ev {
                                Event::Output(c) => bytes += c.data.len(),
                                Event::End(_) => break,
                                other => return Err(format!("logs: unexpected {other:?}")),
                            }
                        }
                        if bytes == 0 {
                            return Err("logs: no output".into());
                        }
                        client
                            .status(id)
                            .await
                            .map_err(|e| format!("status: {e}"))?;
                        client.remove(id).await.map_err(|e| format!("rm: {e}"))?;
                        let long = client
                            .start(sleeper())
                            .await
                            .map_err(|e| format!("start: {e}"))?;
                        client
                            .stop(long, 100)
                            .await
                            .map_err(|e| format!("stop: {e}"))?;
                        client.remove(long).await.map_err(|e| format!("rm: {e}"))?;
                        n += 9;
                        Ok(n)
                    }
                    .await;
                    match result {
                        Ok(n) => ops += n,
                        Err(e) => errors.push(e),
                    }
                }
            }
            (ops, errors)
        }));
    }
    let mut ops = 0;
    let mut errors = Vec::new();
    for t in tasks {
        let (n, e) = t.await.map_err(|e| e.to_string())?;
        ops += n;
        errors.extend(e);
    }
    // Give the server a moment to close the last connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fd1, kids1, cg1) = (fds(server_pid), kids(server_pid), cgroups(server_pid));
    let fd_leak = matches!((fd0, fd1), (Some(a), Some(b)) if b > a);
    let proc_leak = matches!((kids0, kids1), (Some(a), Some(b)) if b > a);
    let cgroup_leak = matches!((cg0, cg1), (Some(a), Some(b)) if b > a);
    let show = |v: Option<usize>| v.map_or("?".to_string(), |n| n.to_string());
    eprintln!(
        "soak: {seconds} s, {ops} operations, {} errors; server fds {} -> {}, child processes {} -> {}, job cgroup directories {} -> {}",
        errors.len(),
        show(fd0),
        show(fd1),
        show(kids0),
        show(kids1),
        show(cg0),
        show(cg1),
    );
    for e in errors.iter().take(10) {
        eprintln!("  error: {e}");
    }
    let report = json!({
        "scenario": "soak",
        "seconds": seconds,
        "operations": ops,
        "errors": errors.len(),
        "server_fds_before": fd0,
        "server_fds_after": fd1,
        "server_children_before": kids0,
        "server_children_after": kids1,
        "job_cgroups_before": cg0,
        "job_cgroups_after": cg1,
    });
    if !errors.is_empty() || fd_leak || proc_leak || cgroup_leak {
        return Err(format!("soak failed: {report}"));
    }
    Ok(report)
}
