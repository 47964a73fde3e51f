//! The command line of `jw-load`: the global flags and one subcommand per
//! scenario (clap definitions).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Load generator and benchmarks for jwd.
#[derive(Parser)]
#[command(name = "jw-load", version = env!("JW_VERSION"), about)]
pub(crate) struct Cli {
    #[arg(long, env = "JW_ADDR", default_value = "127.0.0.1:7443", global = true)]
    pub(crate) addr: String,
    #[arg(
        long,
        env = "JW_CA",
        default_value = "certs/server-ca.crt",
        global = true
    )]
    pub(crate) ca: PathBuf,
    #[arg(
        long,
        env = "JW_CERT",
        default_value = "certs/alice.crt",
        global = true
    )]
    pub(crate) cert: PathBuf,
    #[arg(long, env = "JW_KEY", default_value = "certs/alice.key", global = true)]
    pub(crate) key: PathBuf,
    /// jwd's pid: adds its CPU time and RssAnon to every figure.
    #[arg(long, global = true)]
    pub(crate) server_pid: Option<u32>,
    /// Print one JSON object instead of the summary.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

#[derive(Subcommand)]
pub(crate) enum Scenario {
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
        /// Kill jwd with SIGKILL and start it again (same command,
        /// environment and directory) every SECS seconds while the workers
        /// go on; long-running ticker jobs and their followers must come
        /// through every restart (needs --server-pid).
        #[arg(long, value_name = "SECS")]
        restart_every: Option<u64>,
        /// Ticker jobs (a line every 100 ms, followed throughout) with
        /// --restart-every.
        #[arg(long, default_value_t = 2)]
        tickers: usize,
        /// Where a restarted jwd's stderr is appended.
        #[arg(long, default_value = "/tmp/jw-load-jwd.log")]
        jwd_log: PathBuf,
    },
    /// N sleeping jobs and their keepers' memory; then jwd is killed with
    /// SIGKILL and started again with the same command: the time until it
    /// accepts clients and until every job is re-adopted. Needs
    /// --server-pid; the new jwd is left running (its pid is printed).
    Restart {
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
        /// Connections the jobs are started, checked and stopped over.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Where the restarted jwd's stderr is appended.
        #[arg(long, default_value = "/tmp/jw-load-jwd.log")]
        jwd_log: PathBuf,
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
    /// Keystroke round trip: CMD runs in a fresh local pseudo-terminal
    /// (24x80, its controlling terminal); once it echoes a probe byte, N
    /// keys are typed one at a time, each timed until the terminal shows it
    /// again. E.g. `pty -- cat`, `pty -- jw run -it -- cat`,
    /// `pty -- ssh -tt HOST cat`.
    Pty {
        /// Timed round trips (with --warmup at most 3500: one terminal line).
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Untimed round trips first.
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        /// Probe only once CMD has turned the terminal's echo off (as
        /// `jw run -t` and `ssh -tt` do); else a probe can come back from
        /// the local echo before CMD is ready.
        #[arg(long)]
        raw: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
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
