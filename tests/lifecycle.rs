//! How a job lives (protocol version 3), through jwd's real binary and
//! real TLS: names unique per owner (until removed, across a restart),
//! timeouts (and `--max-timeout`), jobs tied to the clients that hold
//! them, `Resolve` by name and id prefix within what the caller may see,
//! and a command that is not there apart from one that cannot run.

mod common;

use std::time::Duration;

use common::raw::Raw;
use common::Jwd;
use jw::client::{Client, ClientError, Stream};
use jw::protocol::{
    ClientMessage, ErrorCode, Event, JobId, JobInfo, JobState, Request, ServerMessage, StartJob,
    StartOptions, Stdin,
};

/// Generous: every wait here ends with an event long before.
const BOUND: Duration = Duration::from_secs(120);

fn named(name: &str) -> StartOptions {
    StartOptions {
        name: Some(name.into()),
        ..StartOptions::default()
    }
}

fn tied(tie_ms: u32) -> StartOptions {
    StartOptions {
        tie_ms: Some(tie_ms),
        ..StartOptions::default()
    }
}

fn start_job(command: &str, args: &[&str], options: StartOptions) -> Request {
    Request::StartJob(Box::new(StartJob {
        spec: common::start_req(command, args),
        stdin: Stdin::Null,
        options,
    }))
}

async fn start(
    c: &Client,
    command: &str,
    args: &[&str],
    options: StartOptions,
) -> Result<JobId, ClientError> {
    let mut s = c.open(start_job(command, args, options)).await?;
    match s.next().await? {
        Some(Event::Started { job }) => Ok(job),
        other => panic!("expected Started, got {other:?}"),
    }
}

async fn resolve(c: &Client, name: &str) -> Result<JobId, ClientError> {
    let mut s = c.open(Request::Resolve { name: name.into() }).await?;
    match s.next().await? {
        Some(Event::Resolved { job }) => Ok(job),
        other => panic!("expected Resolved, got {other:?}"),
    }
}

/// A `Hold` stream on `job` (open until cancelled or its client goes).
async fn hold(c: &Client, job: JobId) -> Stream {
    c.open(Request::Hold { job }).await.unwrap()
}

/// The job's final status (waiting at most `BOUND`).
async fn ended(c: &Client, job: JobId) -> JobInfo {
    tokio::time::timeout(BOUND, c.wait(job))
        .await
        .expect("the job ends in time")
        .unwrap()
}

