//! The PKI's lifecycle in temporary directories: init, add-user, renew,
//! revoke, their refusals, and a CRL rustls's verifier enforces.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};

use super::*;

fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let opts = PkiOptions {
        users: vec!["alice".into()],
        admins: vec!["root".into()],
        ..PkiOptions::default()
    };
    init(dir.path(), &opts).unwrap();
    dir
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn parsed_crl(dir: &Path) -> (u64, Vec<String>) {
    let der = CertificateRevocationListDer::from_pem_file(crl_path(dir)).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).unwrap();
    let number = crl.crl_number().unwrap().to_u64_digits();
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| issue::serial_text(r.raw_serial()))
        .collect();
    (number.first().copied().unwrap_or(0), serials)
}

/// (serial, subject CN, subject O values, public key) of a certificate.
fn details(path: &Path) -> (String, String, Vec<String>, Vec<u8>) {
    let der = cert_der(path);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let cn = strings(&mut cert.subject().iter_common_name()).remove(0);
    let orgs = strings(&mut cert.subject().iter_organization());
    (
        issue::serial_text(cert.raw_serial()),
        cn,
        orgs,
        cert.public_key().subject_public_key.data.to_vec(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn users_in_record(dir: &Path) -> Vec<String> {
    record::entries(dir)
        .unwrap()
        .into_iter()
        .map(|e| e.user)
        .collect()
}

#[test]
fn init_writes_an_empty_crl_and_records_its_users() {
    let dir = pki();
    let pem = std::fs::read_to_string(crl_path(dir.path())).unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"), "{pem}");
    assert_eq!(parsed_crl(dir.path()), (1, vec![]));
    assert_eq!(users_in_record(dir.path()), ["alice", "root"]);
    let alice = details(&dir.path().join("alice.crt"));
    assert_eq!(record::entries(dir.path()).unwrap()[0].serial, alice.0);
    assert_eq!(alice.0.len(), 32, "16 bytes: {}", alice.0);
    assert_eq!(details(&dir.path().join("root.crt")).2, ["admin"]);
    // Not over another PKI.
    let again = init(dir.path(), &PkiOptions::default()).unwrap_err();
    assert!(matches!(again, PkiError::Exists { .. }), "{again}");
}

#[test]
fn a_record_without_its_last_newline_stays_readable() {
    let dir = pki();
    let record = record_path(dir.path());
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.trim_end()).unwrap();
    add_user(dir.path(), &UserOptions::new("dave")).unwrap();
    assert_eq!(users_in_record(dir.path()), ["alice", "root", "dave"]);
    revoke(dir.path(), "dave").unwrap();
}

#[test]
fn a_fifo_in_the_directory_is_refused_not_waited_on() {
    let dir = pki();
    std::fs::remove_file(crl_path(dir.path())).unwrap();
    nix::unistd::mkfifo(
        &crl_path(dir.path()),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let err = revoke(dir.path(), "alice").unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn add_user_issues_records_and_protects_the_key() {
    let dir = pki();
    let opts = UserOptions {
        admin: true,
        groups: vec!["ops".into()],
        ..UserOptions::new("carol")
    };
    let written = add_user(dir.path(), &opts).unwrap();
    let (crt, key) = (dir.path().join("carol.crt"), dir.path().join("carol.key"));
    assert_eq!(written, [crt.clone(), key.clone()]);
    assert_eq!((mode(&crt), mode(&key)), (0o644, 0o600));
    let (serial, cn, orgs, _) = details(&crt);
    assert_eq!(
        (cn.as_str(), orgs),
        ("carol", vec!["ops".to_string(), "admin".to_string()])
    );
    let entries = record::entries(dir.path()).unwrap();
    let last = entries.last().unwrap();
    assert_eq!(
        (last.serial.as_str(), last.user.as_str()),
        (serial.as_str(), "carol")
    );
    let days = (last.not_after - time::OffsetDateTime::now_utc()).whole_days();
    assert!((364..=365).contains(&days), "{days}");
    // jwd's identity reads the same subject.
    let id = crate::tls::identity(&cert_der(&crt), "admin").unwrap();
    assert!(id.admin && id.user == "carol");
}

#[test]
fn add_user_refuses_bad_names_collisions_and_non_pki_directories() {
    let dir = pki();
    let err = |name: &str| add_user(dir.path(), &UserOptions::new(name)).unwrap_err();
    assert!(matches!(err("a/b"), PkiError::BadUser(_)));
    assert!(matches!(err(".x"), PkiError::BadUser(_)));
    for reserved in ["server", "server-ca", "client-ca", "crl", "issued"] {
        let e = err(reserved);
        assert!(matches!(e, PkiError::Reserved(_)), "{reserved}: {e}");
        assert!(e.is_usage());
    }
    let e = err("alice");
    assert_eq!(
        e.to_string(),
        "alice already has a certificate; use jw certs renew alice"
    );
    let bad_group = UserOptions {
        groups: vec!["a b".into()],
        ..UserOptions::new("dan")
    };
    assert!(matches!(
        add_user(dir.path(), &bad_group),
        Err(PkiError::BadGroup(_))
    ));
    let three = UserOptions {
        admin: true,
        groups: vec!["a".into(), "b".into()],
        ..UserOptions::new("dan")
    };
    let e = add_user(dir.path(), &three).unwrap_err();
    assert!(
        matches!(e, PkiError::TooManyGroups(_)) && e.is_usage(),
        "{e}"
    );
    let long = UserOptions {
        days: 0,
        ..UserOptions::new("dan")
    };
    assert!(matches!(
        add_user(dir.path(), &long),
        Err(PkiError::BadDays(0))
    ));
    let empty = tempfile::tempdir().unwrap();
    let e = add_user(empty.path(), &UserOptions::new("dan")).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("is not a PKI directory made by jw certs init"),
        "{text}"
    );
    assert!(text.contains("client-ca.crt"), "{text}");
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());
}

#[test]
fn renew_keeps_the_subject_with_a_new_key_and_serial() {
    let dir = pki();
    let two_groups = UserOptions {
        admin: true,
        groups: vec!["ops".into()],
        ..UserOptions::new("root2")
    };
    add_user(dir.path(), &two_groups).unwrap();
    renew(dir.path(), "root2", 30).unwrap();
    assert_eq!(details(&dir.path().join("root2.crt")).2, ["ops", "admin"]);

    let crt = dir.path().join("root.crt");
    let before = details(&crt);
    let written = renew(dir.path(), "root", 30).unwrap();
    assert_eq!(written, [crt.clone(), dir.path().join("root.key")]);
    let after = details(&crt);
    assert_eq!((&after.1, &after.2), (&before.1, &before.2));
    assert_ne!(after.0, before.0);
    assert_ne!(after.3, before.3);
    assert_eq!(mode(&dir.path().join("root.key")), 0o600);
    // The new key is the new certificate's.
    crate::tls::server_config(
        &dir.path().join("server.crt"),
        &dir.path().join("server.key"),
        &dir.path().join("client-ca.crt"),
    )
    .unwrap();
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.path().join("root.key")).unwrap())
            .unwrap();
    assert_eq!(key.public_key_raw(), after.3);
    assert_eq!(
        users_in_record(dir.path()),
        ["alice", "root", "root2", "root2", "root"]
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".new")));
    let e = renew(dir.path(), "nobody", 30).unwrap_err().to_string();
    assert!(e.contains("jw certs add-user nobody"), "{e}");
}

