//! Interactive jobs through the real `jw` and `jwd` binaries, real TLS:
//! input piped into `jw run -i`, a terminal with `jw run -it` (its size,
//! a resize, Ctrl-C typed, the local terminal restored), `jw kill`,
//! `jw stop` of an interactive job, `jw attach` and its detach keys.
//! Needs root (jobs).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::pty::{same_mode, Pty};
use common::{certs, Jwd};

fn jw_command(jwd: &Jwd, user: &str, args: &[&str]) -> Command {
    let c = certs();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jw"));
    cmd.args(args)
        .env("JW_ADDR", &jwd.addr)
        .env("JW_CA", c.join("server-ca.crt"))
        .env("JW_CERT", c.join(format!("{user}.crt")))
        .env("JW_KEY", c.join(format!("{user}.key")))
        .env_remove("TERM");
    cmd
}

fn jw(jwd: &Jwd, user: &str, args: &[&str]) -> Output {
    jw_command(jwd, user, args)
        .stdin(Stdio::null())
        .output()
        .expect("jw runs")
}

/// `jw ARGS` with `input` on its stdin.
fn jw_with_input(jwd: &Jwd, args: &[&str], input: &[u8]) -> Output {
    let mut child = jw_command(jwd, "alice", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jw runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // jw may end before it has read all of it (a job that stopped reading,
    // or no -i): the rest is refused, as in a shell pipeline.
    let writer = std::thread::spawn(move || match stdin.write_all(&input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The id of alice's only running job.
fn running_job(jwd: &Jwd) -> String {
    for _ in 0..600 {
        let out = jw(jwd, "alice", &["list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let running = list
            .as_array()
            .unwrap()
            .iter()
            .find(|job| job["state"] == "running");
        if let Some(job) = running {
            return job["id"].as_str().unwrap().to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no running job");
}

#[test]
fn piped_input_reaches_the_job_with_its_end_and_exit_code() {
    let Some(jwd) = Jwd::start("interactive-pipe", &[]) else {
        return;
    };
    let out = jw_with_input(&jwd, &["run", "-i", "--", "cat"], b"hello\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    let out = jw_with_input(
        &jwd,
        &["run", "-i", "--", "sh", "-c", "read x; exit $x"],
        b"7\n",
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    // A last line without its newline still ends: the terminal's end of
    // file is typed twice after a partial line.
    let out = jw_with_input(&jwd, &["run", "-it", "--", "cat"], b"abc");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("abc"),
        "{:?}",
        text(&out.stdout)
    );
    // Without -i the job's input is empty, whatever jw's is.
    let out = jw_with_input(&jwd, &["run", "--", "cat"], b"not sent\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "");
    // A job that stops reading early ends the input quietly (as in a
    // shell pipeline).
    let many: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let out = jw_with_input(&jwd, &["run", "-i", "--", "head", "-n", "2"], &many);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\n1\n");
}

#[test]
fn fifty_megabytes_of_input_arrive_byte_exact_in_bounded_server_memory() {
    let Some(jwd) = Jwd::start("interactive-50mb", &[]) else {
        return;
    };
    let data: Vec<u8> = (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let expected = {
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        text(&child.wait_with_output().unwrap().stdout)
    };
    let before = jwd.rss_anon();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        let pid = jwd.pid();
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(rss) = common::rss_anon_of(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let out = jw_with_input(&jwd, &["run", "-i", "--", "sha256sum"], &data);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).split_whitespace().next(),
        expected.split_whitespace().next()
    );
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    println!("jwd RssAnon: {before} bytes before, peak growth {growth} bytes for 50 MiB of input");
    assert!(
        growth < 16 << 20,
        "jwd grew {growth} bytes while 50 MiB went through it"
    );
}

#[test]
fn a_terminal_has_the_callers_size_follows_resizes_and_takes_ctrl_c() {
    let Some(jwd) = Jwd::start("interactive-tty", &[]) else {
        return;
    };
    let mut pty = Pty::spawn(
        &mut jw_command(
            &jwd,
            "alice",
            &["run", "-it", "--", "sh", "-c", "stty size"],
        ),
        33,
        101,
    );
    let before = pty.settings();
    let status = pty.wait();
    assert_eq!(status.code(), Some(0), "{}", pty.screen());
    assert!(pty.screen().contains("33 101"), "{:?}", pty.screen());
    assert!(
        same_mode(&before, &pty.settings()),
        "the terminal was not restored"
    );

    let script = "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done";
    let mut pty = Pty::spawn(
        &mut jw_command(&jwd, "alice", &["run", "-it", "--", "sh", "-c", script]),
        24,
        80,
    );
    let before = pty.settings();
    pty.expect("ready");
    assert!(
        !same_mode(&before, &pty.settings()),
        "jw -t puts the terminal in raw mode"
    );
    pty.resize(40, 120);
    pty.expect("40 120");
    // Ctrl-C is a byte for the job's terminal, which makes it SIGINT.
    pty.type_bytes(&[3]);
    let status = pty.wait();
    assert_eq!(status.code(), Some(128 + 2), "{}", pty.screen());
    assert!(
        same_mode(&before, &pty.settings()),
        "the terminal was not restored"
    );
}

#[test]
fn kill_sends_a_signal_to_the_owners_job_only() {
    let Some(jwd) = Jwd::start("interactive-kill", &[]) else {
        return;
    };
    let script = "trap 'echo got-usr1; exit 0' USR1; while :; do sleep 0.05; done";
    let out = jw(&jwd, "alice", &["start", "--", "sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let out = jw(&jwd, "bob", &["kill", "-s", "USR1", &id]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no such job"),
        "{}",
        text(&out.stderr)
    );
    let out = jw(&jwd, "alice", &["kill", "-s", "USR1", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = jw(&jwd, "alice", &["wait", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = jw(&jwd, "alice", &["logs", &id]);
    assert_eq!(text(&out.stdout), "got-usr1\n");
    let out = jw(&jwd, "alice", &["kill", "-s", "USR1", &id]);
    assert_ne!(out.status.code(), Some(0), "the job has ended");
}

#[test]
fn stop_ends_an_interactive_client_with_the_jobs_status_and_a_restored_terminal() {
    let Some(jwd) = Jwd::start("interactive-stop", &[]) else {
        return;
    };
    let mut pty = Pty::spawn(
        &mut jw_command(&jwd, "alice", &["run", "-it", "--", "sleep", "1000"]),
        24,
        80,
    );
    let before = pty.settings();
    let id = running_job(&jwd);
    let out = jw(&jwd, "alice", &["stop", "--grace", "0s", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = pty.wait();
    assert_eq!(status.code(), Some(128 + 9), "{}", pty.screen());
    assert!(
        same_mode(&before, &pty.settings()),
        "the terminal was not restored"
    );
}

#[test]
fn attach_types_into_a_running_job_and_detach_keys_leave_it_running() {
    let Some(jwd) = Jwd::start("interactive-attach", &[]) else {
        return;
    };
    let out = jw(
        &jwd,
        "alice",
        &["start", "-t", "--", "sh", "-c", "echo ready; exec cat"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    // Bob cannot attach to it.
    let out = jw(&jwd, "bob", &["attach", &id]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no such job"),
        "{}",
        text(&out.stderr)
    );

    let mut pty = Pty::spawn(&mut jw_command(&jwd, "alice", &["attach", &id]), 24, 80);
    let before = pty.settings();
    pty.type_bytes(b"first line\r");
    pty.expect("first line\r\nfirst line\r\n");
    // Ctrl-P Ctrl-Q: detached, the job runs on.
    pty.type_bytes(&[0x10, 0x11]);
    let status = pty.wait();
    assert_eq!(status.code(), Some(0), "{}", pty.screen());
    assert!(pty.screen().contains("detached"), "{:?}", pty.screen());
    assert!(
        same_mode(&before, &pty.settings()),
        "the terminal was not restored"
    );
    let out = jw(&jwd, "alice", &["status", &id]);
    assert!(
        text(&out.stdout).contains("running"),
        "{}",
        text(&out.stdout)
    );

    // Attached again: typing reaches the same cat; its end of input (^D)
    // ends it.
    let mut pty = Pty::spawn(&mut jw_command(&jwd, "alice", &["attach", &id]), 24, 80);
    pty.type_bytes(b"second\r");
    pty.expect("second\r\nsecond\r\n");
    pty.type_bytes(&[4]);
    let status = pty.wait();
    assert_eq!(status.code(), Some(0), "{}", pty.screen());
    let out = jw(&jwd, "alice", &["logs", &id]);
    assert_eq!(
        text(&out.stdout),
        "ready\r\nfirst line\r\nfirst line\r\nsecond\r\nsecond\r\n"
    );
}