fn code(r: Result<JobId, ClientError>) -> (Option<ErrorCode>, String) {
    let e = r.unwrap_err();
    (e.code(), e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_per_owner_until_removed_and_across_restarts() {
    let Some((mut jwd, _data)) = Jwd::start_kept("names", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let bob = jwd.client("bob").await;
    let web = start(&alice, "true", &[], named("web")).await.unwrap();
    let info = ended(&alice, web).await;
    assert_eq!(info.name.as_deref(), Some("web"));
    // What it ran with, the server's defaults filled in.
    assert_eq!(info.limits.memory_bytes, Some(jw::job::DEFAULT_MEMORY));
    assert_eq!(info.limits.pids, Some(jw::job::DEFAULT_PIDS));
    assert_eq!(info.limits.output_bytes, Some(1 << 30));
    assert_eq!((info.timeout_ms, info.timed_out), (None, false));

    // An ended job keeps its name until it is removed.
    let (c, text) = code(start(&alice, "true", &[], named("web")).await);
    assert_eq!(c, Some(ErrorCode::ALREADY_EXISTS), "{text}");
    assert!(text.contains(&web.to_string()), "{text}");
    // Names are per owner.
    let bobs = start(&bob, "true", &[], named("web")).await.unwrap();
    assert_ne!(bobs, web);
    assert_eq!(resolve(&alice, "web").await.unwrap(), web);
    assert_eq!(resolve(&bob, "web").await.unwrap(), bobs);

    let long = "x".repeat(65);
    for bad in ["", "-web", ".web", "a b", "a/b", "dead", "0123-4567", &long] {
        let (c, text) = code(start(&alice, "true", &[], named(bad)).await);
        assert_eq!(c, Some(ErrorCode::BAD_REQUEST), "{bad:?}: {text}");
        assert!(text.contains("name"), "{text}");
    }

    // A restarted jwd knows the names again.
    drop((alice, bob));
    jwd.kill9();
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    let alice = again.client("alice").await;
    assert_eq!(resolve(&alice, "web").await.unwrap(), web);
    assert_eq!(
        alice.status(web).await.unwrap().name.as_deref(),
        Some("web")
    );
    let (c, text) = code(start(&alice, "true", &[], named("web")).await);
    assert_eq!(c, Some(ErrorCode::ALREADY_EXISTS), "{text}");
    alice.remove(web).await.unwrap();
    let (c, _) = code(resolve(&alice, "web").await);
    assert_eq!(c, Some(ErrorCode::NOT_FOUND));
    let next = start(&alice, "true", &[], named("web")).await.unwrap();
    assert_ne!(next, web);
    assert_eq!(resolve(&alice, "web").await.unwrap(), next);
    ended(&alice, next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_the_job_with_its_grace() {
    let Some(jwd) = Jwd::start("timeout", &["--max-timeout", "60s"]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let timeout = |ms: u64, grace_ms: Option<u32>| StartOptions {
        timeout_ms: Some(ms),
        grace_ms,
        ..StartOptions::default()
    };
    let id = start(&alice, "sleep", &["30"], timeout(1000, None))
        .await
        .unwrap();
    let end = ended(&alice, id).await;
    assert!(end.timed_out && end.stopped, "{end:?}");
    assert_eq!(
        (end.signal, end.timeout_ms),
        (Some(libc::SIGTERM), Some(1000))
    );
    assert!(alice.status(id).await.unwrap().timed_out);

    // One that ignores SIGTERM is killed at the end of its grace.
    let stubborn = start(
        &alice,
        "sh",
        &["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
        timeout(1000, Some(500)),
    )
    .await
    .unwrap();
    let end = ended(&alice, stubborn).await;
    assert!(end.timed_out, "{end:?}");
    assert_eq!(end.signal, Some(libc::SIGKILL), "{end:?}");

    // --max-timeout: a longer one is refused in the user's units, and a
    // job without one gets it.
    let (c, text) = code(start(&alice, "true", &[], timeout(120_000, None)).await);
    assert_eq!(c, Some(ErrorCode::BAD_REQUEST), "{text}");
    assert!(text.contains("2 min") && text.contains("60 s"), "{text}");
    let capped = start(&alice, "sleep", &["1000"], StartOptions::default())
        .await
        .unwrap();
    assert_eq!(alice.status(capped).await.unwrap().timeout_ms, Some(60_000));
    alice.stop(capped, 0).await.unwrap();
    let (c, text) = code(start(&alice, "true", &[], timeout(0, None)).await);
    assert_eq!(c, Some(ErrorCode::BAD_REQUEST), "{text}");
    // The grace has Stop's ceiling.
    let (c, text) = code(start(&alice, "true", &[], timeout(1000, Some(3_600_001))).await);
    assert_eq!(c, Some(ErrorCode::BAD_REQUEST), "{text}");
    assert!(text.contains("grace"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tied_jobs_live_while_held_and_are_stopped_once_not() {
    let Some(jwd) = Jwd::start("tie", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let sleep = ["1000"];
    // Held twice; one of the holds goes.
    let held = start(&alice, "sleep", &sleep, tied(1000)).await.unwrap();
    let _first = hold(&alice, held).await;
    let second = hold(&alice, held).await;
    // Held on a connection that is dropped; and one held again at once on
    // another connection after the same drop.
    let dropped = start(&alice, "sleep", &sleep, tied(1000)).await.unwrap();
    let again = start(&alice, "sleep", &sleep, tied(5000)).await.unwrap();
    let mut raw = Raw::new(&jwd, "alice", 3).await;
    for (stream, job) in [(1, dropped), (3, again)] {
        raw.send(&ClientMessage::Request {
            stream,
            request: Request::Hold { job },
        })
        .await;
    }
    // Each connection has taken its holds before it answers a status.
    assert_eq!(alice.status(held).await.unwrap().state, JobState::Running);
    raw.send(&ClientMessage::Request {
        stream: 5,
        request: Request::Status { job: dropped },
    })
    .await;
    match raw.next().await {
        Some(ServerMessage::Event {
            stream: 5,
            event: Event::Status(_),
        }) => {}
        other => panic!("expected the status, got {other:?}"),
    }
    let mut second = second;
    second.cancel().await.unwrap();
    assert_eq!(
        second.next().await.unwrap_err().code(),
        Some(ErrorCode::CANCELLED)
    );
    drop(raw);
    let _reheld = hold(&alice, again).await;

    let end = ended(&alice, dropped).await;
    assert!(end.stopped && !end.timed_out, "{end:?}");
    assert_eq!(end.signal, Some(libc::SIGTERM));
    // Never held: stopped too, counted from its start.
    let never = start(&alice, "sleep", &sleep, tied(1000)).await.unwrap();
    let end = ended(&alice, never).await;
    assert!(end.stopped, "{end:?}");

    // By now the ties of the held jobs have passed several times over.
    for job in [held, again] {
        let info = alice.status(job).await.unwrap();
        assert!(info.state == JobState::Running && !info.stopped, "{info:?}");
    }
    // An untied job is not stopped for want of holders, and Hold on it
    // is Wait.
    let free = start(&alice, "sleep", &["2"], StartOptions::default())
        .await
        .unwrap();
    let mut h = hold(&alice, free).await;
    match tokio::time::timeout(BOUND, h.next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(Event::End(info)) => assert_eq!(info.exit_code, Some(0), "{info:?}"),
        other => panic!("expected End, got {other:?}"),
    }

    // Only the owner may hold a job (admins neither).
    let bob = jwd.client("bob").await;
    let admin = jwd.client("admin").await;
    for other in [&bob, &admin] {
        let mut h = hold(other, held).await;
        assert_eq!(
            h.next().await.unwrap_err().code(),
            Some(ErrorCode::NOT_FOUND)
        );
    }
    for job in [held, again] {
        alice.stop(job, 0).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_jwd_goes_on_with_timeouts_and_ties() {
    let Some((mut jwd, _data)) = Jwd::start_kept("rearm", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let timed = start(
        &alice,
        "sleep",
        &["1000"],
        StartOptions {
            timeout_ms: Some(10_000),
            ..StartOptions::default()
        },
    )
    .await
    .unwrap();
    let tied_job = start(&alice, "sleep", &["1000"], tied(1000)).await.unwrap();
    let _h = hold(&alice, tied_job).await;
    let free = start(&alice, "sleep", &["1000"], StartOptions::default())
        .await
        .unwrap();
    drop((alice, _h));
    jwd.kill9();
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    assert!(again.log().contains("adopted=3"), "{}", again.log());
    let alice = again.client("alice").await;
    let end = ended(&alice, timed).await;
    assert!(end.timed_out, "{end:?}");
    assert!(
        again.log().contains("reached its timeout"),
        "the restarted jwd stopped it: {}",
        again.log()
    );
    let end = ended(&alice, tied_job).await;
    assert!(end.stopped && !end.timed_out, "{end:?}");
    let info = alice.status(free).await.unwrap();
    assert!(info.state == JobState::Running && !info.stopped, "{info:?}");
    alice.stop(free, 0).await.unwrap();
}

/// What `prefix` should resolve to among `ids`: the one job, or how many.
fn expected(ids: &[JobId], prefix: &str) -> Result<JobId, usize> {
    let bare = |s: &str| s.replace('-', "");
    let p = prefix.to_ascii_lowercase();
    let found: Vec<JobId> = ids
        .iter()
        .copied()
        .filter(|id| {
            let text = id.to_string();
            if p.contains('-') {
                text.starts_with(&p)
            } else {
                bare(&text).starts_with(&p)
            }
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        many => Err(many.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_finds_names_and_prefixes_the_caller_may_see() {
    let Some(jwd) = Jwd::start("resolve", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let bob = jwd.client("bob").await;
    let admin = jwd.client("admin").await;
    let build = start(&alice, "true", &[], named("build")).await.unwrap();
    ended(&alice, build).await;
    let text = build.to_string();
    let upper = text[..8].to_ascii_uppercase();
    for prefix in [
        &text[..4],
        &text[..8],
        &text[..13],
        &text,
        &text.replace('-', "")[..12],
        &upper,
    ] {
        assert_eq!(resolve(&alice, prefix).await.unwrap(), build, "{prefix}");
        assert_eq!(resolve(&admin, prefix).await.unwrap(), build, "{prefix}");
    }
    assert_eq!(resolve(&alice, "build").await.unwrap(), build);
    // Bob sees neither alice's job nor her names; names are the caller's
    // own, for admins too.
    for name in [&text[..8], "build"] {
        let (c, _) = code(resolve(&bob, name).await);
        assert_eq!(c, Some(ErrorCode::NOT_FOUND), "{name}");
    }
    let (c, _) = code(resolve(&admin, "build").await);
    assert_eq!(c, Some(ErrorCode::NOT_FOUND));
    let (c, text3) = code(resolve(&alice, &text[..3]).await);
    assert_eq!(c, Some(ErrorCode::NOT_FOUND));
    assert!(text3.contains("4 hex digits"), "{text3}");
    // Dashes only where the printed id has them.
    let (c, _) = code(resolve(&alice, &format!("{}-{}", &text[..4], &text[4..8])).await);
    assert_eq!(c, Some(ErrorCode::NOT_FOUND));

    // Jobs until two share their first four hex digits (a few hundred on
    // average; the bound is never reached in practice: a one in 10^13
    // chance).
    let mut ids = vec![build];
    let pair = 'found: {
        for _ in 0..3000 {
            let id = start(&alice, "true", &[], StartOptions::default())
                .await
                .unwrap();
            let four = id.to_string()[..4].to_string();
            if let Some(other) = ids.iter().find(|o| o.to_string()[..4] == four) {
                let other = *other;
                ids.push(id);
                break 'found (other, id, four);
            }
            ids.push(id);
        }
        panic!("no two of 3000 ids share a 4-digit prefix");
    };
    let (a, b, four) = pair;
    let (c, message) = code(resolve(&alice, &four).await);
    assert_eq!(c, Some(ErrorCode::AMBIGUOUS), "{message}");
    assert!(
        message.contains(&a.to_string()) && message.contains(&b.to_string()),
        "{message}"
    );
    assert!(message.contains("type more"), "{message}");
    for id in [a, b] {
        let eight = &id.to_string()[..8];
        match expected(&ids, eight) {
            Ok(one) => assert_eq!(resolve(&alice, eight).await.unwrap(), one),
            Err(_) => {
                let (c, _) = code(resolve(&alice, eight).await);
                assert_eq!(c, Some(ErrorCode::AMBIGUOUS));
            }
        }
        assert_eq!(resolve(&alice, &id.to_string()).await.unwrap(), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_is_not_found_and_one_that_cannot_run_is_exec_failed() {
    let Some(jwd) = Jwd::start("notfound", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    for missing in ["/no/such", "no-such-command-jw", "/etc/passwd/x"] {
        let (c, text) = code(start(&alice, missing, &[], StartOptions::default()).await);
        assert_eq!(c, Some(ErrorCode::COMMAND_NOT_FOUND), "{missing}: {text}");
    }
    // A script whose interpreter is missing exists: it cannot be run.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cases = [
        ("/etc/passwd", "Permission denied"),
        ("/etc", "is a directory"),
        (script.to_str().unwrap(), "interpreter"),
    ];
    for (command, words) in cases {
        let (c, text) = code(start(&alice, command, &[], StartOptions::default()).await);
        assert_eq!(c, Some(ErrorCode::EXEC_FAILED), "{command}: {text}");
        assert!(text.contains(words), "{command}: {text}");
    }
    // A version 2 session knows only exec_failed.
    let mut old = Raw::new(&jwd, "alice", 2).await;
    old.send(&ClientMessage::Request {
        stream: 1,
        request: Request::Start(common::start_req("/no/such", &[])),
    })
    .await;
    match old.next().await {
        Some(ServerMessage::Event {
            event: Event::Error(e),
            ..
        }) => assert_eq!(e.code, ErrorCode::EXEC_FAILED, "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
}