#[test]
fn renew_server_keeps_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PkiOptions {
        server_names: vec!["jw.example.com".into(), "10.0.0.1".into(), "::1".into()],
        ..PkiOptions::default()
    };
    init(dir.path(), &opts).unwrap();
    let path = dir.path().join("server.crt");
    let ca = ca::load(dir.path(), "server-ca").unwrap();
    let before = issue::read(&path, &ca).unwrap();
    renew(dir.path(), "server", 365).unwrap();
    let after = issue::read(&path, &ca).unwrap();
    assert_eq!(after.subject, before.subject);
    assert_eq!(after.subject.names, ["jw.example.com", "10.0.0.1", "::1"]);
    assert_ne!(after.serial, before.serial);
    assert_eq!(mode(&dir.path().join("server.key")), 0o600);
    // The server is not a client: not recorded.
    assert!(record::entries(dir.path()).unwrap().is_empty());
    crate::tls::server_config(
        &path,
        &dir.path().join("server.key"),
        &dir.path().join("client-ca.crt"),
    )
    .unwrap();
}

#[test]
fn revoke_covers_every_renewal_and_keeps_earlier_entries() {
    let dir = pki();
    let first = details(&dir.path().join("alice.crt")).0;
    renew(dir.path(), "alice", 365).unwrap();
    let second = details(&dir.path().join("alice.crt")).0;
    let done = revoke(dir.path(), "alice").unwrap();
    assert_eq!(done.revoked, [first.clone(), second.clone()]);
    assert_eq!((done.crl_number, done.already.len()), (2, 0));
    assert_eq!(
        parsed_crl(dir.path()),
        (2, vec![first.clone(), second.clone()])
    );

    // Twice: nothing new, the CRL as it was.
    let again = revoke(dir.path(), "alice").unwrap();
    assert_eq!(
        (again.revoked.len(), again.already.len(), again.crl_number),
        (0, 2, 2)
    );

    // A revoked user renewed, then revoked again; root's entry joins.
    renew(dir.path(), "alice", 365).unwrap();
    let third = details(&dir.path().join("alice.crt")).0;
    let root = details(&dir.path().join("root.crt")).0;
    revoke(dir.path(), "root").unwrap();
    let done = revoke(dir.path(), "alice").unwrap();
    assert_eq!((done.revoked, done.already.len()), (vec![third.clone()], 2));
    assert_eq!(
        parsed_crl(dir.path()),
        (4, vec![first, second, root, third])
    );

    assert!(matches!(
        revoke(dir.path(), "server"),
        Err(PkiError::RevokeServer)
    ));
    let e = revoke(dir.path(), "nobody").unwrap_err();
    assert!(matches!(e, PkiError::Unknown { .. }), "{e}");
}

