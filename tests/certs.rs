//! `jw certs` through the real binary: init, add-user, renew, revoke, what
//! they print and write, their refusals and exit codes (2 a usage error, 1
//! any other). No jwd, no root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `jw certs COMMAND --out DIR ARGS...`.
fn jw(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(["certs", args[0], "--out"])
        .arg(dir)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("jw runs")
}

/// Runs `jw certs COMMAND --out DIR ARGS...`, which must succeed; its stdout.
fn ok(args: &[&str], dir: &Path) -> String {
    let out = jw(args, dir);
    assert!(
        out.status.success(),
        "jw certs {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `jw certs COMMAND --out DIR ARGS...`, which must fail with `code`; its stderr.
fn fails(args: &[&str], dir: &Path, code: i32) -> String {
    let out = jw(args, dir);
    assert_eq!(
        out.status.code(),
        Some(code),
        "jw certs {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// The record's (serial, user) lines.
fn record(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("issued.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            assert_eq!(fields.len(), 3, "{l}");
            (fields[0].to_string(), fields[1].to_string())
        })
        .collect()
}

fn serials_of(dir: &Path, user: &str) -> Vec<String> {
    record(dir)
        .into_iter()
        .filter(|(_, u)| u == user)
        .map(|(s, _)| s)
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn pki() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = ok(&["init", "--user", "alice"], &pki);
    for file in ["crl.pem", "issued.txt", "alice.crt", "alice.key"] {
        assert!(out.contains(&pki.join(file).display().to_string()), "{out}");
    }
    (dir, pki)
}

#[test]
fn init_writes_an_empty_crl_and_the_record() {
    let (_dir, pki) = pki();
    let crl = std::fs::read_to_string(pki.join("crl.pem")).unwrap();
    assert!(crl.starts_with("-----BEGIN X509 CRL-----\n"), "{crl}");
    let record = record(&pki);
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].1, "alice");
    assert_eq!(record[0].0.len(), 32, "16 random bytes: {}", record[0].0);
}

#[test]
fn add_user_renew_and_revoke() {
    let (_dir, pki) = pki();
    let out = ok(&["add-user", "bob", "--admin", "--group", "ops"], &pki);
    let (crt, key) = (pki.join("bob.crt"), pki.join("bob.key"));
    assert_eq!(out, format!("{}\n{}\n", crt.display(), key.display()));
    assert_eq!((mode(&crt), mode(&key)), (0o644, 0o600));
    let cert = jw::tls::load_certs(&crt).unwrap().remove(0);
    let id = jw::tls::identity(&cert, "admin").unwrap();
    assert_eq!((id.user.as_str(), id.admin), ("bob", true));
    assert_eq!(id.groups, ["ops", "admin"]);

    let first_key = std::fs::read(&key).unwrap();
    let out = ok(&["renew", "bob", "--days", "30"], &pki);
    assert_eq!(out, format!("{}\n{}\n", crt.display(), key.display()));
    assert_ne!(std::fs::read(&key).unwrap(), first_key);
    assert_eq!(mode(&key), 0o600);
    let renewed = jw::tls::load_certs(&crt).unwrap().remove(0);
    assert_eq!(
        jw::tls::identity(&renewed, "admin").unwrap().groups,
        id.groups
    );
    let serials = serials_of(&pki, "bob");
    assert_eq!(serials.len(), 2);
    assert_ne!(serials[0], serials[1]);

    let out = ok(&["revoke", "bob"], &pki);
    for serial in &serials {
        assert!(
            out.contains(&format!("bob: revoked serial {serial}\n")),
            "{out}"
        );
    }
    let crl = pki.join("crl.pem").display().to_string();
    assert!(
        out.contains(&format!("wrote {crl} (CRL number 2)\n")),
        "{out}"
    );
    assert!(
        out.ends_with("send jwd SIGHUP (systemctl reload jwd) to apply\n"),
        "{out}"
    );

    let again = ok(&["revoke", "bob"], &pki);
    assert!(again.contains("bob was already revoked"), "{again}");
    assert!(again.contains("(CRL number 2)"), "{again}");

    // Revoked, then renewed: a new certificate, which a new revoke adds.
    ok(&["renew", "bob"], &pki);
    let out = ok(&["revoke", "bob"], &pki);
    let newest = serials_of(&pki, "bob").pop().unwrap();
    assert!(
        out.contains(&format!("bob: revoked serial {newest}\n")),
        "{out}"
    );
    assert!(out.contains("(CRL number 3)"), "{out}");
}

#[test]
fn renew_server_says_to_reload_jwd() {
    let (_dir, pki) = pki();
    let before = std::fs::read(pki.join("server.crt")).unwrap();
    let out = jw(&["renew", "server"], &pki);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("server.crt"));
    assert!(
        text(&out.stderr).contains("SIGHUP"),
        "{}",
        text(&out.stderr)
    );
    assert_ne!(std::fs::read(pki.join("server.crt")).unwrap(), before);
    assert_eq!(mode(&pki.join("server.key")), 0o600);
    jw::tls::server_config(
        &pki.join("server.crt"),
        &pki.join("server.key"),
        &pki.join("client-ca.crt"),
    )
    .unwrap();
}

