//! `jw`'s help, manual pages, completions, versions and connection
//! bounds, through the real binaries; none needs jwd or root.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn jw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(args)
        .env_remove("JW_ADDR")
        .stdin(Stdio::null())
        .output()
        .expect("jw runs")
}

/// jw's commands, as `jw --help` lists them.
fn commands() -> Vec<String> {
    let help = text(&jw(&["--help"]).stdout);
    let listed = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("jw --help lists its commands")
        .to_string();
    let names: Vec<String> = listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 10, "{help}");
    names
}

/// Whether `program` can be run here.
fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn every_command_has_examples_and_documented_arguments() {
    for name in commands() {
        let out = jw(&["help", &name]);
        let help = text(&out.stdout);
        assert!(out.status.success(), "{name}");
        assert!(help.contains("Examples:\n  jw "), "jw help {name}:\n{help}");
        assert!(help.contains("Connection:"), "jw help {name}:\n{help}");
        if help.contains("<ID") {
            assert!(
                help.contains("unique start") || help.contains("name"),
                "jw help {name} does not say what an ID is:\n{help}"
            );
        }
        for flag in ["--json", "--all", "--grace"] {
            if let Some(at) = help.find(&format!("      {flag}")) {
                let line = help[at..].lines().next().unwrap_or_default();
                assert!(
                    line.trim().len() > flag.len() + 2,
                    "jw help {name}: {flag} has no text:\n{help}"
                );
            }
        }
    }
    let run = text(&jw(&["help", "run"]).stdout);
    for heading in ["Limits:", "Job:", "Output:", "Connection:"] {
        assert!(run.contains(heading), "{heading} in:\n{run}");
    }
}

#[test]
fn manual_pages_render() {
    let mut pages = vec![None];
    pages.extend(commands().into_iter().map(Some));
    for name in pages {
        let mut args = vec!["man"];
        args.extend(name.as_deref());
        let out = jw(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let roff = text(&out.stdout);
        assert!(roff.contains(".TH "), "{args:?}");
        if name.as_deref() == Some("run") {
            for flag in [
                "\\-\\-memory",
                "\\-\\-timeout",
                "\\-\\-detach",
                "\\-\\-grace",
            ] {
                assert!(roff.contains(flag), "{flag} in jw man run");
            }
        }
        assert!(
            installed("man") || std::env::var("CI").as_deref() != Ok("true"),
            "man is not installed (scripts/setup installs it), and CI=true forbids skipping"
        );
        if installed("man") {
            let mut man = Command::new("man")
                .args(["-l", "-"])
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            man.stdin.take().unwrap().write_all(&out.stdout).unwrap();
            let shown = man.wait_with_output().unwrap();
            assert!(
                shown.status.success(),
                "man -l {args:?}: {}",
                text(&shown.stderr)
            );
            assert!(text(&shown.stdout).contains("NAME"), "{args:?}");
        }
    }
    let out = jw(&["man", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("run"));
}

#[test]
fn completions_are_valid_scripts() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, checker) in [
        ("bash", Some(("bash", "-n"))),
        ("zsh", Some(("zsh", "-n"))),
        ("fish", Some(("fish", "--no-execute"))),
        ("elvish", None),
        ("powershell", None),
    ] {
        let out = jw(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("jw"), "{shell}");
        let Some((program, flag)) = checker else {
            continue;
        };
        if shell != "bash" && !installed(program) {
            // scripts/setup installs them; CI may not skip.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{program} is not installed (scripts/setup installs it), and CI=true forbids skipping"
            );
            eprintln!("{program} is not installed: its completion script is not checked");
            continue;
        }
        let path = dir.path().join(format!("jw.{shell}"));
        std::fs::write(&path, &out.stdout).unwrap();
        let check = Command::new(program).arg(flag).arg(&path).output().unwrap();
        assert!(
            check.status.success(),
            "{program} {flag}: {}",
            text(&check.stderr)
        );
    }
    // A reader that goes away is no panic.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} completions fish | head -c1 >/dev/null",
            env!("CARGO_BIN_EXE_jw")
        ))
        .output()
        .unwrap();
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_binary_names_its_version_and_commit() {
    for (bin, name) in [
        (env!("CARGO_BIN_EXE_jw"), "jw"),
        (env!("CARGO_BIN_EXE_jwd"), "jwd"),
        (env!("CARGO_BIN_EXE_jw-load"), "jw-load"),
    ] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert!(out.status.success());
        let version = text(&out.stdout);
        let expected = format!("{name} {} (", env!("CARGO_PKG_VERSION"));
        assert!(version.starts_with(&expected), "{version}");
        let commit = version
            .trim()
            .strip_prefix(&expected)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_default();
        assert!(
            commit == "unknown"
                || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{version}"
        );
    }
}

#[test]
fn a_port_that_never_speaks_tls_fails_within_the_bound() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts and says nothing, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    let certs = common::certs();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(["--connect-timeout", "1s", "list"])
        .env("JW_ADDR", &addr)
        .env("JW_CA", certs.join("server-ca.crt"))
        .env("JW_CERT", certs.join("alice.crt"))
        .env("JW_KEY", certs.join("alice.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Far past the bound: jw must have given up by then.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("jw still waits for a server that never answers");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("--connect-timeout"), "{err}");
    assert!(err.contains("TLS handshake"), "{err}");
}
