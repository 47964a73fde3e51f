//! Operating jwd, through the real binaries as root with real TLS: a
//! client certificate revoked and jwd told with SIGHUP, a renewed server
//! certificate, a reload that fails, a second jwd on the same address,
//! and revocation lists jwd must refuse at start.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{jwd_command_on, jwd_command_pki, pki, require_root, Jwd};
use jw::client::{Client, ConnectOptions};

/// `jw ARGS` as `user` of the PKI in `dir`, against `addr`.
fn jw_command(addr: &str, dir: &Path, user: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jw"));
    command
        .args(args)
        .env("JW_ADDR", addr)
        .env("JW_CA", dir.join("server-ca.crt"))
        .env("JW_CERT", dir.join(format!("{user}.crt")))
        .env("JW_KEY", dir.join(format!("{user}.key")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits (at most `bound`) for a child to end; kills it past the bound.
fn finish(mut child: Child, bound: Duration, what: &str) -> Output {
    let deadline = Instant::now() + bound;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not end within {bound:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn jw(addr: &str, dir: &Path, user: &str, args: &[&str]) -> Output {
    let child = jw_command(addr, dir, user, args).spawn().expect("jw runs");
    finish(child, Duration::from_secs(60), &format!("jw {args:?}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `jw start -- sleep 1000` as `user`: the job's id.
fn start_sleeper(addr: &str, dir: &Path, user: &str) -> String {
    let out = jw(addr, dir, user, &["start", "--", "sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// A `jw wait ID` as `user` whose connection jwd has greeted.
fn waiting(jwd: &Jwd, dir: &Path, user: &str, id: &str) -> Child {
    let who = format!("user=\"{user}\"");
    let greeted = ["session opened", who.as_str()];
    let before = jwd.log_lines(&greeted);
    let child = jw_command(&jwd.addr, dir, user, &["wait", id])
        .spawn()
        .expect("jw runs");
    jwd.wait_for_log(&greeted, before + 1);
    child
}

/// A jwd command that must fail at start: its output, within a minute.
fn fails(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jwd runs");
    let out = finish(child, Duration::from_secs(60), "a jwd that should fail");
    assert!(!out.status.success(), "jwd started: {}", text(&out.stderr));
    out
}

const RELOADED: &str = "TLS material reloaded";

#[test]
fn a_revoked_user_is_refused_after_sighup_and_others_keep_working() {
    if !require_root("operate_revoke") {
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let dir = pki_dir.path();
    pki::init(dir, &["dave"], &["boss"]);
    pki::certs(dir, "add-user", "carol");
    let crl = dir.join("crl.pem");
    let crl_arg = crl.to_str().unwrap();
    let jwd = Jwd::start_pki("operate_revoke", dir, &["--crl", crl_arg]).unwrap();
    assert!(jwd.log().contains("(0 revoked)"), "{}", jwd.log());
    let addr = jwd.addr.clone();

    let carols = start_sleeper(&addr, dir, "carol");
    let daves = start_sleeper(&addr, dir, "dave");
    let carol_waits = waiting(&jwd, dir, "carol", &carols);
    let dave_waits = waiting(&jwd, dir, "dave", &daves);

    pki::certs(dir, "revoke", "carol");
    jwd.hup();
    jwd.wait_for_log(&[RELOADED, "(1 revoked)"], 1);

    // Carol's open connection is closed, and says why.
    let out = finish(carol_waits, Duration::from_secs(60), "carol's jw wait");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(
        err.contains("the client certificate was revoked") && err.contains("jw certs renew carol"),
        "{err}"
    );

    // Her new connections are refused by the handshake, with the reason.
    let out = jw(&addr, dir, "carol", &["list"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    let cert = dir.join("carol.crt");
    assert!(
        err.contains(&format!(
            "jwd rejected the client certificate {}: it has been revoked",
            cert.display()
        )) && err.contains("jw certs renew carol"),
        "{err}"
    );

    // Dave's connection from before the reload is still open and ends
    // when his job does, as it would have without the reload.
    assert!(
        jw(&addr, dir, "dave", &["list"]).status.success(),
        "dave is refused after the reload"
    );
    let stop = jw(&addr, dir, "dave", &["stop", "--grace", "0s", &daves]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let waited = finish(dave_waits, Duration::from_secs(60), "dave's jw wait");
    let again = jw(&addr, dir, "dave", &["wait", &daves]);
    assert_eq!(
        waited.status.code(),
        again.status.code(),
        "the wait across the reload: {}",
        text(&waited.stderr)
    );
    assert_eq!(text(&waited.stderr), text(&again.stderr));

    // Carol's job runs on (revoking a user stops no job); an admin ends it.
    let status = jw(&addr, dir, "boss", &["status", &carols]);
    assert!(
        text(&status.stdout).contains("running"),
        "{}",
        text(&status.stdout)
    );
    let stop = jw(&addr, dir, "boss", &["stop", "--grace", "0s", &carols]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_server_certificate_is_served_after_sighup_without_dropping_connections() {
    if !require_root("operate_renew") {
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let dir = pki_dir.path();
    pki::init(dir, &["dave"], &[]);
    let jwd = Jwd::start_pki("operate_renew", dir, &[]).unwrap();
    let old = pki::cert_der(&dir.join("server.crt"));
    assert_eq!(
        pki::presented_certificate(&jwd.addr, dir, "dave").await,
        old
    );
    let open = Client::connect(&ConnectOptions {
        addr: jwd.addr.clone(),
        ca: dir.join("server-ca.crt"),
        cert: dir.join("dave.crt"),
        key: dir.join("dave.key"),
    })
    .await
    .unwrap();
    open.list(false).await.unwrap();

    pki::certs(dir, "renew", "server");
    let new = pki::cert_der(&dir.join("server.crt"));
    assert_ne!(new, old);
    jwd.hup();
    jwd.wait_for_log(&[RELOADED], 1);

    assert_eq!(
        pki::presented_certificate(&jwd.addr, dir, "dave").await,
        new
    );
    // The connection made with the old certificate goes on.
    open.list(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_the_old_material_and_says_why() {
    if !require_root("operate_broken") {
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let dir = pki_dir.path();
    pki::init(dir, &["dave"], &[]);
    let jwd = Jwd::start_pki("operate_broken", dir, &[]).unwrap();
    let old = pki::cert_der(&dir.join("server.crt"));
    let failed = "cannot reload the TLS material";

    let cert = dir.join("server.crt");
    let good = std::fs::read(&cert).unwrap();
    pki::replace(&cert, b"not a certificate\n", 0o644);
    jwd.hup();
    jwd.wait_for_log(&[failed, "holds no PEM certificate", "server.crt"], 1);
    assert_eq!(
        pki::presented_certificate(&jwd.addr, dir, "dave").await,
        old
    );
    let out = jw(&jwd.addr, dir, "dave", &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A key others may read is refused on reload as at start.
    pki::replace(&cert, &good, 0o644);
    let key = dir.join("server.key");
    let mut perms = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&key, perms).unwrap();
    jwd.hup();
    jwd.wait_for_log(&[failed, "chmod 600"], 1);
    assert_eq!(
        pki::presented_certificate(&jwd.addr, dir, "dave").await,
        old
    );
    assert_eq!(jwd.log_lines(&[RELOADED]), 0, "{}", jwd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_jwd_on_the_same_address_fails_and_leaves_the_first_alone() {
    let Some(jwd) = Jwd::start("operate_listen", &[]) else {
        return;
    };
    let client = jwd.client("alice").await;
    let id = client
        .start(common::start_req("sleep", &["1000"]))
        .await
        .unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let name = format!("jwtest-second-{}", std::process::id());
    let out = fails(jwd_command_on(&data, &name, &jwd.addr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen on {}: address in use: another jwd",
            jwd.addr
        )),
        "{err}"
    );
    assert!(!data.exists(), "the second jwd made its data directory");
    for dir in jw::job::cgroup::pid_cgroup_dirs(jwd.pid()).unwrap_or_default() {
        for base in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            assert!(!base.join(&name).exists(), "the second jwd made its cgroup");
        }
    }

    // The first one's job runs on, and it serves old and new connections.
    assert_eq!(
        client.status(id).await.unwrap().state,
        jw::protocol::JobState::Running
    );
    let other = jwd.client("alice").await;
    assert_eq!(other.list(false).await.unwrap().len(), 1);
    client.stop(id, 0).await.unwrap();
}

#[test]
fn revocation_lists_jwd_cannot_use_are_refused_at_start() {
    if !require_root("operate_bad_crl") {
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let dir = pki_dir.path();
    pki::init(dir, &["dave"], &[]);
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let name = format!("jwtest-badcrl-{}", std::process::id());
    let jwd = |pki: &Path, crl: &Path| {
        let mut command = jwd_command_pki(&data, &name, "127.0.0.1:0", pki);
        command.arg("--crl").arg(crl);
        text(&fails(command).stderr)
    };

    // Signed by the server CA, not the client CA.
    let wrong = pki::crl(dir, "server-crl.pem", "server-ca", &[]);
    let err = jwd(dir, &wrong);
    assert!(
        err.contains(&format!(
            "the revocation list {} is issued by CN=jw server CA",
            wrong.display()
        )),
        "{err}"
    );

    // The client CA's name, another PKI's key.
    let other_pki = tempfile::tempdir().unwrap();
    pki::init(other_pki.path(), &[], &[]);
    let forged = pki::crl(other_pki.path(), "crl.pem", "client-ca", &[]);
    let err = jwd(dir, &forged);
    assert!(
        err.contains(&format!("{} names", forged.display()))
            && err.contains("not signed by that CA's key"),
        "{err}"
    );

    // No list in the file.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = jwd(dir, &empty);
    assert!(
        err.contains(&format!("{} holds no PEM revocation list", empty.display())),
        "{err}"
    );

    // Two client CAs, a list for one: the other's users would all be
    // refused, so jwd does not start.
    let good = pki::crl(dir, "client-crl.pem", "client-ca", &[]);
    let two = tempfile::tempdir().unwrap();
    for file in ["server.crt", "server.key"] {
        let mode = if file.ends_with(".key") { 0o600 } else { 0o644 };
        pki::replace(
            &two.path().join(file),
            &std::fs::read(dir.join(file)).unwrap(),
            mode,
        );
    }
    let mut both = std::fs::read(dir.join("client-ca.crt")).unwrap();
    both.extend(std::fs::read(dir.join("server-ca.crt")).unwrap());
    pki::replace(&two.path().join("client-ca.crt"), &both, 0o644);
    let err = jwd(two.path(), &good);
    assert!(
        err.contains("the client CA CN=jw server CA") && err.contains("has no revocation list"),
        "{err}"
    );
    assert!(!data.exists(), "a jwd that failed made its data directory");

    // `jwd --check-config` loads them the same way, and says what it found.
    let check = |crl: &Path| {
        let child = jwd_command_pki(&data, &name, "127.0.0.1:0", dir)
            .arg("--crl")
            .arg(crl)
            .arg("--check-config")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("jwd runs");
        finish(child, Duration::from_secs(60), "jwd --check-config")
    };
    let out = check(&good);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "revocation list {}: issued by CN=jw client CA",
            good.display()
        )) && said.contains("0 revoked"),
        "{said}"
    );
    let out = check(&wrong);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "the revocation list {} is issued by",
            wrong.display()
        )),
        "{said}"
    );
}

#[test]
fn a_refused_certificate_is_named_with_the_reason_and_the_fix() {
    let Some(jwd) = Jwd::start("operate_refused", &[]) else {
        return;
    };
    let dev = common::certs();
    for (user, why) in [
        ("expired", "it has expired or is not valid yet"),
        ("rogue", "it is not signed by a client CA this jwd trusts"),
    ] {
        let out = jw(&jwd.addr, &dev, user, &["list"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{err}");
        let named = format!(
            "jwd rejected the client certificate {}: {why}",
            dev.join(format!("{user}.crt")).display()
        );
        assert!(err.contains(&named), "{user}: {err}");
    }
}
