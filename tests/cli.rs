//! `jw` end to end: the real jw and jwd binaries. Needs root (jobs).

mod common;

use common::{certs, Jwd};
use std::process::{Command, Output, Stdio};

fn jw(jwd: &Jwd, user: &str, args: &[&str]) -> Output {
    jw_env(&jwd.addr, user, args)
}

fn jw_env(addr: &str, user: &str, args: &[&str]) -> Output {
    let c = certs();
    Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(args)
        .env("JW_ADDR", addr)
        .env("JW_CA", c.join("server-ca.crt"))
        .env("JW_CERT", c.join(format!("{user}.crt")))
        .env("JW_KEY", c.join(format!("{user}.key")))
        .stdin(Stdio::null())
        .output()
        .expect("jw runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_separates_streams_and_exits_with_the_jobs_code() {
    let Some(jwd) = Jwd::start("cli_run", &[]) else {
        return;
    };
    let out = jw(
        &jwd,
        "alice",
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "to-out\n");
    assert_eq!(text(&out.stderr), "to-err\n");
    let out = jw(&jwd, "alice", &["run", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15), "{}", text(&out.stderr));
    let out = jw(
        &jwd,
        "alice",
        &[
            "run",
            "--memory",
            "32M",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=256M",
            "count=1",
        ],
    );
    assert_eq!(out.status.code(), Some(128 + 9));
    assert!(
        text(&out.stderr).contains("out of memory"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn start_status_logs_wait_stop_rm() {
    let Some(jwd) = Jwd::start("cli_lifecycle", &[]) else {
        return;
    };
    let out = jw(
        &jwd,
        "alice",
        &[
            "start",
            "--",
            "sh",
            "-c",
            "echo 0123456789; sleep 0.5; echo more; exit 4",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 36, "start prints only the id: {id:?}");

    // Follow while it runs; then wait gives the exit code.
    let follow = jw(&jwd, "alice", &["logs", "-f", &id]);
    assert_eq!(text(&follow.stdout), "0123456789\nmore\n");
    assert_eq!(jw(&jwd, "alice", &["wait", &id]).status.code(), Some(4));
    let from = jw(&jwd, "alice", &["logs", "--from", "5", "--stdout", &id]);
    assert_eq!(text(&from.stdout), "56789\nmore\n");

    let json = jw(&jwd, "alice", &["status", "--json", &id]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status --json is JSON");
    for key in [
        "id",
        "owner",
        "command",
        "state",
        "exit_code",
        "signal",
        "oom_killed",
        "stopped",
        "started_at",
        "ended_at",
        "usage",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["exit_code"], 4);
    assert_eq!(v["state"], "exited");
    assert_eq!(v["owner"], "alice");

    let table = jw(&jwd, "alice", &["status", &id]);
    assert!(text(&table.stdout).contains("exited with code 4"));
    let list = jw(&jwd, "alice", &["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let plain = jw(&jwd, "alice", &["list"]);
    assert!(text(&plain.stdout).lines().nth(1).unwrap().starts_with(&id));

    let sleeper = text(&jw(&jwd, "alice", &["start", "sleep", "1000"]).stdout)
        .trim()
        .to_string();
    let stop = jw(&jwd, "alice", &["stop", "--grace", "1s", &sleeper]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(
        text(&stop.stderr).contains("stopped"),
        "{}",
        text(&stop.stderr)
    );
    let rm = jw(&jwd, "alice", &["rm", &id]);
    assert!(rm.status.success());
    let gone = jw(&jwd, "alice", &["status", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        text(&gone.stderr).contains("no such job"),
        "{}",
        text(&gone.stderr)
    );
}

#[test]
fn errors_name_the_cause_and_the_fix() {
    let Some(jwd) = Jwd::start("cli_errors", &[]) else {
        return;
    };
    let id = text(&jw(&jwd, "alice", &["start", "sleep", "1000"]).stdout)
        .trim()
        .to_string();

    let cases: Vec<(Output, i32, &str)> = vec![
        (
            jw_env("127.0.0.1:1", "alice", &["ls"]),
            255,
            "is jwd running",
        ),
        (
            jw(&jwd, "nobody-has-this-cert", &["ls"]),
            255,
            "cannot read",
        ),
        (jw(&jwd, "rogue", &["ls"]), 255, "rejected"),
        (jw(&jwd, "expired", &["ls"]), 255, "rejected"),
        (jw(&jwd, "bob", &["status", &id]), 1, "no such job"),
        (jw(&jwd, "alice", &["ls", "--all"]), 1, "admin"),
        (
            jw(&jwd, "alice", &["start", "--memory", "1", "--", "true"]),
            1,
            "memory",
        ),
        (
            jw(&jwd, "alice", &["start", "--memory", "lots", "--", "true"]),
            2,
            "not a size",
        ),
        (
            jw(&jwd, "alice", &["start", "--", "/no/such/binary"]),
            127,
            "/no/such/binary",
        ),
        (jw(&jwd, "alice", &["status", "not-an-id"]), 1, "no job"),
        (jw(&jwd, "alice", &["frobnicate"]), 2, "unrecognized"),
    ];
    for (out, code, needle) in cases {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{needle}: {err}");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    let admin = jw(&jwd, "admin", &["ls", "--all"]);
    assert!(text(&admin.stdout).contains(&id));
    jw(&jwd, "admin", &["stop", "--grace", "0s", &id]);
}

#[test]
fn certs_init_makes_a_pki_jwd_accepts() {
    if !common::require_root("certs_init") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(["certs", "init", "--out"])
        .arg(&pki)
        .args(["--user", "carol", "--admin", "dave"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    for key in [
        "server.key",
        "carol.key",
        "dave.key",
        "client-ca.key",
        "server-ca.key",
    ] {
        let mode = std::fs::metadata(pki.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // Refuses to overwrite.
    let again = Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(["certs", "init", "--out"])
        .arg(&pki)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"));

    let data = tempfile::tempdir().unwrap();
    let mut jwd = Command::new(env!("CARGO_BIN_EXE_jwd"))
        .args(["--listen", "127.0.0.1:0", "--cgroup-name"])
        .arg(format!("jwtest-pki-{}", std::process::id()))
        .arg("--cert")
        .arg(pki.join("server.crt"))
        .arg("--key")
        .arg(pki.join("server.key"))
        .arg("--client-ca")
        .arg(pki.join("client-ca.crt"))
        .arg("--data-dir")
        .arg(data.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = jwd.stderr.take().unwrap();
    let addr = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        loop {
            let line = lines.next().expect("jwd prints its address").unwrap();
            if let Some(a) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
            {
                std::thread::spawn(move || for _ in lines {});
                break a.to_string();
            }
        }
    };
    let run = |user: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_jw"))
            .args(args)
            .env("JW_ADDR", &addr)
            .env("JW_CA", pki.join("server-ca.crt"))
            .env("JW_CERT", pki.join(format!("{user}.crt")))
            .env("JW_KEY", pki.join(format!("{user}.key")))
            .output()
            .unwrap()
    };
    let out = run("carol", &["run", "echo", "hi"]);
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert!(run("dave", &["ls", "--all"]).status.success());
    assert!(!run("carol", &["ls", "--all"]).status.success());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(jwd.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = jwd.wait().unwrap();
    assert!(status.success());
}

#[test]
fn completions_and_help() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_jw"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("jw"), "{shell}");
    }
    for bin in [
        env!("CARGO_BIN_EXE_jw"),
        env!("CARGO_BIN_EXE_jwd"),
        env!("CARGO_BIN_EXE_jw-load"),
    ] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert!(out.status.success());
    }
}

#[test]
fn jw_init_run_by_hand_explains_itself_and_does_nothing() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jw-init"))
        .args([
            "jw-init/1",
            "0",
            "0",
            "net",
            "h",
            "/",
            "0",
            "1",
            "/bin/true",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not meant to be run by hand"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn jwd_refuses_a_key_others_can_read_and_names_the_fix() {
    if !common::require_root("key_mode") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    std::fs::copy(certs().join("server.key"), &key).unwrap();
    let start = |key: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_jwd"))
            .args(["--listen", "127.0.0.1:0", "--cgroup-name"])
            .arg(format!("jwtest-keymode-{}", std::process::id()))
            .arg("--cert")
            .arg(certs().join("server.crt"))
            .arg("--key")
            .arg(key)
            .arg("--client-ca")
            .arg(certs().join("client-ca.crt"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for (mode, who) in [(0o644, "every user"), (0o640, "its group")] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = start(&key);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(who) && err.contains("chmod 600"), "{err}");
    }
    let out = start(&dir.path().join("missing.key"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot read") && err.contains("missing.key"),
        "{err}"
    );
}

#[test]
fn list_and_status_escape_what_the_user_chose() {
    let Some(jwd) = Jwd::start("cli_escape", &[]) else {
        return;
    };
    // A command line that would forge a table row and recolour the
    // terminal of whoever lists it (an admin), and split a character.
    let hostile =
        "x\nID OWNER forged\u{1b}[31m\u{202e}\u{2028}\u{200b}éééééééééééééééééééééééééééééééééééé";
    let out = jw(
        &jwd,
        "alice",
        &["start", "--", "/bin/true", "two words", hostile],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    jw(&jwd, "alice", &["wait", &id]);
    for args in [vec!["list", "--all"], vec!["status", &id]] {
        let out = jw(&jwd, "admin", &args);
        let shown = text(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            !shown.contains(['\u{1b}', '\u{202e}', '\u{2028}', '\u{200b}']),
            "{shown:?}"
        );
        assert!(!shown.contains("\nID OWNER forged"), "{shown:?}");
        assert!(
            shown.contains("x\\nID OWNER forged\\u{1b}[31m"),
            "{shown:?}"
        );
        // One argument with a space reads back as one.
        assert!(shown.contains("/bin/true 'two words' "), "{shown:?}");
    }
}

/// jw with no server and no certificate settings: only its command line
/// counts.
fn jw_alone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(args)
        .env_remove("JW_ADDR")
        .env_remove("JW_CA")
        .env_remove("JW_CERT")
        .env_remove("JW_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("jw runs")
}

#[test]
fn options_before_the_command_are_jws_and_usage_errors_exit_2() {
    let id = "6f1c2a9e-3b4d-4f0a-8c11-5e7d2093b401";
    let usage: &[(&[&str], &str)] = &[
        (&["run", "--memroy", "1G", "--", "true"], "--memroy"),
        (&["run", "-x", "true"], "-x"),
        (&["run", "-it"], "<CMD>"),
        (&["start", "-it", "--bogus", "--", "sh"], "--bogus"),
        (&["kill", "-s", "USR3", id], "invalid signal"),
        (&["kill", "-s", "32", id], "invalid signal"),
        (
            &["attach", "--detach-keys", "ctrl-1", id],
            "invalid detach key",
        ),
        (
            &["run", "--detach-keys", "ab", "--", "sh"],
            "invalid detach key",
        ),
    ];
    for (args, needle) in usage {
        let out = jw_alone(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in: {err}"
        );
    }
    // Parsed: jw goes on to connect, and says which setting it lacks (a
    // usage error too).
    let parsed: &[&[&str]] = &[
        &["run", "-it", "--", "sh"],
        &["run", "echo", "-n", "hi"],
        &["run", "-i", "-t", "--detach-keys", "ctrl-x,q", "--", "sh"],
        &["start", "-t", "sh"],
        &["attach", id],
        &["kill", "-s", "usr1", "--all", id],
        &["kill", id],
    ];
    for args in parsed {
        let out = jw_alone(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("no --ca given"), "{args:?}: {err}");
    }
}
