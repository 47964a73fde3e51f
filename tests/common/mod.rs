//! Helpers shared by the integration tests.
#![allow(dead_code)]

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

pub fn engine_with(name: &str, tweak: impl FnOnce(&mut EngineConfig)) -> Option<Engine> {
    if !require_root(name) {
        return None;
    }
    let data = tempfile::tempdir().unwrap();
    let mut config = EngineConfig {
        data_dir: data.path().to_path_buf(),
        cgroup: CgroupConfig {
            name: format!("jwtest-{name}-{}", std::process::id()),
            ..CgroupConfig::default()
        },
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
