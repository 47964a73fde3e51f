//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod pki;
pub mod pty;
pub mod raw;

use std::time::Duration;

use jw::job::cgroup::CgroupConfig;
use jw::job::{EngineConfig, Manager};
use jw::protocol::{JobId, JobInfo, Limits, Network, OutputStream, StartRequest};

/// True when the test may run: as root. Without root the test is skipped on
/// a developer machine, and fails under CI=true, where nothing may skip.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root, and CI=true forbids skipping it");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// An engine with its own data directory and cgroup subtree.
pub struct Engine {
    pub manager: Manager,
    pub config: EngineConfig,
    _data: tempfile::TempDir,
}

impl Engine {
    pub fn layout(&self) -> String {
        self.manager.layout().to_string()
    }

    pub fn read_output(&self, id: JobId, which: OutputStream) -> String {
        std::fs::read_to_string(self.manager.output_path(id, which)).unwrap_or_default()
    }

    /// No job cgroup is left (every job in these tests has ended).
    pub fn assert_clean(&self) {
        let left = self.manager.cgroups().job_dirs();
        assert!(left.is_empty(), "cgroup directories left behind: {left:?}");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.manager.cgroups().remove_subtree();
    }
}

pub fn engine(name: &str) -> Option<Engine> {
    engine_with(name, |_| {})
}

/// Raises the soft fd limit to the hard one, as jwd does at start: a
/// test process with hundreds of jobs needs more than the usual 1024.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

pub fn engine_with(name: &str, tweak: impl FnOnce(&mut EngineConfig)) -> Option<Engine> {
    if !require_root(name) {
        return None;
    }
    raise_fd_limit();
    let data = tempfile::tempdir().unwrap();
    let mut config = EngineConfig {
        data_dir: data.path().to_path_buf(),
        cgroup: CgroupConfig {
            name: format!("jwtest-{name}-{}", std::process::id()),
            ..CgroupConfig::default()
        },
        init_program: Some(
            std::env::var_os("JW_TEST_INIT")
                .map_or_else(|| env!("CARGO_BIN_EXE_jw-init").into(), Into::into),
        ),
        ..EngineConfig::default()
    };
    tweak(&mut config);
    let manager = Manager::new(config.clone()).expect("engine starts");
    Some(Engine {
        manager,
        config,
        _data: data,
    })
}

pub fn start_req(command: &str, args: &[&str]) -> StartRequest {
    StartRequest {
        command: command.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        workdir: None,
        limits: Limits::default(),
        network: Network::None,
    }
}

/// Starts a job and waits (at most a minute) for its end.
pub async fn run_to_end(e: &Engine, req: StartRequest) -> JobInfo {
    let started = e.manager.start("alice", &req).await.expect("job starts");
    tokio::time::timeout(Duration::from_secs(60), e.manager.wait(started.id, None))
        .await
        .expect("job ends within a minute")
        .expect("job exists")
}

// ------------------------------------------------------------ real jwd

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jw::client::{Client, ConnectOptions};

pub fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// Connection options for one of the dev PKI's users.
pub fn user_options(addr: &str, user: &str) -> ConnectOptions {
    ConnectOptions {
        addr: addr.to_string(),
        ca: certs().join("server-ca.crt"),
        cert: certs().join(format!("{user}.crt")),
        key: certs().join(format!("{user}.key")),
    }
}

static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// Makes the dev PKI's keys owner-only, as `scripts/setup` does (git
/// checks files out 0644, and jwd refuses a key others can read).
pub fn protect_dev_keys() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(certs()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "key") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
    });
}

/// The command line of a jwd with the dev PKI on a free loopback port, the
/// given data directory and cgroup name.
pub fn jwd_command(data_dir: &Path, cgroup_name: &str) -> Command {
    jwd_command_on(data_dir, cgroup_name, "127.0.0.1:0")
}

/// `jwd_command` listening on `listen` (a restart on the port clients know).
pub fn jwd_command_on(data_dir: &Path, cgroup_name: &str, listen: &str) -> Command {
    protect_dev_keys();
    jwd_command_pki(data_dir, cgroup_name, listen, &certs())
}

