//! The job engine against the real kernel: cgroups, namespaces, limits,
//! stop, exec errors, cleanup. Needs root; skips on a laptop without it,
//! fails under CI=true.

mod common;

use std::time::{Duration, Instant};

use common::{engine, engine_with, run_to_end, start_req};
use jw::job::JobError;
use jw::protocol::{JobState, Limits, OutputStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_command_and_captures_stdout_and_stderr_apart() {
    let Some(e) = engine("basic") else { return };
    let info = run_to_end(
        &e,
        start_req("sh", &["-c", "echo out; echo err >&2; exit 3"]),
    )
    .await;
    assert_eq!(info.state, JobState::Exited);
    assert_eq!(info.exit_code, Some(3));
    assert_eq!(info.signal, None);
    assert_eq!(e.read_output(info.id, OutputStream::Stdout), "out\n");
    assert_eq!(e.read_output(info.id, OutputStream::Stderr), "err\n");
    assert_eq!(info.output.stdout_bytes, 4);
    assert_eq!(info.output.stderr_bytes, 4);
    assert!(info.ended_at_ms.unwrap() >= info.started_at_ms);
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_death_by_signal() {
    let Some(e) = engine("signal") else { return };
    let info = run_to_end(&e, start_req("sh", &["-c", "kill -USR1 $$"])).await;
    assert_eq!(info.exit_code, None);
    assert_eq!(info.signal, Some(libc::SIGUSR1));
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_oom_kills_and_says_so() {
    let Some(e) = engine("oom") else { return };
    let mut req = start_req(
        "dd",
        &["if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    req.limits = Limits {
        memory_bytes: Some(32 << 20),
        ..Limits::default()
    };
    let info = run_to_end(&e, req).await;
    println!("[{}] oom: {info:?}", e.layout());
    assert!(info.oom_killed, "{info:?}");
    assert_eq!(info.signal, Some(libc::SIGKILL));
    assert!(info.usage.memory_peak_bytes <= 33 << 20, "{:?}", info.usage);
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_limit_throttles_a_busy_loop() {
    let Some(e) = engine("cpu") else { return };
    let mut req = start_req("timeout", &["2", "sh", "-c", "while :; do :; done"]);
    req.limits.cpu_millicores = Some(200);
    let began = Instant::now();
    let info = run_to_end(&e, req).await;
    let wall = began.elapsed().as_secs_f64();
    let cpu = (info.usage.cpu_user_us + info.usage.cpu_system_us) as f64 / 1e6;
    println!(
        "[{}] cpu 0.2: {cpu:.3} s of CPU in {wall:.3} s wall, ratio {:.3}",
        e.layout(),
        cpu / wall
    );
    assert!(cpu > 0.05, "the loop barely ran: {cpu} s");
    // The bound is the limit plus generous slack, as a ratio of the wall
    // time the job had: unthrottled it would be near 1.0.
    assert!(
        cpu / wall < 0.35,
        "cpu {cpu} s over {wall} s wall exceeds a 0.2 core limit"
    );
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_limit_contains_a_fork_bomb() {
    let Some(e) = engine("pids") else { return };
    // Tries to keep 100 sleepers; counts the job's processes from its own
    // /proc (which shows only the job's PID namespace).
    // The count uses only shell builtins: no fork is left to run `ls`.
    // dash gives up at the first failed fork, so the bomb runs in a
    // subshell; the count uses only builtins (no fork is left for `ls`).
    let script = "(for i in $(seq 1 100); do sleep 30 & done) 2>/dev/null; \
                  set -- /proc/[0-9]*; echo $#";
    let mut req = start_req("sh", &["-c", script]);
    req.limits.pids = Some(20);
    let info = run_to_end(&e, req).await;
    let seen: u32 = e
        .read_output(info.id, OutputStream::Stdout)
        .trim()
        .parse()
        .unwrap();
    println!("[{}] pids 20: the job saw {seen} processes", e.layout());
    assert!(
        (10..=20).contains(&seen),
        "saw {seen} processes under pids=20"
    );
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_write_limit_throttles_direct_writes() {
    // The job writes into its own work directory, on the data directory's
    // disk. In the test VM the root is in RAM: there the data directory
    // goes on the scratch disk's filesystem, JW_TEST_IO_DIR.
    let scratch = std::env::var("JW_TEST_IO_DIR")
        .ok()
        .map(|dir| tempfile::tempdir_in(dir).unwrap());
    let Some(e) = common::engine_with("io", |c| {
        if let Some(dir) = &scratch {
            c.data_dir = dir.path().to_path_buf();
        }
    }) else {
        return;
    };
    if e.manager.cgroups().devices().is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no block device to throttle"
        );
        return;
    }
    let mut req = start_req(
        "dd",
        &[
            "if=/dev/zero",
            "of=data",
            "bs=1M",
            "count=20",
            "oflag=direct",
        ],
    );
    req.limits.io_write_bps = Some(5 << 20);
    let began = Instant::now();
    let info = run_to_end(&e, req).await;
    let wall = began.elapsed().as_secs_f64();
    println!(
        "[{}] io-write 5M: 20 MiB direct in {wall:.2} s; usage {:?}",
        e.layout(),
        info.usage
    );
    assert_eq!(
        info.exit_code,
        Some(0),
        "{}",
        e.read_output(info.id, OutputStream::Stderr)
    );
    assert!(wall >= 2.5, "20 MiB at 5 MiB/s took only {wall:.2} s");
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_is_isolated_from_the_host() {
    let Some(e) = engine("iso") else { return };
    let script = "echo ppid=$PPID; \
                  echo procs=$(ls /proc | grep -c '^[0-9]'); \
                  echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,); \
                  echo host=$(cat /proc/sys/kernel/hostname); \
                  echo uid=$(id -u); \
                  echo fds=$(ls /proc/self/fd | tr '\\n' ,); \
                  echo lo=$(ip link show lo 2>/dev/null | grep -c 'UP')";
    let info = run_to_end(&e, start_req("sh", &["-c", script])).await;
    let out = e.read_output(info.id, OutputStream::Stdout);
    println!("[{}] isolation:\n{out}", e.layout());
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(out.contains("ppid=1\n"), "{out}");
    let procs: u32 = field(&out, "procs").parse().unwrap();
    assert!(procs <= 6, "the job sees {procs} processes");
    assert_eq!(field(&out, "ifaces"), "lo,");
    assert_ne!(field(&out, "host"), host_name.trim());
    assert!(field(&out, "host").starts_with("jw-"));
    let uid: u32 = field(&out, "uid").parse().unwrap();
    assert!(e.config.job_uids.contains(uid), "uid {uid}");
    // 0, 1, 2 and the directory fd `ls` itself opened to list them.
    assert_eq!(field(&out, "fds"), "0,1,2,3,");
    assert_eq!(field(&out, "lo"), "1", "lo is not up");
    e.assert_clean();
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_a_term_ignoring_job_and_its_daemons() {
    let Some(e) = engine("stop") else { return };
    // A double-forked, session-leading daemon holds a lock on a file in
    // the job's work directory; the main process ignores SIGTERM.
    let script = "trap '' TERM; (setsid sh -c \"trap '' TERM; exec flock lock sleep 1000\" &); \
                  while [ ! -e lock ]; do sleep 0.05; done; sleep 0.2; echo ready; sleep 1000";
    let started = e
        .manager
        .start("alice", &start_req("sh", &["-c", script]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.read_output(started.id, OutputStream::Stdout) != "ready\n" {
        assert!(Instant::now() < deadline, "job never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The host's view of the lock file, held open past the job's end
    // (its work directory is emptied then).
    let lock = std::fs::File::open(e.manager.work_path(started.id).unwrap().join("lock")).unwrap();
    assert!(!try_lock(&lock), "the daemon should hold the lock");
    let began = Instant::now();
    let info = e
        .manager
        .stop(started.id, Some("alice"), Duration::from_millis(500))
        .await
        .unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "SIGTERM is ignored: the grace period must run out"
    );
    assert!(info.stopped);
    assert_eq!(info.signal, Some(libc::SIGKILL));
    assert!(try_lock(&lock), "the daemon survived the stop");
    e.assert_clean();
}

fn try_lock(file: &std::fs::File) -> bool {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_grace_lets_a_polite_job_exit() {
    let Some(e) = engine("polite") else { return };
    let script = "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    let started = e
        .manager
        .start("alice", &start_req("sh", &["-c", script]))
        .await
        .unwrap();
    while e.read_output(started.id, OutputStream::Stdout) != "ready\n" {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A grace past the engine's ceiling is refused and touches nothing.
    let too_long = jw::job::MAX_GRACE + Duration::from_millis(1);
    let refused = e.manager.stop(started.id, None, too_long).await;
    assert!(
        matches!(refused, Err(jw::job::JobError::GraceTooLong(_))),
        "{refused:?}"
    );
    assert!(e
        .manager
        .status(started.id, None)
        .unwrap()
        .state
        .is_active());
    let info = e
        .manager
        .stop(started.id, None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(info.exit_code, Some(7));
    assert!(info.stopped);
    assert_eq!(
        e.read_output(started.id, OutputStream::Stdout),
        "ready\nbye\n"
    );
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_failures_are_synchronous_errors() {
    let Some(e) = engine("exec") else { return };
    // Paths every host (and the test VM) has, visible read-only in jobs.
    let cases = [
        ("/no/such/binary".to_string(), "No such file or directory"),
        (
            "no-such-command-jw".to_string(),
            "not found on the job's PATH",
        ),
        ("/etc".to_string(), "is a directory"),
        ("/etc/passwd".to_string(), "Permission denied"),
    ];
    for (command, expect) in cases {
        match e.manager.start("alice", &start_req(&command, &[])).await {
            Err(JobError::ExecFailed(msg) | JobError::CommandNotFound(msg)) => {
                assert!(msg.contains(expect), "{command}: {msg}")
            }
            other => panic!("{command}: expected an exec failure, got {other:?}"),
        }
    }
    let mut bad_dir = start_req("/bin/true", &[]);
    bad_dir.workdir = Some("/no/such/dir".into());
    match e.manager.start("alice", &bad_dir).await {
        Err(JobError::ExecFailed(msg)) => assert!(msg.contains("working directory"), "{msg}"),
        other => panic!("expected a chdir failure, got {other:?}"),
    }
    assert!(
        e.manager.list(None).await.is_empty(),
        "failed starts are not jobs"
    );
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_fallback_without_clone_into_cgroup() {
    let Some(e) = engine("fallback") else { return };
    e.manager.force_placement_fallback();
    let info = run_to_end(&e, start_req("sh", &["-c", "cat /proc/self/cgroup"])).await;
    assert_eq!(info.exit_code, Some(0));
    let cgroups = e.read_output(info.id, OutputStream::Stdout);
    let id = info.id.to_string();
    for line in cgroups.lines() {
        let controllers = line.split(':').nth(1).unwrap_or("");
        if controllers.is_empty()
            || ["memory", "pids", "cpu", "blkio"]
                .iter()
                .any(|c| controllers.split(',').any(|x| x == *c))
        {
            assert!(line.ends_with(&id), "not placed: {line}");
        }
    }
    let mut req = start_req(
        "dd",
        &["if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    req.limits.memory_bytes = Some(32 << 20);
    let info = run_to_end(&e, req).await;
    assert!(info.oom_killed);
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_into_cgroup_places_the_job_before_it_runs() {
    let Some(e) = engine("placed") else { return };
    let info = run_to_end(&e, start_req("cat", &["/proc/self/cgroup"])).await;
    let cgroups = e.read_output(info.id, OutputStream::Stdout);
    let id = info.id.to_string();
    let v2 = cgroups.lines().find(|l| l.starts_with("0::")).unwrap();
    assert!(v2.ends_with(&id), "{cgroups}");
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_cleans_up_what_a_crashed_server_left() {
    let Some(first) = engine("stale") else { return };
    let started = first
        .manager
        .start("alice", &start_req("sleep", &["1000"]))
        .await
        .unwrap();
    assert!(!first.manager.cgroups().job_dirs().is_empty());
    // While the first engine lives, a second one on the same data
    // directory and subtree is refused and touches nothing of it.
    let refused = jw::job::Manager::new(first.config.clone()).err();
    assert!(
        matches!(refused, Some(JobError::InUse { .. })),
        "{refused:?}"
    );
    assert!(first
        .manager
        .status(started.id, None)
        .unwrap()
        .state
        .is_active());
    // Once it has gone (crashed), a new engine with the same subtree name
    // kills and removes what it cannot adopt: here a job whose keeper was
    // never recorded (jwd died between the clone and the record).
    first.manager.release_as_if_crashed();
    let dir = first
        .manager
        .output_path(started.id, jw::protocol::OutputStream::Stdout);
    std::fs::remove_file(dir.with_file_name(jw::job::keeper::KEEPER_FILE)).unwrap();
    let second = jw::job::Manager::new(first.config.clone()).unwrap();
    let info = tokio::time::timeout(
        Duration::from_secs(20),
        first.manager.wait(started.id, None),
    )
    .await
    .expect("the stale job was not killed");
    assert_eq!(info.unwrap().state, JobState::Lost);
    let seen = second.status(started.id, None).unwrap();
    assert_eq!(seen.state, JobState::Lost, "{seen:?}");
    assert!(second.cgroups().job_dirs().is_empty());
    first.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_latency_figures() {
    let Some(e) = engine("latency") else { return };
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = e
            .manager
            .start("alice", &start_req("/bin/true", &[]))
            .await
            .unwrap();
        samples.push(started.exec_latency);
        let info = e.manager.wait(started.id, None).await.unwrap();
        assert_eq!(info.exit_code, Some(0));
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "[{}] start latency clone3 -> execve of /bin/true, 200 sequential jobs: p50 {:?} p90 {:?} p99 {:?} max {:?}",
        e.layout(),
        pct(50),
        pct(90),
        pct(99),
        samples.last().unwrap()
    );
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_refuses_running_jobs_and_deletes_ended_ones() {
    let Some(e) = engine("remove") else { return };
    let started = e
        .manager
        .start("alice", &start_req("sleep", &["1000"]))
        .await
        .unwrap();
    assert!(matches!(
        e.manager.remove(started.id, None).await,
        Err(JobError::StillRunning(_))
    ));
    assert!(matches!(
        e.manager.status(started.id, Some("bob")),
        Err(JobError::NotFound(_))
    ));
    e.manager
        .stop(started.id, Some("alice"), Duration::ZERO)
        .await
        .unwrap();
    e.manager.remove(started.id, Some("alice")).await.unwrap();
    assert!(matches!(
        e.manager.status(started.id, None),
        Err(JobError::NotFound(_))
    ));
    assert!(!e
        .manager
        .output_path(started.id, OutputStream::Stdout)
        .exists());
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_ended_jobs_and_keeps_running_ones() {
    let Some(e) = engine_with("retain", |c| c.retain = Some(Duration::from_secs(1))) else {
        return;
    };
    let running = e
        .manager
        .start("alice", &start_req("sleep", &["1000"]))
        .await
        .unwrap();
    let ended = e
        .manager
        .start("alice", &start_req("echo", &["bye"]))
        .await
        .unwrap();
    e.manager.wait(ended.id, None).await.unwrap();
    // The engine's own retention thread removes it, with its output.
    let bound = Instant::now() + Duration::from_secs(120);
    while e.manager.status(ended.id, None).is_ok() {
        assert!(Instant::now() < bound, "an ended job outlived --retain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!e
        .manager
        .output_path(ended.id, OutputStream::Stdout)
        .exists());
    let info = e.manager.status(running.id, None).unwrap();
    assert_eq!(
        info.state,
        JobState::Running,
        "running jobs are never pruned"
    );
    e.manager
        .stop(running.id, None, Duration::ZERO)
        .await
        .unwrap();
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_jobs_with_a_shutdown_grace_past_the_stop_ceiling() {
    // An operator's --shutdown-grace may be longer than the hour a user's
    // stop may ask for: drain still sends SIGTERM, and a polite job ends.
    let grace = jw::job::MAX_GRACE * 2;
    let Some(e) = engine_with("draingrace", |c| c.shutdown_grace = grace) else {
        return;
    };
    let started = e
        .manager
        .start("alice", &start_req("sleep", &["1000"]))
        .await
        .unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(120), e.manager.drain()).await;
    assert_eq!(drained, Ok(true), "drain sent no SIGTERM");
    let info = e.manager.status(started.id, None).unwrap();
    assert_eq!(info.signal, Some(libc::SIGTERM));
    assert!(info.stopped);
    // And starts are refused from then on.
    let refused = e.manager.start("alice", &start_req("true", &[])).await;
    assert!(
        matches!(refused, Err(JobError::ShuttingDown)),
        "{refused:?}"
    );
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_style_clone_runs_the_same_job() {
    let Some(e) = engine("forkclone") else { return };
    e.manager.force_fork_clone();
    let info = run_to_end(
        &e,
        start_req(
            "sh",
            &[
                "-c",
                "echo pid=$$ host=$(hostname); cat /proc/self/cgroup; exit 3",
            ],
        ),
    )
    .await;
    assert_eq!(info.exit_code, Some(3));
    let out = e.read_output(info.id, OutputStream::Stdout);
    assert!(out.starts_with("pid=2 host=jw-"), "{out}");
    assert!(
        out.contains(&info.id.to_string()),
        "not in its cgroup: {out}"
    );
    e.assert_clean();
}

#[test]
fn a_missing_init_program_is_a_clear_error_at_start_up() {
    if !common::require_root("noinit") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config = jw::job::EngineConfig {
        data_dir: data.path().to_path_buf(),
        init_program: Some("/nonexistent/jw-init".into()),
        ..jw::job::EngineConfig::default()
    };
    let err = jw::job::Manager::new(config).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/jw-init") && text.contains("--init"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_program_that_is_not_jw_init_fails_the_start_cleanly() {
    let Some(e) = common::engine_with("wronginit", |c| c.init_program = Some("/bin/true".into()))
    else {
        return;
    };
    let err = e
        .manager
        .start("alice", &start_req("true", &[]))
        .await
        .expect_err("not started");
    assert!(err.to_string().contains("init exited"), "{err}");
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_under_a_per_user_limit_admit_exactly_the_limit() {
    let Some(e) = common::engine_with("slots", |c| c.max_jobs_per_user = Some(3)) else {
        return;
    };
    let starts: Vec<_> = (0..40)
        .map(|_| {
            let manager = e.manager.clone();
            tokio::spawn(
                async move { manager.start("alice", &start_req("sleep", &["1000"])).await },
            )
        })
        .collect();
    let mut started = Vec::new();
    let mut refused = 0;
    for start in starts {
        match start.await.unwrap() {
            Ok(s) => started.push(s.id),
            Err(JobError::TooManyJobs { max: 3, .. }) => refused += 1,
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!((started.len(), refused), (3, 37));
    // Another owner has places of their own.
    let bob = e
        .manager
        .start("bob", &start_req("true", &[]))
        .await
        .unwrap();
    e.manager.wait(bob.id, None).await.unwrap();
    // A place is free as soon as a job's end can be seen.
    e.manager
        .stop(started[0], None, Duration::ZERO)
        .await
        .unwrap();
    let again = e
        .manager
        .start("alice", &start_req("true", &[]))
        .await
        .unwrap();
    e.manager.wait(again.id, None).await.unwrap();
    for id in &started[1..] {
        e.manager.stop(*id, None, Duration::ZERO).await.unwrap();
    }
    e.assert_clean();
}
