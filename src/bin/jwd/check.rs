//! `jwd --check-config` (like `sshd -t`): reads the settings, the TLS
//! material, the data directory and the cgroup layout, says what it found
//! and whether jwd would start with them. Changes nothing, so it may run
//! beside the jwd it checks (`systemctl reload` after a clean check).

use std::io::Write;
use std::net::TcpListener;

use jw::job::check::{Finding, Verdict};

use crate::args::Args;

/// Checks everything and prints one line per finding on stdout; `true`
/// when jwd would start.
pub(crate) fn check(args: &Args) -> bool {
    let mut found = vec![settings(args)];
    found.extend(tls(args));
    found.push(listen(args));
    found.extend(jw::job::check::check(&args.engine_config()));
    let mut out = std::io::stdout().lock();
    for f in &found {
        let verdict = match f.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(out, "{verdict:<5} {:<10} {}", f.subject, f.text);
    }
    let failed = found.iter().filter(|f| f.verdict == Verdict::Fail).count();
    let _ = if failed == 0 {
        writeln!(out, "jwd would start with this configuration")
    } else {
        writeln!(
            out,
            "jwd would NOT start with this configuration: {failed} problem{} above",
            if failed == 1 { "" } else { "s" }
        )
    };
    failed == 0
}

fn finding(verdict: Verdict, subject: &'static str, text: String) -> Finding {
    Finding {
        verdict,
        subject,
        text,
    }
}

fn settings(args: &Args) -> Finding {
    let text = match &args.config {
        Some(path) => format!(
            "read {} (flags on the command line override it)",
            path.display()
        ),
        None => "no --config file: flags and defaults only".into(),
    };
    finding(Verdict::Ok, "config", text)
}

fn tls(args: &Args) -> Vec<Finding> {
    let files = jw::tls::ServerTls {
        cert: args.cert.clone(),
        key: args.key.clone(),
        client_ca: args.client_ca.clone(),
        crls: args.crl.clone(),
    };
    let d = match files.describe() {
        Ok(d) => d,
        Err(e) => return vec![finding(Verdict::Fail, "tls", e.to_string())],
    };
    let mut found = vec![finding(
        Verdict::Ok,
        "tls",
        format!(
            "{} ({}, names {}, valid until {}) and {} (owner-only) belong together",
            args.cert.display(),
            d.server.subject,
            d.server.names.join(", "),
            d.server.not_after,
            args.key.display()
        ),
    )];
    for ca in &d.client_cas {
        found.push(finding(
            Verdict::Ok,
            "tls",
            format!("client CA {ca} ({})", args.client_ca.display()),
        ));
    }
    if d.crls.is_empty() {
        found.push(finding(
            Verdict::Warn,
            "tls",
            "no --crl: a client certificate stays valid until it expires, even if revoked".into(),
        ));
    }
    for crl in &d.crls {
        found.push(finding(
            Verdict::Ok,
            "tls",
            format!(
                "revocation list {}: issued by {} on {}, {} revoked",
                crl.path.display(),
                crl.issuer,
                crl.this_update,
                crl.entries
            ),
        ));
    }
    found
}

fn listen(args: &Args) -> Finding {
    match TcpListener::bind(args.listen) {
        Ok(_) => finding(Verdict::Ok, "listen", format!("{} is free", args.listen)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => finding(
            Verdict::Warn,
            "listen",
            format!(
                "{} is in use (by the jwd this checks?): a second jwd there would refuse to start",
                args.listen
            ),
        ),
        Err(e) => finding(
            Verdict::Fail,
            "listen",
            format!("cannot listen on {}: {e}", args.listen),
        ),
    }
}
