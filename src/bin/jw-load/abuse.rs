//! `jw-load abuse`: hostile clients of one user (slow readers, hang-ups,
//! half-open handshakes, a start storm) beside a normal user's workload,
//! which runs once alone and once with them.

use super::*;

/// What `jw-load abuse` runs.
pub(super) struct AbusePlan {
    pub(super) seconds: u64,
    pub(super) connections: usize,
    pub(super) slow_readers: usize,
    pub(super) abuser_connections: usize,
    pub(super) hangups: usize,
    pub(super) half_open: usize,
    pub(super) storm: usize,
    pub(super) output: u64,
}

/// Longest wait for one answer to the normal workload (a connection, a
/// request, a logs event): the scenario ends even if jwd stalls.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one answer to an abuser.
const ABUSER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping the abusers may take before their tasks are aborted.
const ABUSER_JOIN: Duration = Duration::from_secs(30);
/// How long the clean-up of the abusers' jobs may take in all.
const CLEANUP_BOUND: Duration = Duration::from_secs(180);
/// Credit of every abusive logs stream.
const ABUSE_CREDIT: u32 = 16 << 20;
/// What a hang-up reads before it resets its connection.
const HANGUP_READ: usize = 64 << 10;
/// The receive buffer of a slow reader's socket, set before connecting.
const SLOW_RCVBUF: u32 = 4096;
/// Hang-ups in flight at once.
const HANGUP_WORKERS: usize = 4;
/// The first bytes of a TLS ClientHello: the record header (handshake,
/// version 3.1, 512 bytes), the handshake header (ClientHello, 508 bytes)
/// and the legacy version; the rest never comes.
const PARTIAL_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];

/// `f`, or an error if it takes longer than `limit`.
async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer in {} s", limit.as_secs())),
    }
}

/// A short name for a client error, to count errors by kind.
fn error_key(e: &ClientError) -> String {
    match e {
        ClientError::Server(info) => info.code.to_string(),
        ClientError::Fatal(info) => format!("fatal {}", info.code),
        ClientError::Connect { .. } => "connect".into(),
        ClientError::Tls(_) => "tls".into(),
        ClientError::Handshake { .. } => "handshake".into(),
        ClientError::Rejected { .. } => "rejected".into(),
        ClientError::Closed => "closed".into(),
        ClientError::Protocol(_) => "protocol".into(),
        ClientError::Unexpected(_) => "unexpected".into(),
    }
}

/// What the abusers did and what they met.
#[derive(Default)]
struct AbuseCounters {
    slow_connections: AtomicU64,
    slow_streams: AtomicU64,
    hangups: AtomicU64,
    hangup_bytes: AtomicU64,
    half_open_connections: AtomicU64,
    half_open_closed: AtomicU64,
    /// Milliseconds from connect to jwd closing a half-open connection.
    half_open_lifetimes: Mutex<Vec<u64>>,
    storm_admitted: AtomicU64,
    storm_refused: AtomicU64,
    connections_refused: AtomicU64,
    /// "abuser: error" -> count. The error is the text before the first
    /// ':' (a code, or what failed), so the keys stay few.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl AbuseCounters {
    fn error(&self, abuser: &str, error: &str) {
        let what = error.split(':').next().unwrap_or(error).trim();
        let mut errors = self.errors.lock().expect("errors lock");
        *errors.entry(format!("{abuser}: {what}")).or_default() += 1;
    }

    /// A connection that could not be opened (TCP, TLS or Hello).
    fn refused(&self, abuser: &str, error: &str) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
        self.error(abuser, error);
    }
}

type RawTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The name the server's certificate is checked against, as `Client` does.
fn raw_server_name(addr: &str) -> Result<ServerName<'static>, String> {
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
async fn raw_connect(
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

async fn raw_send(tls: &mut RawTls, msgs: &[ClientMessage]) -> Result<(), String> {
    let mut frames = Vec::new();
    for m in msgs {
        jw::protocol::encode(m, &mut frames).map_err(|e| format!("encode: {e}"))?;
    }
    tls.write_all(&frames)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tls.flush().await.map_err(|e| format!("write: {e}"))
}

fn abusive_logs(stream: u32, job: JobId) -> ClientMessage {
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

/// `n` logs streams of `job` with a large credit over `connections` raw
/// connections with a small receive buffer, never read after the Welcome.
/// The connections are opened at once and returned, to be held open and
/// then dropped.
async fn open_slow_readers(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
    job: JobId,
    n: usize,
    connections: usize,
    counters: &Arc<AbuseCounters>,
) -> Vec<RawTls> {
    let connections = connections.min(n);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let streams = share(n, connections, c);
            let (addr, config, counters) = (addr.to_string(), config.clone(), counters.clone());
            tokio::spawn(async move {
                let connected = within(
                    ABUSER_TIMEOUT,
                    raw_connect(&addr, config, Some(SLOW_RCVBUF)),
                )
                .await;
                let mut tls = match connected {
                    Ok(t) => t,
                    Err(e) => {
                        counters.refused("slow reader", &e);
                        return None;
                    }
                };
                counters.slow_connections.fetch_add(1, Ordering::Relaxed);
                let requests: Vec<_> = (1..=streams as u32).map(|s| abusive_logs(s, job)).collect();
                match within(ABUSER_TIMEOUT, raw_send(&mut tls, &requests)).await {
                    Ok(()) => {
                        counters
                            .slow_streams
                            .fetch_add(streams as u64, Ordering::Relaxed);
                    }
                    Err(e) => counters.error("slow reader", &e),
                }
                Some(tls)
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        // Every step above is bounded: the task ends.
        if let Ok(Some(tls)) = t.await {
            held.push(tls);
        }
    }
    held
}

/// Sleeps for `d`; false if the abusers were told to stop meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// `count` hang-ups, one every `period`: connect, open a logs stream of
/// `job`, read a little, reset the connection (SO_LINGER 0).
async fn hang_ups(
    addr: String,
    config: Arc<rustls::ClientConfig>,
    job: JobId,
    count: usize,
    period: Duration,
    mut stop: watch::Receiver<bool>,
    counters: Arc<AbuseCounters>,
) {
    for _ in 0..count {
        if *stop.borrow() {
            return;
        }
        let began = Instant::now();
        match within(ABUSER_TIMEOUT, raw_connect(&addr, config.clone(), None)).await {
            Ok(mut tls) => {
                let read = within(ABUSER_TIMEOUT, async {
                    raw_send(&mut tls, &[abusive_logs(1, job)]).await?;
                    let mut buf = vec![0u8; 16 << 10];
                    let mut got = 0;
                    while got < HANGUP_READ {
                        let n = tls.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
                        if n == 0 {
                            return Err("closed: by jwd mid-stream".to_string());
                        }
                        got += n;
                    }
                    Ok::<_, String>(got)
                })
                .await;
                // Reset, not close: the data jwd sent stays unread.
                let _ = tls.get_ref().0.set_zero_linger();
                drop(tls);
                match read {
                    Ok(n) => {
                        counters.hangups.fetch_add(1, Ordering::Relaxed);
                        counters.hangup_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => counters.error("hang-up", &e),
                }
            }
            Err(e) => counters.refused("hang-up", &e),
        }
        if !pause(&mut stop, period.saturating_sub(began.elapsed())).await {
            return;
        }
    }
}

/// One half-open connection, held until the abusers stop: TCP only, then
/// nothing (even `index`) or the first bytes of a ClientHello (odd). When
/// jwd closes it, another takes its place.
async fn half_open(
    addr: String,
    index: usize,
    mut stop: watch::Receiver<bool>,
    counters: Arc<AbuseCounters>,
) {
    while !*stop.borrow() {
        let mut tcp = match within(ABUSER_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
            Ok(t) => t,
            Err(e) => {
                counters.refused("half-open", &format!("connect: {e}"));
                if !pause(&mut stop, Duration::from_millis(100)).await {
                    return;
                }
                continue;
            }
        };
        counters
            .half_open_connections
            .fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        if index % 2 == 1 {
            // A few bytes into an empty send buffer: never blocks for long.
            let _ = within(ABUSER_TIMEOUT, tcp.write_all(PARTIAL_HELLO)).await;
        }
        let closed = async {
            let mut buf = [0u8; 512];
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = closed => {}
        }
        let lived = opened.elapsed();
        counters.half_open_closed.fetch_add(1, Ordering::Relaxed);
        counters
            .half_open_lifetimes
            .lock()
            .expect("lifetimes lock")
            .push(lived.as_millis() as u64);
        // Closed at once (a connection cap, say): do not spin.
        if lived < Duration::from_secs(1) && !pause(&mut stop, Duration::from_millis(100)).await {
            return;
        }
    }
}

/// Starts `sleep 30` jobs as fast as jwd answers until told to stop;
/// returns the ids of the jobs admitted.
async fn start_storm(
    opts: ConnectOptions,
    mut stop: watch::Receiver<bool>,
    counters: Arc<AbuseCounters>,
) -> Vec<JobId> {
    let mut ids = Vec::new();
    let mut client: Option<Client> = None;
    let mut req = true_job();
    req.command = "sleep".into();
    req.args = vec!["30".into()];
    while !*stop.borrow() {
        let c = match &client {
            Some(c) => c.clone(),
            None => match tokio::time::timeout(ABUSER_TIMEOUT, Client::connect(&opts)).await {
                Ok(Ok(c)) => {
                    client = Some(c.clone());
                    c
                }
                failed => {
                    let e = failed.map_or("timeout".into(), |r| {
                        r.err().map(|e| error_key(&e)).unwrap_or_default()
                    });
                    counters.refused("storm", &e);
                    if !pause(&mut stop, Duration::from_millis(100)).await {
                        break;
                    }
                    continue;
                }
            },
        };
        match tokio::time::timeout(ABUSER_TIMEOUT, c.start(req.clone())).await {
            Ok(Ok(id)) => {
                counters.storm_admitted.fetch_add(1, Ordering::Relaxed);
                ids.push(id);
            }
            Ok(Err(e)) => {
                if e.code() == Some(ErrorCode::RESOURCE_EXHAUSTED) {
                    counters.storm_refused.fetch_add(1, Ordering::Relaxed);
                }
                counters.error("storm", &error_key(&e));
                if !matches!(e, ClientError::Server(_)) {
                    client = None;
                }
            }
            Err(_) => {
                // The job may have started: it ends by itself in 30 s.
                counters.error("storm", "timeout");
                client = None;
            }
        }
    }
    ids
}

/// Stops (grace 0) and removes `ids`, 32 at a time, every call bounded;
/// gives up at `deadline`, or after a batch of which none could be removed
/// (jwd is not answering). Returns how many were not removed.
async fn stop_and_remove(client: &Client, ids: &[JobId], deadline: Instant) -> usize {
    let mut left = 0;
    for (i, batch) in ids.chunks(32).enumerate() {
        if Instant::now() >= deadline {
            return left + ids.len() - i * 32;
        }
        let handles: Vec<_> = batch
            .iter()
            .map(|&id| {
                let c = client.clone();
                tokio::spawn(async move {
                    let _ = within(ABUSER_TIMEOUT, c.stop(id, 0)).await;
                    within(ABUSER_TIMEOUT, c.remove(id)).await.is_ok()
                })
            })
            .collect();
        let mut failed = 0;
        for h in handles {
            if !h.await.unwrap_or(false) {
                failed += 1;
            }
        }
        left += failed;
        if failed == batch.len() {
            return left + ids.len().saturating_sub((i + 1) * 32);
        }
    }
    left
}

/// One run of the normal workload.
struct NormalRun {
    seconds: f64,
    iteration: Histogram<u64>,
    start: Histogram<u64>,
    errors: Vec<String>,
    cpu_seconds: Option<f64>,
    /// Jobs an iteration started but could not remove.
    leftovers: Vec<JobId>,
}

impl NormalRun {
    fn rate(&self) -> f64 {
        self.iteration.len() as f64 / self.seconds.max(1e-9)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "iterations": self.iteration.len(),
            "seconds": self.seconds,
            "iterations_per_second": self.rate(),
            "errors": self.errors.len(),
            "first_errors": self.errors.iter().take(5).collect::<Vec<_>>(),
            "iteration": percentiles(&self.iteration),
            "start": percentiles(&self.start),
            "server_cpu_seconds": self.cpu_seconds,
        })
    }

    fn summary(&self) -> String {
        let p = |h: &Histogram<u64>| {
            format!(
                "p50 {} p99 {} max {}",
                fmt_us(h.value_at_quantile(0.5)),
                fmt_us(h.value_at_quantile(0.99)),
                fmt_us(h.max())
            )
        };
        format!(
            "{} iterations, {:.0}/s; iteration {}; start {}; jwd CPU {}; {} errors",
            self.iteration.len(),
            self.rate(),
            p(&self.iteration),
            p(&self.start),
            self.cpu_seconds.map_or("?".into(), |c| format!("{c:.2} s")),
            self.errors.len()
        )
    }
}

/// One iteration: start `sh -c 'echo hi'`, wait, read its logs to the end,
/// remove it. Returns the start latency (µs); `job` holds the job until
/// it is removed.
async fn normal_iteration(client: &Client, job: &mut Option<JobId>) -> Result<u64, String> {
    let mut req = true_job();
    req.command = "sh".into();
    req.args = vec!["-c".into(), "echo hi".into()];
    let t = Instant::now();
    let id = within(ANSWER_TIMEOUT, client.start(req))
        .await
        .map_err(|e| format!("start: {e}"))?;
    let start_us = t.elapsed().as_micros() as u64;
    *job = Some(id);
    let info = within(ANSWER_TIMEOUT, client.wait(id))
        .await
        .map_err(|e| format!("wait: {e}"))?;
    if info.exit_code != Some(0) {
        return Err(format!("job exited with {:?}", info.exit_code));
    }
    let logs = client.logs(LogsRequest {
        job: id,
        stdout: Some(0),
        stderr: Some(0),
        follow: false,
        credit: 65536,
    });
    let mut s = within(ANSWER_TIMEOUT, logs)
        .await
        .map_err(|e| format!("logs: {e}"))?;
    let mut bytes = 0;
    loop {
        match within(ANSWER_TIMEOUT, s.next())
            .await
            .map_err(|e| format!("logs: {e}"))?
        {
            Some(Event::Output(c)) => bytes += c.data.len(),
            Some(Event::End(_)) | None => break,
            Some(other) => return Err(format!("logs: unexpected {other:?}")),
        }
    }
    if bytes == 0 {
        return Err("logs: no output".into());
    }
    within(ANSWER_TIMEOUT, client.remove(id))
        .await
        .map_err(|e| format!("rm: {e}"))?;
    *job = None;
    Ok(start_us)
}

/// `connections` loops of [`normal_iteration`] for `seconds`, each on its
/// own connection (a new one after an error).
async fn normal_workload(
    opts: &ConnectOptions,
    seconds: u64,
    connections: usize,
    server_pid: Option<u32>,
) -> NormalRun {
    let cpu0 = server_pid.and_then(process_usage).map(|(c, _)| c);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut iteration = Histogram::<u64>::new(3).expect("histogram");
            let mut start = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = Vec::new();
            let mut leftovers = Vec::new();
            let mut client: Option<Client> = None;
            while Instant::now() < deadline {
                let c = match &client {
                    Some(c) => c.clone(),
                    None => match within(ANSWER_TIMEOUT, Client::connect(&opts)).await {
                        Ok(c) => {
                            client = Some(c.clone());
                            c
                        }
                        Err(e) => {
                            errors.push(format!("connect: {e}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let t = Instant::now();
                let mut job = None;
                match normal_iteration(&c, &mut job).await {
                    Ok(start_us) => {
                        iteration.record(t.elapsed().as_micros() as u64).ok();
                        start.record(start_us).ok();
                    }
                    Err(e) => {
                        errors.push(e);
                        leftovers.extend(job);
                        client = None;
                    }
                }
            }
            (iteration, start, errors, leftovers)
        }));
    }
    let mut run = NormalRun {
        seconds: 0.0,
        iteration: Histogram::<u64>::new(3).expect("histogram"),
        start: Histogram::<u64>::new(3).expect("histogram"),
        errors: Vec::new(),
        cpu_seconds: None,
        leftovers: Vec::new(),
    };
    for t in tasks {
        match t.await {
            Ok((iteration, start, errors, leftovers)) => {
                run.iteration.add(iteration).ok();
                run.start.add(start).ok();
                run.errors.extend(errors);
                run.leftovers.extend(leftovers);
            }
            Err(e) => run.errors.push(format!("a worker failed: {e}")),
        }
    }
    run.seconds = began.elapsed().as_secs_f64();
    let cpu1 = server_pid.and_then(process_usage).map(|(c, _)| c);
    run.cpu_seconds = cpu0.zip(cpu1).map(|(a, b)| b - a);
    run
}

/// jwd's RssAnon every 100 ms until `stop`: (peak, samples).
fn sample_rss(pid: u32, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let (mut peak, mut samples) = (0, 0);
        loop {
            if let Some((_, rss)) = process_usage(pid) {
                peak = rss.max(peak);
                samples += 1;
            }
            if !pause(&mut stop, Duration::from_millis(100)).await {
                return (peak, samples);
            }
        }
    })
}

pub(super) async fn abuse(
    opts: &ConnectOptions,
    abuser: &ConnectOptions,
    plan: &AbusePlan,
    server_pid: Option<u32>,
) -> Result<serde_json::Value, String> {
    let fds = || server_pid.and_then(|p| count_dir(&format!("/proc/{p}/fd")));
    let rss = || server_pid.and_then(process_usage).map(|(_, r)| r);
    let abuser_config = jw::tls::client_config(&abuser.ca, &abuser.cert, &abuser.key)
        .map_err(|e| format!("the abuser's certificate: {e}"))?;
    let fds_start = fds();

    eprintln!(
        "abuse: normal workload alone, {} connections for {} s",
        plan.connections, plan.seconds
    );
    let alone = normal_workload(opts, plan.seconds, plan.connections, server_pid).await;
    // jwd closes the run's connections in its own time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_before = fds();
    let rss_before = rss();

    let (sampler_stop, sampler_rx) = watch::channel(false);
    let sampler = server_pid.map(|pid| sample_rss(pid, sampler_rx));
    let counters = Arc::new(AbuseCounters::default());
    let control = within(ANSWER_TIMEOUT, Client::connect(abuser))
        .await
        .map_err(|e| format!("the abuser cannot connect: {e}"))?;
    let big = if plan.slow_readers > 0 || plan.hangups > 0 {
        let mut req = true_job();
        req.command = "sh".into();
        req.args = vec!["-c".into(), format!("head -c {} /dev/zero", plan.output)];
        req.limits.output_bytes = Some(plan.output);
        let id = within(ANSWER_TIMEOUT, control.start(req))
            .await
            .map_err(|e| format!("the abuser's big job: start: {e}"))?;
        let waited = within(Duration::from_secs(120), control.wait(id)).await;
        let code = waited.as_ref().ok().and_then(|i| i.exit_code);
        if code != Some(0) {
            let _ = within(ABUSER_TIMEOUT, control.stop(id, 0)).await;
            let _ = within(ABUSER_TIMEOUT, control.remove(id)).await;
            return Err(format!(
                "the abuser's big job did not end well: {}",
                waited.map_or_else(|e| e, |i| format!("exit code {:?}", i.exit_code))
            ));
        }
        Some(id)
    } else {
        None
    };

    eprintln!(
        "abuse: abusers starting ({} slow readers, {} hang-ups, {} half-open, {} storm loops)",
        plan.slow_readers, plan.hangups, plan.half_open, plan.storm
    );
    let abuse_began = Instant::now();
    let (stop, stop_rx) = watch::channel(false);
    let held = match big {
        Some(job) if plan.slow_readers > 0 => {
            open_slow_readers(
                &abuser.addr,
                &abuser_config,
                job,
                plan.slow_readers,
                plan.abuser_connections,
                &counters,
            )
            .await
        }
        _ => Vec::new(),
    };
    let mut tasks = Vec::new();
    for i in 0..plan.half_open {
        tasks.push(tokio::spawn(half_open(
            abuser.addr.clone(),
            i,
            stop_rx.clone(),
            counters.clone(),
        )));
    }
    if let Some(job) = big {
        let workers = plan.hangups.min(HANGUP_WORKERS);
        for w in 0..workers {
            let count = share(plan.hangups, workers, w);
            // Spread over the abused run.
            let period = Duration::from_secs(plan.seconds) / count.max(1) as u32;
            tasks.push(tokio::spawn(hang_ups(
                abuser.addr.clone(),
                abuser_config.clone(),
                job,
                count,
                period,
                stop_rx.clone(),
                counters.clone(),
            )));
        }
    }
    let storms: Vec<_> = (0..plan.storm)
        .map(|_| {
            tokio::spawn(start_storm(
                abuser.clone(),
                stop_rx.clone(),
                counters.clone(),
            ))
        })
        .collect();
    // Let the abusers get going.
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!(
        "abuse: normal workload beside the abusers for {} s",
        plan.seconds
    );
    let abused = normal_workload(opts, plan.seconds, plan.connections, server_pid).await;
    let rss_end_of_run = rss();

    // Stop the abusers; the slow readers' connections are reset (their
    // receive buffers hold unread data).
    let _ = stop.send(true);
    drop(held);
    let join_deadline = tokio::time::Instant::now() + ABUSER_JOIN;
    let mut aborted = 0;
    for mut t in tasks {
        if tokio::time::timeout_at(join_deadline, &mut t)
            .await
            .is_err()
        {
            t.abort();
            aborted += 1;
        }
    }
    let mut storm_ids = Vec::new();
    for mut s in storms {
        match tokio::time::timeout_at(join_deadline, &mut s).await {
            Ok(Ok(ids)) => storm_ids.extend(ids),
            _ => {
                s.abort();
                aborted += 1;
            }
        }
    }
    let cleanup_began = Instant::now();
    let cleaner = match within(ABUSER_TIMEOUT, Client::connect(abuser)).await {
        Ok(c) => c,
        Err(_) => control.clone(),
    };
    let deadline = cleanup_began + CLEANUP_BOUND;
    let mut left_behind = stop_and_remove(&cleaner, &storm_ids, deadline).await;
    if let Some(id) = big {
        left_behind += stop_and_remove(&cleaner, &[id], deadline).await;
    }
    drop(cleaner);
    drop(control);
    let mut normal_leftovers = alone.leftovers.clone();
    normal_leftovers.extend(&abused.leftovers);
    if !normal_leftovers.is_empty() {
        match within(ANSWER_TIMEOUT, Client::connect(opts)).await {
            Ok(c) => left_behind += stop_and_remove(&c, &normal_leftovers, deadline).await,
            Err(_) => left_behind += normal_leftovers.len(),
        }
    }
    let cleanup_seconds = cleanup_began.elapsed().as_secs_f64();
    let abuse_seconds = abuse_began.elapsed().as_secs_f64();
    let _ = sampler_stop.send(true);
    let (rss_peak, rss_samples) = match sampler {
        Some(s) => s.await.map_or((None, 0), |(p, n)| (Some(p), n)),
        None => (None, 0),
    };
    let rss_after = rss();

    // jwd's fds back where they were before the abusers, within 10 s.
    let poll_began = Instant::now();
    let mut fds_after = fds();
    while let (Some(before), Some(after)) = (fds_before, fds_after) {
        if after <= before || poll_began.elapsed() >= Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = fds();
    }
    let fds_returned = match (fds_before, fds_after) {
        (Some(b), Some(a)) => Some(a <= b),
        _ => None,
    };
    let fds_return_seconds = fds_returned
        .filter(|r| *r)
        .map(|_| poll_began.elapsed().as_secs_f64());

    let c = &counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut lifetimes = c
        .half_open_lifetimes
        .lock()
        .expect("lifetimes lock")
        .clone();
    lifetimes.sort_unstable();
    let lifetime_at = |q: f64| {
        (!lifetimes.is_empty()).then(|| lifetimes[((lifetimes.len() - 1) as f64 * q) as usize])
    };
    let errors = c.errors.lock().expect("errors lock").clone();
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let q99 = |h: &Histogram<u64>| h.value_at_quantile(0.99);
    let ratio_iteration = ratio(q99(&abused.iteration), q99(&alone.iteration));
    let ratio_start = ratio(q99(&abused.start), q99(&alone.start));
    let ratio_rate = abused.rate() / alone.rate().max(1e-9);
    let mb = |b: Option<u64>| b.map_or("?".into(), |b| format!("{:.2} MB", b as f64 / 1e6));
    let show = |v: Option<usize>| v.map_or("?".to_string(), |n| n.to_string());

    eprintln!(
        "abuse: normal workload ({} connections, {} s per run)",
        plan.connections, plan.seconds
    );
    eprintln!("  alone:  {}", alone.summary());
    eprintln!("  abused: {}", abused.summary());
    eprintln!(
        "  abused/alone: p99 iteration {ratio_iteration:.2}x, p99 start {ratio_start:.2}x, rate {ratio_rate:.2}x"
    );
    eprintln!(
        "  abusers: {} slow-reader streams on {} connections; {} hang-ups ({} read); {} half-open connections, {} closed by jwd (p50 after {} ms); storm {} admitted, {} refused; {} connections refused; {} tasks aborted; {} jobs left behind",
        load(&c.slow_streams),
        load(&c.slow_connections),
        load(&c.hangups),
        jw::units::format_bytes(load(&c.hangup_bytes)),
        load(&c.half_open_connections),
        load(&c.half_open_closed),
        lifetime_at(0.5).map_or("?".into(), |v| v.to_string()),
        load(&c.storm_admitted),
        load(&c.storm_refused),
        load(&c.connections_refused),
        aborted,
        left_behind,
    );
    if !errors.is_empty() {
        eprintln!("  abuser errors: {}", json!(errors));
    }
    eprintln!(
        "  jwd: RssAnon {} before the abusers, peak {} ({rss_samples} samples over {abuse_seconds:.1} s), {} at the end of the run, {} after; fds {} before, {} after ({}); clean-up {cleanup_seconds:.1} s",
        mb(rss_before),
        mb(rss_peak),
        mb(rss_end_of_run),
        mb(rss_after),
        show(fds_before),
        show(fds_after),
        match fds_returned {
            Some(true) => "back to baseline",
            Some(false) => "NOT back to baseline within 10 s",
            None => "not measured",
        },
    );
    for e in alone.errors.iter().chain(&abused.errors).take(10) {
        eprintln!("  normal workload error: {e}");
    }

    let report = json!({
        "scenario": "abuse",
        "seconds": plan.seconds,
        "connections": plan.connections,
        "alone": alone.json(),
        "abused": abused.json(),
        "ratio_p99_iteration": ratio_iteration,
        "ratio_p99_start": ratio_start,
        "ratio_rate": ratio_rate,
        "abusers": {
            "seconds": abuse_seconds,
            "slow_readers": {
                "requested": plan.slow_readers,
                "connections": load(&c.slow_connections),
                "streams_opened": load(&c.slow_streams),
                "credit_per_stream": ABUSE_CREDIT,
                "receive_buffer": SLOW_RCVBUF,
            },
            "hangups": {
                "requested": plan.hangups,
                "done": load(&c.hangups),
                "bytes_read": load(&c.hangup_bytes),
            },
            "half_open": {
                "requested": plan.half_open,
                "connections": load(&c.half_open_connections),
                "closed_by_server": load(&c.half_open_closed),
                "closed_after_ms_p50": lifetime_at(0.5),
                "closed_after_ms_max": lifetimes.last(),
            },
            "storm": {
                "loops": plan.storm,
                "admitted": load(&c.storm_admitted),
                "refused_resource_exhausted": load(&c.storm_refused),
            },
            "connections_refused": load(&c.connections_refused),
            "errors": errors,
            "tasks_aborted": aborted,
            "big_job_bytes": big.map(|_| plan.output),
        },
        "jobs_left_behind": left_behind,
        "cleanup_seconds": cleanup_seconds,
        "server_rss_anon_before_abuse": rss_before,
        "server_rss_anon_peak": rss_peak,
        "server_rss_anon_end_of_abused_run": rss_end_of_run,
        "server_rss_anon_after_abuse": rss_after,
        "server_fds_start": fds_start,
        "server_fds_before_abuse": fds_before,
        "server_fds_after_abuse": fds_after,
        "server_fds_returned": fds_returned,
        "server_fds_return_seconds": fds_return_seconds,
    });
    if !alone.errors.is_empty() || !abused.errors.is_empty() || fds_returned == Some(false) {
        return Err(format!("abuse failed: {report}"));
    }
    Ok(report)
}