/// `jwd_command_on` with the PKI in `certs` (server.crt, server.key,
/// client-ca.crt, as `jw certs init` writes them).
pub fn jwd_command_pki(data_dir: &Path, cgroup_name: &str, listen: &str, certs: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jwd"));
    command
        .args(["--listen", listen, "--threads", "2"])
        .arg("--cert")
        .arg(certs.join("server.crt"))
        .arg("--key")
        .arg(certs.join("server.key"))
        .arg("--client-ca")
        .arg(certs.join("client-ca.crt"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--cgroup-name", cgroup_name]);
    // Another build of the keeper (scripts/build-keeper's static one).
    if let Some(init) = std::env::var_os("JW_TEST_INIT") {
        command.arg("--init").arg(init);
    }
    command
}

/// A free loopback address below the kernel's ephemeral ports, for a jwd
/// that a test restarts on the same address: a port 0 jwd gets an
/// ephemeral port, which, once that jwd is killed, any other test's
/// client or port 0 jwd may take before the restart binds it (jwd binds
/// without SO_REUSEPORT, so that is "address in use"). No one is handed
/// these ports; tests running at once start their search at different
/// places and skip ports in use.
pub fn restartable_addr() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).max(1000);
    let first = low - span;
    let start = std::process::id() as usize * 131;
    for _ in 0..span {
        let port = first + (start + NEXT.fetch_add(7, Ordering::Relaxed)) % span;
        let addr = format!("127.0.0.1:{port}");
        if std::net::TcpListener::bind(&addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port between {first} and {low}");
}

/// A jwd process on a free loopback port, with its own data directory and
/// cgroup subtree. Killed (SIGKILL) when dropped, unless stopped first.
pub struct Jwd {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub cgroup_name: String,
    log: Arc<Mutex<String>>,
    _data: Option<tempfile::TempDir>,
}

/// A process's anonymous resident memory in bytes (`None`: it is gone).
pub fn rss_anon_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// A cgroup name of this test process's own for the next jwd.
fn server_name() -> String {
    format!(
        "jwtest-srv-{}-{}",
        std::process::id(),
        SERVERS.fetch_add(1, Ordering::Relaxed)
    )
}

impl Jwd {
    /// Starts jwd (root only) with extra flags.
    pub fn start(test: &str, extra: &[&str]) -> Option<Jwd> {
        if !require_root(test) {
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().to_path_buf();
        let name = server_name();
        let mut jwd = Self::start_with(&dir, &name, extra);
        jwd._data = Some(data);
        Some(jwd)
    }

    /// `start`, with the data directory handed to the caller so that it
    /// outlives this jwd (for tests that restart it), on a port a restart
    /// can bind again ([`restartable_addr`]).
    pub fn start_kept(test: &str, extra: &[&str]) -> Option<(Jwd, tempfile::TempDir)> {
        if !require_root(test) {
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let name = server_name();
        let jwd = Self::start_on(data.path(), &name, &restartable_addr(), extra);
        Some((jwd, data))
    }

    /// Starts jwd on a given data directory and cgroup name (for restarts).
    pub fn start_with(data_dir: &Path, cgroup_name: &str, extra: &[&str]) -> Jwd {
        Self::start_on(data_dir, cgroup_name, "127.0.0.1:0", extra)
    }

    /// `start_with` on a given address (a restart on the same port).
    pub fn start_on(data_dir: &Path, cgroup_name: &str, listen: &str, extra: &[&str]) -> Jwd {
        Self::spawn(
            jwd_command_on(data_dir, cgroup_name, listen),
            data_dir,
            cgroup_name,
            extra,
        )
    }

    /// Starts jwd (root only) with the PKI in `pki` (see
    /// `jwd_command_pki`) and extra flags, on a free loopback port.
    pub fn start_pki(test: &str, pki: &Path, extra: &[&str]) -> Option<Jwd> {
        if !require_root(test) {
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().to_path_buf();
        let name = server_name();
        let command = jwd_command_pki(&dir, &name, "127.0.0.1:0", pki);
        let mut jwd = Self::spawn(command, &dir, &name, extra);
        jwd._data = Some(data);
        Some(jwd)
    }

    /// Runs `command` (a jwd command line) with `extra` flags and waits
    /// for it to be ready.
    fn spawn(mut command: Command, data_dir: &Path, cgroup_name: &str, extra: &[&str]) -> Jwd {
        let mut child = command
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("jwd starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line.contains("jwd ready") {
                        if let Some(addr) = line
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("listen="))
                        {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(addr.to_string());
                            }
                        }
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("jwd did not start:\n{}", log.lock().unwrap());
            }
        };
        Jwd {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            cgroup_name: cgroup_name.to_string(),
            log,
            _data: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// How many lines of jwd's log hold every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .count()
    }

    /// Waits (at most a minute) until `count` lines of jwd's log hold
    /// every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str], count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.log_lines(needles) < count {
            assert!(
                std::time::Instant::now() < deadline,
                "jwd did not log {count} lines with {needles:?} within a minute:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGHUP: jwd reloads its TLS material.
    pub fn hup(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }

    pub fn options(&self, user: &str) -> ConnectOptions {
        user_options(&self.addr, user)
    }

    pub async fn client(&self, user: &str) -> Client {
        Client::connect(&self.options(user))
            .await
            .expect("client connects")
    }

    /// Open fds of the jwd process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// jwd's anonymous memory (RssAnon), in bytes.
    pub fn rss_anon(&self) -> u64 {
        rss_anon_of(self.pid()).expect("RssAnon in /proc/PID/status")
    }

    /// The job cgroup directories of this jwd (`<its cgroup>/<name>/*`,
    /// and in its parent's for a jwd in `<name>.server`), in every
    /// hierarchy.
    pub fn cgroups_left(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for dir in jw::job::cgroup::pid_cgroup_dirs(self.pid()).unwrap_or_default() {
            for base in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
                if let Ok(entries) = std::fs::read_dir(base.join(&self.cgroup_name)) {
                    left.extend(
                        entries
                            .filter_map(Result::ok)
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
            }
        }
        left
    }

    /// SIGKILL, as a crash; the data directory stays.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status if jwd has exited (then this handle no longer owns a
    /// process), without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().unwrap()
    }

    /// Takes the data directory's ownership away from this handle (so a
    /// restarted jwd can use it).
    pub fn keep_data(&mut self) -> Option<tempfile::TempDir> {
        self._data.take()
    }
}

impl Drop for Jwd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