#[test]
fn a_damaged_record_does_not_stop_a_revoke() {
    let dir = pki();
    let alice = details(&dir.path().join("alice.crt")).0;
    let record = record_path(dir.path());
    let mut text = std::fs::read_to_string(&record).unwrap();
    // A line of garbage, and one of alice's whose date was mangled.
    text.push_str("garbage here\nabc123 alice yesterday\n");
    std::fs::write(&record, text).unwrap();
    let done = revoke(dir.path(), "alice").unwrap();
    let mut revoked = done.revoked.clone();
    revoked.sort();
    let mut want = vec![alice, "abc123".to_string()];
    want.sort();
    assert_eq!(revoked, want);
    assert_eq!(done.skipped.len(), 1, "{:?}", done.skipped);
    assert!(
        done.skipped[0].contains("garbage here"),
        "{:?}",
        done.skipped
    );
    assert_eq!(parsed_crl(dir.path()).1.len(), 2);
}

#[test]
fn a_pki_without_a_crl_gets_one_at_its_first_revocation() {
    let dir = pki();
    std::fs::remove_file(crl_path(dir.path())).unwrap();
    std::fs::remove_file(record_path(dir.path())).unwrap();
    // Not in the record: alice.crt itself is revoked.
    let done = revoke(dir.path(), "alice").unwrap();
    assert_eq!(done.revoked, [details(&dir.path().join("alice.crt")).0]);
    assert_eq!(parsed_crl(dir.path()), (1, done.revoked));
}

