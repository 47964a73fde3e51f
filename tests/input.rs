//! A job's input through the engine against the real kernel: a pipe the
//! owner writes into (EOF included), a terminal in the job's own devpts
//! (its size before the command runs, a resize, Ctrl-C as a byte, the end
//! of input as the terminal's EOF character), signals to the command and
//! to every process, and the one-writer rule. Needs root; skips on a
//! laptop without it, fails under CI=true.

mod common;

use common::{engine, start_req};
use jw::job::JobError;
use jw::protocol::{JobState, OutputStream, Stdin, WindowSize};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_carries_input_and_its_end() {
    let Some(e) = engine("input-pipe") else {
        return;
    };
    let started = e
        .manager
        .start_with("alice", &start_req("sha256sum", &[]), Stdin::Pipe)
        .await
        .unwrap();
    let id = started.id;
    let input = e.manager.attach(id, Some("alice")).unwrap();
    assert!(!input.terminal());
    assert_eq!(input.offset(), 0);
    // One writer at a time; nobody else's.
    assert!(matches!(
        e.manager.attach(id, Some("alice")),
        Err(JobError::InputBusy(_))
    ));
    assert!(matches!(
        e.manager.attach(id, Some("bob")),
        Err(JobError::NotFound(_))
    ));
    // More than a pipe holds, so the writer waits for the job to read.
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    input.write_all(&data).await.unwrap();
    assert_eq!(input.offset(), data.len() as u64);
    assert_eq!(input.close().await.unwrap(), data.len() as u64);
    let job = e.manager.get(id, None).unwrap();
    let info = job.wait().await;
    assert_eq!(info.exit_code, Some(0), "{info:?}");
    let expected = {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    assert_eq!(e.read_output(id, OutputStream::Stdout), expected);
    // The input is gone with the job.
    assert!(matches!(
        e.manager.attach(id, Some("alice")),
        Err(JobError::Ended(_))
    ));
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_input_has_none_to_attach_to() {
    let Some(e) = engine("input-none") else {
        return;
    };
    let started = e
        .manager
        .start("alice", &start_req("sleep", &["1000"]))
        .await
        .unwrap();
    assert!(matches!(
        e.manager.attach(started.id, Some("alice")),
        Err(JobError::NoInput(_))
    ));
    e.manager
        .stop(started.id, None, std::time::Duration::ZERO)
        .await
        .unwrap();
    e.assert_clean();
}

/// Waits until the job's stdout holds `text`.
async fn wait_for_output(e: &common::Engine, id: jw::protocol::JobId, text: &str) -> String {
    let job = e.manager.get(id, None).unwrap();
    let mut info = job.subscribe();
    loop {
        let out = e.read_output(id, OutputStream::Stdout);
        if out.contains(text) {
            return out;
        }
        if !job.info().state.is_active() {
            panic!("the job ended without writing {text:?}; it wrote {out:?}");
        }
        // Output lands without a status change: look again shortly, or
        // at once if the job's state moves.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), info.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_has_its_size_resizes_and_takes_ctrl_c() {
    let Some(e) = engine("input-tty") else { return };
    let script = "stty size; tty; trap 'stty size' WINCH; trap 'echo got-int; exit 7' INT; \
                  echo ready; while :; do sleep 0.05; done";
    let size = WindowSize {
        rows: 33,
        cols: 101,
    };
    let started = e
        .manager
        .start_with(
            "alice",
            &start_req("sh", &["-c", script]),
            Stdin::Terminal(size),
        )
        .await
        .unwrap();
    let id = started.id;
    let input = e.manager.attach(id, Some("alice")).unwrap();
    assert!(input.terminal());
    let out = wait_for_output(&e, id, "ready").await;
    assert!(out.starts_with("33 101\r\n/dev/pts/0\r\n"), "{out:?}");
    input
        .resize(WindowSize {
            rows: 40,
            cols: 120,
        })
        .unwrap();
    wait_for_output(&e, id, "40 120").await;
    // Ctrl-C is a byte; the terminal makes it SIGINT for the foreground.
    input.write_all(&[3]).await.unwrap();
    let info = e.manager.get(id, None).unwrap().wait().await;
    assert_eq!(info.exit_code, Some(7), "{info:?}");
    assert!(e.read_output(id, OutputStream::Stdout).contains("got-int"));
    assert_eq!(info.output.stderr_bytes, 0, "one stream with a terminal");
    drop(input);
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_input_on_a_terminal_is_its_eof_character() {
    let Some(e) = engine("input-tty-eof") else {
        return;
    };
    let started = e
        .manager
        .start_with(
            "alice",
            &start_req("sh", &["-c", "cat; echo after-eof"]),
            Stdin::Terminal(WindowSize { rows: 24, cols: 80 }),
        )
        .await
        .unwrap();
    let input = e.manager.attach(started.id, Some("alice")).unwrap();
    input.write_all(b"typed\n").await.unwrap();
    assert_eq!(input.close().await.unwrap(), 6);
    let info = e.manager.get(started.id, None).unwrap().wait().await;
    assert_eq!(info.exit_code, Some(0), "{info:?}");
    let out = e.read_output(started.id, OutputStream::Stdout);
    // The terminal echoes the line, cat prints it, then EOF ends cat.
    assert_eq!(out, "typed\r\ntyped\r\nafter-eof\r\n");
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_command_or_every_process() {
    let Some(e) = engine("input-signal") else {
        return;
    };
    let script = "trap 'echo main-usr1' USR1; trap 'echo main-usr2' USR2; \
                  sh -c 'trap \"echo child-usr2; exit 0\" USR2; echo child-ready; while :; do sleep 0.05; done' & \
                  echo main-ready; while :; do sleep 0.05; done";
    let started = e
        .manager
        .start("alice", &start_req("sh", &["-c", script]))
        .await
        .unwrap();
    let id = started.id;
    wait_for_output(&e, id, "child-ready").await;
    wait_for_output(&e, id, "main-ready").await;
    assert!(matches!(
        e.manager.signal(id, Some("bob"), libc::SIGUSR1, false),
        Err(JobError::NotFound(_))
    ));
    assert!(matches!(
        e.manager.signal(id, Some("alice"), 0, false),
        Err(JobError::BadSignal(0))
    ));
    assert!(matches!(
        e.manager.signal(id, Some("alice"), 64, false),
        Err(JobError::BadSignal(64))
    ));
    let info = e
        .manager
        .signal(id, Some("alice"), libc::SIGUSR1, false)
        .unwrap();
    assert_eq!(info.state, JobState::Running);
    wait_for_output(&e, id, "main-usr1").await;
    e.manager
        .signal(id, Some("alice"), libc::SIGUSR2, true)
        .unwrap();
    wait_for_output(&e, id, "child-usr2").await;
    wait_for_output(&e, id, "main-usr2").await;
    e.manager.signal(id, None, libc::SIGKILL, false).unwrap();
    let info = e.manager.get(id, None).unwrap().wait().await;
    assert_eq!(info.signal, Some(libc::SIGKILL), "{info:?}");
    assert!(matches!(
        e.manager.signal(id, Some("alice"), libc::SIGUSR1, false),
        Err(JobError::Ended(_))
    ));
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_terminal_is_its_own_and_no_other_job_sees_it() {
    let Some(e) = engine("input-tty-own") else {
        return;
    };
    let size = Stdin::Terminal(WindowSize { rows: 24, cols: 80 });
    // Alice's session, open while bob looks around.
    let alice = e
        .manager
        .start_with(
            "alice",
            &start_req("sh", &["-c", "echo alice-ready; exec cat"]),
            size,
        )
        .await
        .unwrap();
    wait_for_output(&e, alice.id, "alice-ready").await;
    let look = "ls -a -1 /dev/pts; ls -l /dev/pts/0; echo done";
    let bob = e
        .manager
        .start_with("bob", &start_req("sh", &["-c", look]), size)
        .await
        .unwrap();
    let info = e.manager.get(bob.id, None).unwrap().wait().await;
    assert_eq!(info.exit_code, Some(0), "{info:?}");
    let out = e.read_output(bob.id, OutputStream::Stdout);
    let names: Vec<&str> = out
        .lines()
        .take_while(|l| !l.starts_with("crw"))
        .map(str::trim)
        .collect();
    assert_eq!(names, [".", "..", "0", "ptmx"], "{out:?}");
    // The slave belongs to bob's job user, not root and not alice's.
    assert!(!out.contains(" root "), "{out:?}");
    // A job without a terminal has no devpts at all.
    let plain = e
        .manager
        .start(
            "bob",
            &start_req("sh", &["-c", "ls /dev/pts /dev/ptmx; exit 0"]),
        )
        .await
        .unwrap();
    e.manager.get(plain.id, None).unwrap().wait().await;
    let err = e.read_output(plain.id, OutputStream::Stderr);
    assert!(err.contains("No such file"), "{err:?}");
    // Bob cannot reach alice's input nor signal her job.
    assert!(matches!(
        e.manager.attach(alice.id, Some("bob")),
        Err(JobError::NotFound(_))
    ));
    assert!(matches!(
        e.manager.signal(alice.id, Some("bob"), libc::SIGKILL, true),
        Err(JobError::NotFound(_))
    ));
    e.manager
        .stop(alice.id, None, std::time::Duration::ZERO)
        .await
        .unwrap();
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_outlives_its_jobs_closed_descriptors_and_its_pool_is_capped() {
    let Some(e) = engine("input-tty-hold") else {
        return;
    };
    let size = Stdin::Terminal(WindowSize { rows: 24, cols: 80 });
    // The job closes every descriptor of its terminal, then opens it
    // again: what it writes then is kept (the keeper holds the terminal).
    let script = "grep -o 'devpts.*max=[0-9]*' /proc/self/mountinfo | grep -o 'max=[0-9]*'; \
                  echo before; exec 0<&- 1>&- 2>&-; sleep 0.1; echo later > /dev/tty";
    let started = e
        .manager
        .start_with("alice", &start_req("sh", &["-c", script]), size)
        .await
        .unwrap();
    let info = e.manager.get(started.id, None).unwrap().wait().await;
    assert_eq!(info.exit_code, Some(0), "{info:?}");
    let out = e.read_output(started.id, OutputStream::Stdout);
    assert_eq!(out, "max=16\r\nbefore\r\nlater\r\n");
    e.assert_clean();
}
