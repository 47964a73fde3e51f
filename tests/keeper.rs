//! Jobs outlive jwd (issue 18): each job's init keeps it while jwd is
//! away, and a restarted jwd re-adopts it. Through the real binaries, real
//! TLS and real cgroups, with jwd killed by SIGKILL as a crash would.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Jwd;
use jw::protocol::{Event, JobId, JobInfo, JobState, LogsRequest, OutputStream, StartRequest};

fn req(command: &str, args: &[&str]) -> StartRequest {
    common::start_req(command, args)
}

fn logs(job: JobId, follow: bool) -> LogsRequest {
    LogsRequest {
        job,
        stdout: Some(0),
        stderr: Some(0),
        follow,
        credit: 1 << 20,
    }
}

/// Reads a logs stream to its end, granting credit as it goes.
async fn collect(mut stream: jw::client::Stream) -> (Vec<u8>, Vec<u8>, JobInfo) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match stream.next().await.unwrap() {
            Some(Event::Output(c)) => {
                let target = if c.stream == OutputStream::Stdout {
                    &mut out
                } else {
                    &mut err
                };
                assert_eq!(c.offset, target.len() as u64, "chunks are contiguous");
                target.extend_from_slice(&c.data);
                stream.grant(c.data.len() as u32).await.unwrap();
            }
            Some(Event::End(info)) => return (out, err, info),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn job_dir(jwd: &Jwd, id: JobId) -> PathBuf {
    jwd.data_dir.join("jobs").join(id.to_string())
}

/// The pid of a job's keeper, as jwd recorded it.
fn keeper_pid(dir: &Path) -> i32 {
    let text = std::fs::read_to_string(dir.join(jw::job::keeper::KEEPER_FILE)).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Whether `pid` runs (a zombie does not: an adopted keeper's parent was
/// the jwd that died, so whoever inherited it reaps it, in its own time).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Waits (bounded) until `pid` has exited.
async fn gone(pid: i32) {
    for _ in 0..600 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("process {pid} still alive after 60 s");
}

/// A job's work directory on the host (its /home/job, its working
/// directory), from the uid jwd recorded for it.
fn work_dir(jwd: &Jwd, id: JobId) -> PathBuf {
    let text =
        std::fs::read_to_string(job_dir(jwd, id).join(jw::job::keeper::KEEPER_FILE)).unwrap();
    let uid = text.split_whitespace().nth(2).unwrap();
    jwd.data_dir.join("work").join(uid)
}

/// Starts `echo LINE; exec sleep 1000` for `client` and returns its id
/// and its keeper's pid once the line was written.
async fn start_sleeper(jwd: &Jwd, client: &jw::client::Client, line: &str) -> (JobId, i32) {
    let script = format!("echo {line}; exec sleep 1000");
    let id = client.start(req("sh", &["-c", &script])).await.unwrap();
    let mut s = client.logs(logs(id, true)).await.unwrap();
    assert!(matches!(s.next().await.unwrap(), Some(Event::Output(_))));
    (id, keeper_pid(&job_dir(jwd, id)))
}

/// The lines a job printing `n` numbered lines writes.
fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("line-{i}\n").into_bytes())
        .collect()
}

fn ticker(n: usize, code: i32) -> StartRequest {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do echo line-$i; i=$((i+1)); sleep 0.1; done; exit {code}"
    );
    req("sh", &["-c", &script])
}