#[test]
fn refusals_and_exit_codes() {
    let (dir, pki) = pki();
    // Usage errors: 2.
    for name in [
        "a/b",
        "-x",
        "server",
        "client-ca",
        "server-ca",
        "crl",
        "issued",
    ] {
        let err = fails(&["add-user", "--", name], &pki, 2);
        assert!(err.contains(name), "{name}: {err}");
    }
    fails(&["add-user", "dan", "--days", "0"], &pki, 2);
    fails(&["renew", "alice", "--days", "-3"], &pki, 2);
    let err = fails(
        &["add-user", "dan", "--group", "a", "--group", "b", "--admin"],
        &pki,
        2,
    );
    assert!(err.contains("at most 2 groups"), "{err}");
    let err = fails(&["revoke", "server"], &pki, 2);
    assert!(
        err.contains("clients do not check a CRL for the server"),
        "{err}"
    );
    assert!(err.contains("renew it instead"), "{err}");
    let no_out = Command::new(env!("CARGO_BIN_EXE_jw"))
        .args(["certs", "add-user", "dan"])
        .output()
        .unwrap();
    assert_eq!(no_out.status.code(), Some(2));

    // Other errors: 1.
    let err = fails(&["add-user", "alice"], &pki, 1);
    assert!(
        err.contains("alice already has a certificate; use jw certs renew alice"),
        "{err}"
    );
    let err = fails(&["renew", "dan"], &pki, 1);
    assert!(err.contains("jw certs add-user dan"), "{err}");
    let err = fails(&["revoke", "dan"], &pki, 1);
    assert!(err.contains("nothing to revoke"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for args in [
        &["add-user", "dan"][..],
        &["renew", "alice"],
        &["revoke", "alice"],
    ] {
        let err = fails(args, &empty, 1);
        assert!(
            err.contains(&format!(
                "{} is not a PKI directory made by jw certs init",
                empty.display()
            )),
            "{args:?}: {err}"
        );
    }
    let err = fails(&["renew", "server"], &empty, 1);
    assert!(err.contains("server-ca.crt"), "{err}");
    // Nothing was written for a refused request.
    assert!(!pki.join("dan.crt").exists() && !pki.join("dan.key").exists());
    assert_eq!(record(&pki).len(), 1);
}

#[test]
fn every_certs_command_has_examples() {
    for command in ["init", "add-user", "renew", "revoke"] {
        let out = Command::new(env!("CARGO_BIN_EXE_jw"))
            .args(["certs", command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}");
        let help = text(&out.stdout);
        assert!(
            help.contains(&format!("Examples:\n  jw certs {command} ")),
            "{command}:\n{help}"
        );
    }
}

#[test]
fn the_dev_pki_has_a_crl_and_a_record() {
    let certs = common::certs();
    let crl = std::fs::read_to_string(certs.join("crl.pem")).unwrap();
    assert!(crl.starts_with("-----BEGIN X509 CRL-----\n"), "{crl}");
    let users: Vec<String> = record(&certs).into_iter().map(|(_, u)| u).collect();
    assert_eq!(users, ["alice", "bob", "admin", "alice"]);
}
