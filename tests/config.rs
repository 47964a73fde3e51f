//! jwd's settings through the real binaries: `--config FILE` (the file's
//! values in force, the command line's over them) and `--check-config`
//! (exit 0/1, what it says, and that it changes nothing beside a running
//! jwd). Needs root (jobs, cgroups).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{certs, Jwd};

fn jw(jwd: &Jwd, args: &[&str]) -> Output {
    let c = certs();
    Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(args)
        .env("JW_ADDR", &jwd.addr)
        .env("JW_CA", c.join("server-ca.crt"))
        .env("JW_CERT", c.join("alice.crt"))
        .env("JW_KEY", c.join("alice.key"))
        .stdin(Stdio::null())
        .output()
        .expect("jw runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Bytes of output a 5,000-byte job keeps under the jwd running it.
fn kept_of_5000(jwd: &Jwd) -> usize {
    let out = jw(jwd, &["run", "--", "head", "-c", "5000", "/dev/zero"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out.stdout.len()
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("jwd.toml");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_config_files_settings_are_in_force_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "# jobs keep a kilobyte\nmax-output = \"1K\"\nretain = \"none\"\n",
    );
    let Some(jwd) = Jwd::start("config-file", &["--config", &config]) else {
        return;
    };
    assert_eq!(kept_of_5000(&jwd), 1024, "{}", jwd.log());
    drop(jwd);
    let jwd = Jwd::start("config-flag", &["--config", &config, "--max-output", "2K"]).unwrap();
    assert_eq!(kept_of_5000(&jwd), 2048, "{}", jwd.log());
}

#[test]
fn a_config_file_with_an_unknown_setting_stops_jwd_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "max-outptu = \"1K\"\n");
    let out = common::jwd_command(&dir.path().join("data"), "jwtest-never")
        .args(["--config", &config])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&config) && err.contains("unknown setting `max-outptu`"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "jwd made its data directory"
    );
}

fn check(data_dir: &Path, cgroup_name: &str, extra: &[&str]) -> (i32, String) {
    let out = common::jwd_command(data_dir, cgroup_name)
        .arg("--check-config")
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout) + &text(&out.stderr),
    )
}

#[test]
fn check_config_passes_a_good_configuration_and_changes_nothing() {
    if !common::require_root("check-good") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, said) = check(&data, "jwtest-check-good", &[]);
    assert_eq!(code, 0, "{said}");
    for line in [
        "ok    tls",
        "ok    listen",
        "ok    job-uids",
        "ok    seccomp",
        "ok    init",
        "ok    cgroups",
        "jwd would start with this configuration",
    ] {
        assert!(said.contains(line), "no {line:?} in:\n{said}");
    }
    assert!(said.contains("does not exist yet"), "{said}");
    assert!(!data.exists(), "--check-config made the data directory");
    let subtree = Path::new("/sys/fs/cgroup/unified/jwtest-check-good");
    let v2 = Path::new("/sys/fs/cgroup/jwtest-check-good");
    assert!(
        !subtree.exists() && !v2.exists(),
        "--check-config made cgroups"
    );
}

#[test]
fn check_config_fails_naming_each_problem() {
    if !common::require_root("check-bad") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    std::fs::copy(certs().join("server.key"), &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jwd"))
        .arg("--check-config")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cgroup-name",
            "jwtest-check-bad",
        ])
        .arg("--cert")
        .arg(certs().join("server.crt"))
        .arg("--key")
        .arg(&key)
        .arg("--client-ca")
        .arg(certs().join("client-ca.crt"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--init", "/nonexistent/jw-init"])
        .output()
        .unwrap();
    let (code, said) = (out.status.code().unwrap_or(-1), text(&out.stdout));
    assert_eq!(code, 1, "{said}");
    for line in [
        "FAIL  tls        the private key",
        "chmod 600",
        "FAIL  init",
        "/nonexistent/jw-init",
        "FAIL  data-dir",
        "writable by others (mode 0777)",
        "jwd would NOT start with this configuration: 3 problems above",
    ] {
        assert!(said.contains(line), "no {line:?} in:\n{said}");
    }
}

#[test]
fn check_config_beside_a_running_jwd_reports_its_locks_and_leaves_it_serving() {
    let Some(jwd) = Jwd::start("check-beside", &[]) else {
        return;
    };
    let out = jw(&jwd, &["start", "--", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let (code, said) = check(&jwd.data_dir, &jwd.cgroup_name, &[]);
    assert_eq!(code, 0, "{said}");
    let pid = jwd.pid().to_string();
    assert!(
        said.contains(&format!("in use by jwd pid {pid}")),
        "the data directory's holder is not named:\n{said}"
    );
    assert!(
        said.contains(&format!(
            "in use by a running jwd with --cgroup-name {}",
            jwd.cgroup_name
        )),
        "the cgroup subtree's holder is not named:\n{said}"
    );
    // The running jwd keeps its locks, its job and its clients.
    let out = jw(&jwd, &["status", &id]);
    assert!(
        text(&out.stdout).contains("running"),
        "{}",
        text(&out.stdout)
    );
    let out = jw(&jwd, &["run", "--", "echo", "still serving"]);
    assert_eq!(text(&out.stdout), "still serving\n");
    assert!(jw(&jwd, &["stop", &id]).status.success());
}

#[test]
fn ended_jobs_past_the_retention_are_removed_with_their_output_and_running_ones_stay() {
    let Some(jwd) = Jwd::start("retain", &["--retain", "10s"]) else {
        return;
    };
    let start = |args: &[&str]| {
        let mut all = vec!["start", "--"];
        all.extend_from_slice(args);
        let out = jw(&jwd, &all);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let ended = start(&["echo", "gone soon"]);
    let running = start(&["sleep", "1000"]);
    assert!(jw(&jwd, &["wait", &ended]).status.success());
    let dir = jwd.data_dir.join("jobs").join(&ended);
    assert!(dir.exists(), "no job directory {}", dir.display());
    // Removed by jwd's own retention, nobody asking: wait (bounded) for
    // the job to be gone for clients, its directory gone from disk, and
    // the retention's log line (the three land one after the other).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let out = jw(&jwd, &["status", &ended]);
        let gone = !out.status.success();
        if gone {
            assert!(
                text(&out.stderr).contains("no such job"),
                "{}",
                text(&out.stderr)
            );
        }
        let logged = jwd.log().contains("removed jobs past the retention period");
        if gone && !dir.exists() && logged {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ended job was not removed (status gone: {gone}, directory {} there: {}, logged: {logged}):\n{}",
            dir.display(),
            dir.exists(),
            jwd.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = jw(&jwd, &["status", &running]);
    assert!(
        text(&out.stdout).contains("running"),
        "{}",
        text(&out.stdout)
    );
    assert!(jw(&jwd, &["stop", &running]).status.success());
}