/// A line every 100 ms until a file `stop` appears in its working
/// directory (the test makes it), then exit `code`.
fn ticker_until_stop(code: i32) -> StartRequest {
    let script = format!(
        "i=0; while [ ! -e stop ]; do echo line-$i; i=$((i+1)); sleep 0.1; done; exit {code}"
    );
    req("sh", &["-c", &script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_through_kill_9_of_jwd_and_a_restart() {
    let Some((mut jwd, data)) = Jwd::start_kept("keeper-kill9", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let done = alice
        .start(req("sh", &["-c", "seq 1 1000; echo bye >&2; exit 7"]))
        .await
        .unwrap();
    alice.wait(done).await.unwrap();
    // One line every 100 ms until told to stop, then exit 3: it prints
    // while no jwd is there, and runs until the new jwd has adopted it.
    let id = alice.start(ticker_until_stop(3)).await.unwrap();
    let mut s = alice.logs(logs(id, true)).await.unwrap();
    assert!(matches!(s.next().await.unwrap(), Some(Event::Output(_))));
    let keeper = keeper_pid(&job_dir(&jwd, id));
    drop((s, alice));
    jwd.kill9();
    // While no jwd is there the job goes on and its output lands on disk.
    let stdout = job_dir(&jwd, id).join("stdout");
    let before = std::fs::metadata(&stdout).unwrap().len();
    let mut grew = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if std::fs::metadata(&stdout).unwrap().len() > before {
            grew = true;
            break;
        }
    }
    assert!(grew, "the job's output did not grow while jwd was away");
    assert!(alive(keeper), "the keeper died with jwd");

    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    assert!(again.log().contains("adopted=1"), "{}", again.log());
    let alice = again.client("alice").await;
    let info = alice.status(id).await.unwrap();
    assert_eq!(info.state, JobState::Running, "{info:?}");
    assert!(info.usage.pids_current > 0, "live figures: {info:?}");
    std::fs::write(work_dir(&again, id).join("stop"), b"").unwrap();
    let end = alice.wait(id).await.unwrap();
    assert_eq!(
        (end.state, end.exit_code),
        (JobState::Exited, Some(3)),
        "{end:?}"
    );
    let (out, err, _) = collect(alice.logs(logs(id, false)).await.unwrap()).await;
    let n = out.iter().filter(|b| **b == b'\n').count();
    assert!(n > 1, "{n} lines");
    assert_eq!(out, lines(n), "every line once, in order");
    assert_eq!(out.len() as u64, end.output.stdout_bytes);
    assert!(err.is_empty());
    // The job that had ended before the crash is as it was.
    let d = alice.status(done).await.unwrap();
    assert_eq!((d.state, d.exit_code), (JobState::Exited, Some(7)));
    let (out, err, _) = collect(alice.logs(logs(done, false)).await.unwrap()).await;
    let seq: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out, seq.into_bytes());
    assert_eq!(err, b"bye\n");
    // Nothing of the job is left once it has ended.
    gone(keeper).await;
    assert!(
        again.cgroups_left().is_empty(),
        "{:?}",
        again.cgroups_left()
    );
    drop(again);
    drop(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_and_stop_work_on_an_adopted_job() {
    let Some((mut jwd, data)) = Jwd::start_kept("keeper-follow", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let id = alice.start(ticker(1_000_000, 0)).await.unwrap();
    let mut s = alice.logs(logs(id, true)).await.unwrap();
    assert!(matches!(s.next().await.unwrap(), Some(Event::Output(_))));
    drop((s, alice));
    jwd.kill9();
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    let alice = again.client("alice").await;
    // bob cannot see, stop or read alice's adopted job.
    let bob = again.client("bob").await;
    assert!(bob.status(id).await.is_err());
    assert!(bob.stop(id, 0).await.is_err());
    let refused = match bob.logs(logs(id, true)).await {
        Ok(mut s) => s.next().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "bob read alice's adopted job");
    // A follower of the adopted job sees new lines as they come, and the
    // end when it is stopped.
    let follower = tokio::spawn(collect(alice.logs(logs(id, true)).await.unwrap()));
    let before = alice.status(id).await.unwrap().output.stdout_bytes;
    let mut grew = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if alice.status(id).await.unwrap().output.stdout_bytes > before {
            grew = true;
            break;
        }
    }
    assert!(grew, "an adopted job's progress is not reported");
    let stopped = alice.stop(id, 500).await.unwrap();
    assert!(stopped.stopped);
    assert_eq!(stopped.signal, Some(libc::SIGTERM), "{stopped:?}");
    let (out, _, end) = follower.await.unwrap();
    assert_eq!(end.state, JobState::Exited);
    assert_eq!(out.len() as u64, end.output.stdout_bytes);
    let n = out.iter().filter(|b| **b == b'\n').count();
    assert_eq!(out, lines(n), "every line once, in order");
    drop(again);
    drop(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_while_jwd_is_away_keeps_its_exit_code_and_output() {
    let Some((mut jwd, data)) = Jwd::start_kept("keeper-away", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let id = alice
        .start(req(
            "sh",
            &[
                "-c",
                "echo first; while [ ! -e go ]; do sleep 0.05; done; echo last >&2; exit 5",
            ],
        ))
        .await
        .unwrap();
    let keeper = keeper_pid(&job_dir(&jwd, id));
    drop(alice);
    jwd.kill9();
    // Only now, with no jwd there, does it end.
    std::fs::write(work_dir(&jwd, id).join("go"), b"").unwrap();
    gone(keeper).await;
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    assert!(again.log().contains("ended_meanwhile=1"), "{}", again.log());
    let alice = again.client("alice").await;
    let info = alice.status(id).await.unwrap();
    assert_eq!(
        (info.state, info.exit_code),
        (JobState::Exited, Some(5)),
        "{info:?}"
    );
    let (out, err, _) = collect(alice.logs(logs(id, true)).await.unwrap()).await;
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"first\n"[..], &b"last\n"[..])
    );
    assert!(
        again.cgroups_left().is_empty(),
        "{:?}",
        again.cgroups_left()
    );
    drop(again);
    drop(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_keeper_is_lost_and_its_output_kept() {
    let Some(jwd) = Jwd::start("keeper-killed", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let (id, keeper) = start_sleeper(&jwd, &alice, "before").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let end = alice.wait(id).await.unwrap();
    assert_eq!(end.state, JobState::Lost, "{end:?}");
    assert!(
        end.error.as_deref().unwrap_or("").contains("keeper"),
        "{end:?}"
    );
    let (out, _, _) = collect(alice.logs(logs(id, false)).await.unwrap()).await;
    assert_eq!(out, b"before\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_jobs_on_exit_leaves_jobs_for_the_next_jwd() {
    let Some((mut jwd, data)) = Jwd::start_kept("keeper-upgrade", &["--keep-jobs-on-exit"]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let id = alice.start(req("sleep", &["1000"])).await.unwrap();
    let keeper = keeper_pid(&job_dir(&jwd, id));
    drop(alice);
    let (status, jwd) = tokio::task::spawn_blocking(move || (jwd.terminate(), jwd))
        .await
        .unwrap();
    assert!(status.success(), "jwd exited with {status}");
    assert!(alive(keeper), "the job was stopped at exit");
    // Without the flag, the next jwd stops its jobs at exit as before.
    let again = Jwd::start_with(
        &jwd.data_dir,
        &jwd.cgroup_name,
        &["--shutdown-grace", "200ms"],
    );
    let alice = again.client("alice").await;
    assert_eq!(alice.status(id).await.unwrap().state, JobState::Running);
    drop(alice);
    let mut again = again;
    let status = tokio::task::spawn_blocking(move || again.terminate())
        .await
        .unwrap();
    assert!(status.success());
    gone(keeper).await;
    let last = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    let info = last.client("alice").await.status(id).await.unwrap();
    assert!(info.stopped && info.state == JobState::Exited, "{info:?}");
    drop(last);
    drop(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_running_jobs_are_all_adopted() {
    const JOBS: usize = 100;
    let Some((mut jwd, data)) = Jwd::start_kept("keeper-many", &["--max-jobs-per-user", "1000"])
    else {
        return;
    };
    let alice = jwd.client("alice").await;
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let script = format!("echo job-{i}; exec sleep 1000");
        ids.push(alice.start(req("sh", &["-c", &script])).await.unwrap());
    }
    drop(alice);
    jwd.kill9();
    let again = Jwd::start_with(
        &jwd.data_dir,
        &jwd.cgroup_name,
        &["--shutdown-grace", "100ms"],
    );
    assert!(
        again.log().contains(&format!("adopted={JOBS}")),
        "{}",
        again.log()
    );
    let alice = again.client("alice").await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(alice.status(*id).await.unwrap().state, JobState::Running);
        let (out, _, _) = collect(alice.logs(logs(*id, false)).await.unwrap()).await;
        assert_eq!(out, format!("job-{i}\n").into_bytes());
    }
    // A new job does not get the uid of an adopted one.
    let new = alice.start(req("id", &["-u"])).await.unwrap();
    alice.wait(new).await.unwrap();
    let (uid, _, _) = collect(alice.logs(logs(new, false)).await.unwrap()).await;
    let uid: u32 = String::from_utf8(uid).unwrap().trim().parse().unwrap();
    for id in &ids {
        let text = std::fs::read_to_string(job_dir(&again, *id).join(jw::job::keeper::KEEPER_FILE))
            .unwrap();
        let adopted_uid: u32 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_ne!(uid, adopted_uid, "a new job got a running job's uid");
    }
    drop(alice);
    drop(again);
    drop(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_job_of_a_capped_owner_keeps_what_its_owner_has_room_for() {
    let flags = ["--max-output-per-user", "12M"];
    let Some((mut jwd, data)) = Jwd::start_kept("keeper-grant", &flags) else {
        return;
    };
    let alice = jwd.client("alice").await;
    // 8 MiB once told to go (after the restart), then 8 MiB more: the
    // first fits in alice's 12 MiB, the rest only in part.
    let script = "while [ ! -e go ]; do sleep 0.05; done; \
                  head -c 8388608 /dev/zero; echo; head -c 8388608 /dev/zero";
    let id = alice.start(req("sh", &["-c", script])).await.unwrap();
    drop(alice);
    jwd.kill9();
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &flags);
    let alice = again.client("alice").await;
    std::fs::write(work_dir(&again, id).join("go"), b"").unwrap();
    let end = alice.wait(id).await.unwrap();
    assert_eq!(end.exit_code, Some(0), "{end:?}");
    let o = end.output;
    assert_eq!(o.stdout_bytes, 12 << 20, "{o:?}");
    assert_eq!(o.stdout_bytes + o.dropped_bytes, (16 << 20) + 1, "{o:?}");
    // The room is alice's: full now, and back once the job is removed.
    assert!(alice.start(req("true", &[])).await.is_err());
    alice.remove(id).await.unwrap();
    let next = alice.start(req("echo", &["room"])).await.unwrap();
    assert_eq!(alice.wait(next).await.unwrap().output.stdout_bytes, 5);
    drop(alice);
    drop(again);
    drop(data);
}

/// Where a v1 memory controller is there (the hybrid layout), the keeper
/// leaves the job's memory cgroup once the command runs: the output it
/// writes is charged to jw's subtree, so a removed job's memory cgroup is
/// not kept alive by its output's page cache. The command stays in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keepers_output_is_not_charged_to_the_jobs_memory_cgroup() {
    let Some(jwd) = Jwd::start("keeper-memcg", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let (id, keeper) = start_sleeper(&jwd, &alice, "hi").await;
    let cgroups = std::fs::read_to_string(format!("/proc/{keeper}/cgroup")).unwrap();
    let memory = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, path)| path.to_string()));
    let job = id.to_string();
    match memory {
        Some(path) => {
            assert!(!path.contains(&job), "keeper in the job's memcg: {path}");
            assert!(path.ends_with(&jwd.cgroup_name), "{path}");
            // The command is in the job's memory cgroup, below it.
            let procs = jw::job::cgroup::pid_cgroup_dirs(keeper as u32)
                .unwrap()
                .into_iter()
                .find(|d| d.ends_with(path.trim_start_matches('/')))
                .map(|d| d.join(&job).join("cgroup.procs"))
                .unwrap();
            let listed = std::fs::read_to_string(&procs).unwrap();
            assert_eq!(listed.lines().count(), 1, "{procs:?}: {listed}");
        }
        // cgroup v2: memory is not a controller of its own; the keeper
        // stays in the job's leaf with everything else.
        None => assert!(cgroups.contains(&job), "{cgroups}"),
    }
    alice.stop(id, 0).await.unwrap();
}
