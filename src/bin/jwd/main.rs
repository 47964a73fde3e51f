//! `jwd`: the jw server. See README.md.

mod args;
mod check;
mod file;

use std::process::ExitCode;

use args::Args;
use jw::job::Manager;
use jw::server::{Listener, Server, ServerConfig, UserLimits};
use jw::tls::{LoadedTls, ServerTls};
use nix::sys::signal::{SigSet, Signal};

/// Raises the fd limit as far as this host allows (every connection,
/// follower and job costs descriptors) and returns the limit in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let want = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard)
        .min(1 << 20)
        .max(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// The default connection cap: a quarter of the descriptors, the rest for
/// running jobs (one each), followers' files and the blocking pool.
fn connection_cap(fd_limit: u64) -> usize {
    (fd_limit / 4).max(16) as usize
}

/// Takes jwd out of the OOM killer's choice (its own jobs are limited by
/// their memory cgroups; jw-init puts each job back to the default score).
fn protect_from_oom_killer() {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", b"-1000") {
        tracing::warn!(error = %e, "cannot set jwd's oom_score_adj to -1000: the OOM killer may choose jwd over a job");
    }
}

/// Logs what TLS material is in use: the server certificate's end of
/// validity and each revocation list's size.
fn log_tls(what: &str, tls: &LoadedTls) {
    let d = &tls.description;
    let crls = d
        .crls
        .iter()
        .map(|c| format!("{} ({} revoked)", c.path.display(), c.entries))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::info!(
        subject = %d.server.subject,
        not_after = %d.server.not_after,
        crls = if crls.is_empty() { "none" } else { crls.as_str() },
        "{what}"
    );
}

fn main() -> ExitCode {
    let args = match file::settings(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(file::SettingsError::Usage(e)) => e.exit(),
        Err(file::SettingsError::File(e)) => {
            eprintln!("jwd: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if args.check_config {
        return if check::check(&args) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    // Block the stop and reload signals before any thread exists, so every
    // thread inherits the mask and only the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let fd_limit = raise_fd_limit();
    // Everything jwd creates (data directory, output, records) is
    // owner-only, whatever the code path.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    protect_from_oom_killer();
    if args.job_user.as_deref() == Some("root") {
        tracing::warn!("--job-user root: jobs hold no capability, but as uid 0 they own, and can read, every root-owned file of the host they can see (/etc/shadow, other services' keys); use it only for tenants you trust with that");
    }

    let tls_files = ServerTls {
        cert: args.cert.clone(),
        key: args.key.clone(),
        client_ca: args.client_ca.clone(),
        crls: args.crl.clone(),
    };
    let tls = tls_files.load_all().map_err(|e| e.to_string())?;
    // Bound before the engine starts: a jwd whose address another holds
    // stops here, before it touches a data directory or cgroup.
    let listener = Listener::bind(args.listen).map_err(|e| e.to_string())?;
    let manager = Manager::new(args.engine_config()).map_err(|e| e.to_string())?;
    let probe = args.data_dir.join("jobs").join(".write-test");
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "cannot write to the data directory {}: {e}",
            args.data_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);

    let server = Server::start(
        listener,
        ServerConfig {
            admin_group: args.admin_group.clone(),
            max_connections: args
                .max_connections
                .unwrap_or_else(|| connection_cap(fd_limit)),
            max_handshakes: args.max_handshakes as usize,
            user_limits: UserLimits {
                connections: args.max_connections_per_user as usize,
                streams: args.max_streams_per_user as usize,
            },
            handshake_timeout: args.handshake_timeout,
            idle_timeout: args.idle_timeout,
            write_timeout: args.write_timeout,
            threads: args.threads.max(1),
        },
        tls.clone(),
        manager.clone(),
    )
    .map_err(|e| e.to_string())?;
    log_tls("TLS material loaded", &tls);
    tracing::info!(
        listen = %server.local_addr(),
        layout = %manager.layout(),
        data_dir = %args.data_dir.display(),
        job_user = args.job_user.as_deref().unwrap_or("-"),
        job_uids = %args.job_uids,
        default_memory = ?args.default_memory.0,
        default_pids = ?args.default_pids.0,
        seccomp = !args.no_seccomp,
        threads = args.threads.max(1),
        host_network = args.allow_host_network,
        fd_limit,
        max_handshakes = args.max_handshakes,
        max_connections_per_user = args.max_connections_per_user,
        max_streams_per_user = args.max_streams_per_user,
        max_jobs_per_user = ?args.max_jobs_per_user.0,
        max_output_total = ?args.max_output_total.0,
        max_starts_per_user = args.max_starts_per_user,
        max_timeout = ?args.max_timeout,
        "jwd ready"
    );

    let signal = loop {
        let signal = signals
            .wait()
            .map_err(|e| format!("cannot wait for signals: {e}"))?;
        if signal != Signal::SIGHUP {
            break signal;
        }
        match tls_files.load_all() {
            Ok(tls) => {
                log_tls("SIGHUP: TLS material reloaded; new connections use it, open ones keep theirs (those whose client certificate is now revoked are closed)", &tls);
                server.reload_tls(tls);
            }
            Err(e) => tracing::error!(
                error = %e,
                "SIGHUP: cannot reload the TLS material; the previous certificates, key and revocation lists stay in use"
            ),
        }
    };
    if args.keep_jobs_on_exit {
        tracing::info!(%signal, "shutting down: closing connections; running jobs stay with their keepers for the next jwd");
    } else {
        tracing::info!(%signal, grace = ?args.shutdown_grace, "shutting down: closing connections and stopping running jobs");
    }
    server.shutdown();
    manager.cgroups().remove_subtree();
    tracing::info!("jwd stopped");
    Ok(())
}
