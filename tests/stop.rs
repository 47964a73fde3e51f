//! A stop that cannot complete: a job whose processes the kernel holds
//! (here: frozen by a cgroup v1 freezer this test makes, where SIGKILL
//! stays pending until they are thawed). The stop reports failure after
//! the kill timeout instead of waiting forever, and the job's end is
//! recorded once the kernel lets the processes go.
//!
//! Needs the v1 freezer of a hybrid host (this project's machine and CI
//! host have it); the pure cgroup v2 test guest does not run this file.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{engine_with, start_req};
use jw::job::JobError;
use jw::protocol::JobState;

/// A freezer cgroup of this test's own, removed when dropped.
struct Freezer(PathBuf);

impl Freezer {
    fn new() -> Option<Freezer> {
        let root = Path::new("/sys/fs/cgroup/freezer");
        if !root.join("cgroup.procs").exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no cgroup v1 freezer at {}: this test needs the hybrid host",
                root.display()
            );
            eprintln!("skipped: no cgroup v1 freezer");
            return None;
        }
        let dir = root.join(format!("jwtest-stop-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Some(Freezer(dir))
    }

    fn adopt(&self, pid: &str) {
        std::fs::write(self.0.join("cgroup.procs"), pid).unwrap();
    }

    fn set(&self, state: &str) {
        std::fs::write(self.0.join("freezer.state"), state).unwrap();
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        // Emptied by the job's end; a frozen straggler would keep it.
        for _ in 0..500 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_the_kernel_cannot_complete_reports_failure_then_the_end_is_recorded() {
    let Some(e) = engine_with("stoptimeout", |c| {
        c.kill_timeout = Duration::from_secs(2);
    }) else {
        return;
    };
    let Some(freezer) = Freezer::new() else {
        return;
    };
    let started = e
        .manager
        .start("alice", &start_req("sleep", &["1000"]))
        .await
        .unwrap();
    // Every hierarchy's job directory lists the same processes.
    let dirs = e.manager.cgroups().job_dirs();
    assert!(!dirs.is_empty());
    let procs = std::fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap();
    let pids: Vec<&str> = procs.lines().collect();
    assert!(!pids.is_empty());
    for pid in &pids {
        freezer.adopt(pid);
    }
    freezer.set("FROZEN");

    let stop = tokio::time::timeout(
        Duration::from_secs(120),
        e.manager.stop(started.id, None, Duration::ZERO),
    )
    .await
    .expect("the stop returned");
    match stop {
        Err(JobError::StopTimeout { id, .. }) => assert_eq!(id, started.id),
        other => panic!("expected a stop timeout, got {other:?}"),
    }
    assert_eq!(
        e.manager.status(started.id, None).unwrap().state,
        JobState::Running
    );

    // Thawed, the pending SIGKILL ends it; the end is recorded as usual.
    freezer.set("THAWED");
    let info = tokio::time::timeout(Duration::from_secs(120), e.manager.wait(started.id, None))
        .await
        .expect("the job ended once thawed")
        .unwrap();
    assert_eq!(info.signal, Some(libc::SIGKILL), "{info:?}");
    assert!(info.stopped);
    drop(freezer);
    e.assert_clean();
}