#[test]
fn expired_certificates_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PkiOptions {
        test_extras: true,
        ..PkiOptions::default()
    };
    init(dir.path(), &opts).unwrap();
    let done = revoke(dir.path(), "alice").unwrap();
    assert_eq!((done.revoked.len(), done.expired.len()), (0, 1));
    assert_eq!(parsed_crl(dir.path()), (1, vec![]));
}

fn verifier(dir: &Path) -> Arc<dyn ClientCertVerifier> {
    let mut roots = RootCertStore::empty();
    roots.add(cert_der(&dir.join("client-ca.crt"))).unwrap();
    let crl = CertificateRevocationListDer::from_pem_file(crl_path(dir)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(vec![crl])
        .build()
        .unwrap()
}

#[test]
fn rustls_refuses_a_revoked_certificate_and_accepts_the_others() {
    let dir = pki();
    let alice = cert_der(&dir.path().join("alice.crt"));
    let root = cert_der(&dir.path().join("root.crt"));
    let now = UnixTime::now();
    let before = verifier(dir.path());
    before.verify_client_cert(&alice, &[], now).unwrap();
    revoke(dir.path(), "alice").unwrap();
    let after = verifier(dir.path());
    assert_eq!(
        after.verify_client_cert(&alice, &[], now).unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
    after.verify_client_cert(&root, &[], now).unwrap();
    // Renewed after the revocation: accepted again.
    renew(dir.path(), "alice", 30).unwrap();
    let renewed = cert_der(&dir.path().join("alice.crt"));
    verifier(dir.path())
        .verify_client_cert(&renewed, &[], now)
        .unwrap();
}

#[test]
fn concurrent_runs_lose_nothing() {
    let dir = pki();
    let names: Vec<String> = (0..6).map(|i| format!("user{i}")).collect();
    std::thread::scope(|s| {
        for name in &names {
            let dir = dir.path();
            s.spawn(move || {
                add_user(dir, &UserOptions::new(name)).unwrap();
                renew(dir, name, 10).unwrap();
                revoke(dir, name).unwrap();
            });
        }
    });
    let record = record::entries(dir.path()).unwrap();
    assert_eq!(record.len(), 2 + 2 * names.len());
    let (_, revoked) = parsed_crl(dir.path());
    for entry in record.iter().filter(|e| e.user.starts_with("user")) {
        assert!(
            revoked.contains(&entry.serial),
            "{entry:?} not in {revoked:?}"
        );
    }
    assert_eq!(revoked.len(), 2 * names.len());
}

#[test]
fn a_crl_from_another_ca_is_refused() {
    let dir = pki();
    let other = pki();
    std::fs::copy(crl_path(other.path()), crl_path(dir.path())).unwrap();
    let e = revoke(dir.path(), "alice").unwrap_err().to_string();
    assert!(e.contains("not signed by the client CA"), "{e}");
}

#[test]
fn the_committed_dev_pki_has_its_crl_and_record() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&committed).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let dir = dir.path();
    assert_eq!(parsed_crl(dir), (1, vec![]));
    let recorded: Vec<(String, String)> = record::entries(dir)
        .unwrap()
        .into_iter()
        .map(|e| (e.serial, e.user))
        .collect();
    let files: Vec<(String, String)> = ["alice", "bob", "admin", "expired"]
        .iter()
        .map(|f| {
            let (serial, cn, _, _) = details(&dir.join(format!("{f}.crt")));
            (serial, cn)
        })
        .collect();
    assert_eq!(recorded, files);
    verifier(dir)
        .verify_client_cert(&cert_der(&dir.join("bob.crt")), &[], UnixTime::now())
        .unwrap();
    // The lifecycle works on it.
    add_user(dir, &UserOptions::new("carol")).unwrap();
    renew(dir, "alice", 30).unwrap();
    let done = revoke(dir, "alice").unwrap();
    assert_eq!((done.revoked.len(), done.expired.len()), (2, 1));
    assert_eq!(parsed_crl(dir).0, 2);
}
