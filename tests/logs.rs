//! `jw logs` and `jw run` through the real binaries and a real jwd: the
//! order of stdout and stderr as captured, `--tail` (also of a large
//! output, reading only its end), `--since`, `--timestamps`, follow from a
//! tail, and output of an older keeper (no time index). Needs root (jobs).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use common::{certs, Jwd};

fn jw_command(jwd: &Jwd, args: &[&str]) -> Command {
    let c = certs();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jw"));
    cmd.args(args)
        .env("JW_ADDR", &jwd.addr)
        .env("JW_CA", c.join("server-ca.crt"))
        .env("JW_CERT", c.join("alice.crt"))
        .env("JW_KEY", c.join("alice.key"))
        .env_remove("TERM");
    cmd
}

fn jw(jwd: &Jwd, args: &[&str]) -> Output {
    jw_command(jwd, args)
        .stdin(Stdio::null())
        .output()
        .expect("jw runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `jw ARGS`' stdout, which must succeed.
fn jw_ok(jwd: &Jwd, args: &[&str]) -> String {
    let out = jw(jwd, args);
    assert!(
        out.status.success(),
        "jw {args:?}: {:?}\n{}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Starts `sh -c script` as a job; its id.
fn start(jwd: &Jwd, script: &str) -> String {
    jw_ok(jwd, &["start", "--", "sh", "-c", script])
        .trim()
        .to_string()
}

/// `jw ARGS` with its stdout and stderr on one pipe, as a terminal or
/// `2>&1` has them: the child, the pipe's read end, and its stdin.
fn spawn_merged(jwd: &Jwd, args: &[&str]) -> (Child, BufReader<std::fs::File>, ChildStdin) {
    let (read, write) = rustix::pipe::pipe().unwrap();
    let write2: OwnedFd = write.try_clone().unwrap();
    let mut child = jw_command(jwd, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2))
        .spawn()
        .expect("jw runs");
    // The command holds the only write ends now.
    let stdin = child.stdin.take().unwrap();
    (child, BufReader::new(std::fs::File::from(read)), stdin)
}

/// `jw logs ARGS` with stdout and stderr on one pipe: all it wrote.
fn logs_merged(jwd: &Jwd, args: &[&str]) -> String {
    let mut full = vec!["logs"];
    full.extend_from_slice(args);
    let (mut child, mut out, stdin) = spawn_merged(jwd, &full);
    drop(stdin);
    let mut all = String::new();
    out.read_to_string(&mut all).unwrap();
    assert!(child.wait().unwrap().success(), "jw {full:?}: {all}");
    all
}

fn line(reader: &mut BufReader<std::fs::File>) -> String {
    let mut l = String::new();
    reader.read_line(&mut l).unwrap();
    l
}

/// The id of alice's only running job.
fn running_job(jwd: &Jwd) -> String {
    for _ in 0..600 {
        let list: serde_json::Value =
            serde_json::from_str(&jw_ok(jwd, &["list", "--json"])).unwrap();
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

fn job_dir(jwd: &Jwd, id: &str) -> PathBuf {
    jwd.data_dir.join("jobs").join(id)
}

#[test]
fn stdout_and_stderr_keep_their_order_through_run_and_logs() {
    let Some(jwd) = Jwd::start("logs-order", &[]) else {
        return;
    };
    // The job writes each line only once the one before has reached the
    // user: the order cannot depend on how fast anything is.
    let script = "echo 1-out; read a; echo 2-err >&2; read b; echo 3-out; read c; echo 4-err >&2";
    let (mut child, mut out, mut stdin) =
        spawn_merged(&jwd, &["run", "-i", "--", "sh", "-c", script]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(line(&mut out));
        // Ignored by the last `read`-less step: the job has ended.
        let _ = stdin.write_all(b"next\n");
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(seen, ["1-out\n", "2-err\n", "3-out\n", "4-err\n"]);
    let id = jw_ok(&jwd, &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        logs_merged(&jwd, &[&id]),
        seen.concat(),
        "jw logs replays the order"
    );
    assert_eq!(
        logs_merged(&jwd, &["--tail", "3", &id]),
        seen[1..].concat(),
        "so does its tail"
    );
}

#[test]
fn tail_prints_the_last_lines() {
    let Some(jwd) = Jwd::start("logs-tail", &[]) else {
        return;
    };
    // (Writes to both streams without a pause between them come out in
    // the order captured, which the order test above pins down: here
    // the lines of each stream alone.)
    let lines = start(
        &jwd,
        "printf 'a\\nb\\nc\\nd\\ne\\n'; printf 'E1\\nE2\\n' >&2",
    );
    let open = start(&jwd, "printf 'a\\nb\\nc'");
    for id in [&lines, &open] {
        jw_ok(&jwd, &["wait", id]);
    }
    let stdout_tail = jw_ok(&jwd, &["logs", "--tail", "2", "--stdout", &lines]);
    assert_eq!(stdout_tail, "d\ne\n");
    assert_eq!(logs_merged(&jwd, &["-n", "1", "--stderr", &lines]), "E2\n");
    // By the first 8 characters of its id, as a user types it.
    let open_tail = jw_ok(&jwd, &["logs", "--tail", "2", &open[..8]]);
    assert_eq!(open_tail, "b\nc", "a last line without newline");
    let all = jw_ok(&jwd, &["logs", "--tail", "100", &open]);
    assert_eq!(all, "a\nb\nc", "more than there are");
    assert_eq!(jw_ok(&jwd, &["logs", "--tail", "0", &open]), "");
    let both = logs_merged(&jwd, &["--tail", "7", &lines]);
    let mut sorted: Vec<&str> = both.lines().collect();
    sorted.sort();
    assert_eq!(sorted, ["E1", "E2", "a", "b", "c", "d", "e"], "{both}");
}

/// The bytes jwd has read from storage so far.
fn read_bytes(jwd: &Jwd) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", jwd.pid())).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .unwrap()
        .parse()
        .unwrap()
}

/// Writes `path` back to disk and drops it from the page cache, so that
/// reading it counts in `read_bytes`.
fn evict(path: &std::path::Path) {
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
}

#[test]
fn the_tail_of_a_large_output_reads_only_its_end() {
    let Some(jwd) = Jwd::start("logs-tail-large", &[]) else {
        return;
    };
    const SIZE: u64 = 200 << 20;
    let id = start(&jwd, &format!("yes 0123456789abcdef | head -c {SIZE}"));
    jw_ok(&jwd, &["wait", &id]);
    let stdout = job_dir(&jwd, &id).join("stdout");
    assert_eq!(std::fs::metadata(&stdout).unwrap().len(), SIZE);
    // 200 MiB is 12,336,188 lines of 17 bytes and 4 bytes more.
    evict(&stdout);
    let before = read_bytes(&jwd);
    assert_eq!(
        jw_ok(&jwd, &["logs", "--tail", "2", &id]),
        "0123456789abcdef\n0123"
    );
    let tail_read = read_bytes(&jwd) - before;
    evict(&stdout);
    let before = read_bytes(&jwd);
    let mut out = jw_command(&jwd, &["logs", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut whole = 0u64;
    let mut reader = out.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf).unwrap() {
            0 => break,
            n => whole += n as u64,
        }
    }
    assert!(out.wait().unwrap().success());
    assert_eq!(whole, SIZE);
    let whole_read = read_bytes(&jwd) - before;
    eprintln!("jwd read {tail_read} bytes for --tail 2, {whole_read} for the whole output");
    // The counter sees the reads (the whole output came from the disk)...
    assert!(whole_read >= SIZE / 2, "whole: {whole_read}");
    // ... and the tail read a few chunks of it (and of the index).
    assert!(tail_read <= 8 << 20, "tail: {tail_read}");
}

/// The time `jw logs --timestamps` puts before a line, and the line.
fn dated(line: &str) -> (&str, &str) {
    let (time, rest) = line.split_once(' ').expect("a time and a space");
    let b = time.as_bytes();
    let shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    assert_eq!(b.len(), shape.len(), "{time}");
    for (c, s) in b.iter().zip(shape.bytes()) {
        match s {
            b'd' => assert!(c.is_ascii_digit(), "{time}"),
            _ => assert_eq!(*c, s, "{time}"),
        }
    }
    (time, rest)
}

#[test]
fn since_gives_what_came_after_a_time() {
    let Some(jwd) = Jwd::start("logs-since", &[]) else {
        return;
    };
    // The pause in the job (longer than the 10 ms times are exact to)
    // makes "second" a run of its own whatever the machine's speed.
    let script = "echo first; read a; sleep 0.05; echo second; echo third >&2";
    let (mut child, mut out, mut stdin) =
        spawn_merged(&jwd, &["run", "-i", "--", "sh", "-c", script]);
    assert_eq!(line(&mut out), "first\n");
    let id = running_job(&jwd);
    let first = jw_ok(&jwd, &["logs", "--timestamps", &id]);
    let (time, rest) = dated(first.lines().next().unwrap());
    assert_eq!(rest, "first");
    // Just after "first" was captured, from jwd's own time of it (at the
    // last microsecond of a second, its next second is another test).
    let (head, micros) = time.trim_end_matches('Z').rsplit_once('.').unwrap();
    let micros: u32 = micros.parse().unwrap();
    let after = (micros < 999_999).then(|| format!("{head}.{:06}Z", micros + 1));
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest, "second\nthird\n");
    if let Some(after) = &after {
        assert_eq!(
            logs_merged(&jwd, &["--since", after, &id]),
            "second\nthird\n"
        );
    }
    assert_eq!(
        logs_merged(&jwd, &["--since", time, &id]),
        "first\nsecond\nthird\n"
    );
    assert_eq!(
        logs_merged(&jwd, &["--since", "1h", &id]),
        "first\nsecond\nthird\n"
    );
    // With --tail: the later beginning.
    assert_eq!(
        logs_merged(&jwd, &["--since", time, "--tail", "1", &id]),
        "third\n"
    );
    let bad = jw(&jwd, &["logs", "--since", "yesterday", &id]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("RFC 3339"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn timestamps_date_each_line_in_order() {
    let Some(jwd) = Jwd::start("logs-timestamps", &[]) else {
        return;
    };
    let id = start(&jwd, "echo a; sleep 0.05; echo b; printf 'c\\nd' >&2");
    jw_ok(&jwd, &["wait", &id]);
    let out = logs_merged(&jwd, &["--timestamps", &id]);
    let lines: Vec<(&str, &str)> = out.lines().map(dated).collect();
    let texts: Vec<&str> = lines.iter().map(|l| l.1).collect();
    assert_eq!(texts, ["a", "b", "c", "d"], "{out}");
    assert!(!out.ends_with('\n'), "the last line stays open");
    // The same form throughout: text order is time order.
    assert!(lines.windows(2).all(|w| w[0].0 <= w[1].0), "{out}");
    assert!(lines[0].0 < lines[1].0, "b came 50 ms after a: {out}");
    let tail = jw_ok(
        &jwd,
        &["logs", "--timestamps", "--tail", "1", "--stdout", &id],
    );
    assert_eq!(tail, format!("{} b\n", lines[1].0));
}

#[test]
fn follow_from_the_tail_gets_the_new_lines() {
    let Some(jwd) = Jwd::start("logs-follow-tail", &[]) else {
        return;
    };
    let script = "printf '1\\n2\\n3\\n'; read a; echo 4; echo 5 >&2";
    let (mut run, mut run_out, mut run_in) =
        spawn_merged(&jwd, &["run", "-i", "--", "sh", "-c", script]);
    for want in ["1\n", "2\n", "3\n"] {
        assert_eq!(line(&mut run_out), want);
    }
    let id = running_job(&jwd);
    let (mut logs, mut logs_out, logs_in) = spawn_merged(&jwd, &["logs", "-f", "--tail", "2", &id]);
    drop(logs_in);
    assert_eq!(line(&mut logs_out), "2\n");
    assert_eq!(line(&mut logs_out), "3\n");
    run_in.write_all(b"go\n").unwrap();
    drop(run_in);
    let mut rest = String::new();
    logs_out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "4\n5\n");
    assert!(logs.wait().unwrap().success());
    let mut run_rest = String::new();
    run_out.read_to_string(&mut run_rest).unwrap();
    assert!(run.wait().unwrap().success());
}

#[test]
fn output_without_times_is_served_and_since_says_why_not() {
    let Some(jwd) = Jwd::start("logs-old-format", &[]) else {
        return;
    };
    let id = start(&jwd, "printf 'a\\nb\\n'; printf 'c\\n' >&2");
    jw_ok(&jwd, &["wait", &id]);
    // As a keeper older than the time index left it.
    std::fs::remove_file(job_dir(&jwd, &id).join("times")).unwrap();
    assert_eq!(logs_merged(&jwd, &[&id]), "a\nb\nc\n");
    assert_eq!(logs_merged(&jwd, &["--tail", "2", &id]), "b\nc\n");
    for flags in [&["--since", "10m"][..], &["--timestamps"][..]] {
        let mut args = vec!["logs"];
        args.extend_from_slice(flags);
        args.push(&id);
        let out = jw(&jwd, &args);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("no times") && err.contains("--tail"),
            "{flags:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{flags:?}");
    }
}
