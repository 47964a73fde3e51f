//! jwd through its real binary, real certificates (certs/), loopback only.
//! Needs root (jobs run in cgroups).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::raw::{self, client_config};
use common::{certs, Jwd};
use jw::client::{Client, ClientError};
use jw::protocol::{
    self, ClientMessage, ErrorCode, Event, FrameDecoder, JobState, LogsRequest, OutputStream,
    Request, ServerMessage, StartRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn req(command: &str, args: &[&str]) -> StartRequest {
    common::start_req(command, args)
}

fn logs(job: jw::protocol::JobId, follow: bool, credit: u32) -> LogsRequest {
    LogsRequest {
        job,
        stdout: Some(0),
        stderr: Some(0),
        follow,
        credit,
    }
}

/// Reads a logs stream to its end, granting credit as it goes.
async fn collect(mut stream: jw::client::Stream) -> (Vec<u8>, Vec<u8>, jw::protocol::JobInfo) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut next: [Option<u64>; 2] = [None, None];
    loop {
        match stream.next().await.unwrap() {
            Some(Event::Output(c)) => {
                let (target, i) = if c.stream == OutputStream::Stdout {
                    (&mut out, 0)
                } else {
                    (&mut err, 1)
                };
                if let Some(n) = next[i] {
                    assert_eq!(c.offset, n, "chunks are contiguous");
                }
                next[i] = Some(c.offset + c.data.len() as u64);
                target.extend_from_slice(&c.data);
                stream.grant(c.data.len() as u32).await.unwrap();
            }
            Some(Event::End(info)) => return (out, err, info),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_on_the_good_path() {
    let Some(jwd) = Jwd::start("good_path", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    assert_eq!(alice.welcome().identity.user, "alice");
    assert!(!alice.welcome().identity.admin);

    let id = alice
        .start(req("sh", &["-c", "echo out; echo err >&2; exit 3"]))
        .await
        .unwrap();
    let info = alice.wait(id).await.unwrap();
    assert_eq!((info.state, info.exit_code), (JobState::Exited, Some(3)));
    assert_eq!(alice.status(id).await.unwrap().exit_code, Some(3));

    let (out, err, end) = collect(alice.logs(logs(id, false, 1 << 20)).await.unwrap()).await;
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    assert_eq!(end.exit_code, Some(3));
    // From an offset, one stream only.
    let mut only = logs(id, false, 1 << 20);
    only.stdout = Some(1);
    only.stderr = None;
    let (out, err, _) = collect(alice.logs(only).await.unwrap()).await;
    assert_eq!((out.as_slice(), err.len()), (&b"ut\n"[..], 0));

    let sleeper = alice.start(req("sleep", &["1000"])).await.unwrap();
    let list = alice.list(false).await.unwrap();
    assert_eq!(
        list.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![id, sleeper]
    );
    let stopped = alice.stop(sleeper, 1000).await.unwrap();
    assert!(stopped.stopped);
    assert_eq!(stopped.signal, Some(libc::SIGTERM));

    alice.remove(id).await.unwrap();
    let err = alice.status(id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NOT_FOUND));

    // Cancel: a follow of a long job ends with `cancelled`.
    let long = alice.start(req("sleep", &["1000"])).await.unwrap();
    let mut follow = alice.logs(logs(long, true, 1 << 20)).await.unwrap();
    follow.cancel().await.unwrap();
    assert_eq!(
        follow.next().await.unwrap_err().code(),
        Some(ErrorCode::CANCELLED)
    );
    alice.stop(long, 0).await.unwrap();

    // Exec failures and bad requests are errors with the right codes.
    let e = alice.start(req("/no/such/program", &[])).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::COMMAND_NOT_FOUND));
    assert!(e.to_string().contains("No such file"), "{e}");
    let mut bad = req("/bin/true", &[]);
    bad.limits.memory_bytes = Some(1);
    let e = alice.start(bad).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BAD_REQUEST));
    assert!(e.to_string().contains("memory"), "{e}");
    let mut host = req("/bin/true", &[]);
    host.network = jw::protocol::Network::Host;
    assert_eq!(
        alice.start(host).await.unwrap_err().code(),
        Some(ErrorCode::PERMISSION_DENIED)
    );
    let running = alice.start(req("sleep", &["1000"])).await.unwrap();
    assert_eq!(
        alice.remove(running).await.unwrap_err().code(),
        Some(ErrorCode::FAILED_PRECONDITION)
    );
    alice.stop(running, 0).await.unwrap();

    assert!(
        jwd.log().contains("action=\"start\""),
        "audit lines are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_only_their_jobs_and_admins_see_all() {
    let Some(jwd) = Jwd::start("authz", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let bob = jwd.client("bob").await;
    let admin = jwd.client("admin").await;
    assert!(admin.welcome().identity.admin);
    let id = alice.start(req("sleep", &["1000"])).await.unwrap();

    assert_eq!(
        bob.status(id).await.unwrap_err().code(),
        Some(ErrorCode::NOT_FOUND)
    );
    assert_eq!(
        bob.stop(id, 0).await.unwrap_err().code(),
        Some(ErrorCode::NOT_FOUND)
    );
    assert_eq!(
        bob.wait(id).await.unwrap_err().code(),
        Some(ErrorCode::NOT_FOUND)
    );
    assert_eq!(
        bob.remove(id).await.unwrap_err().code(),
        Some(ErrorCode::NOT_FOUND)
    );
    let mut s = bob.logs(logs(id, false, 1024)).await.unwrap();
    assert_eq!(
        s.next().await.unwrap_err().code(),
        Some(ErrorCode::NOT_FOUND)
    );
    assert!(bob.list(false).await.unwrap().is_empty());
    assert_eq!(
        alice.list(true).await.unwrap_err().code(),
        Some(ErrorCode::PERMISSION_DENIED)
    );

    assert_eq!(admin.status(id).await.unwrap().owner, "alice");
    assert_eq!(admin.list(true).await.unwrap().len(), 1);
    assert!(
        admin.list(false).await.unwrap().is_empty(),
        "without --all, admins list their own"
    );
    let info = admin.stop(id, 0).await.unwrap();
    assert!(info.stopped);
    admin.remove(id).await.unwrap();
    assert!(alice.list(false).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_and_old_tls_are_refused() {
    let Some(jwd) = Jwd::start("badcerts", &[]) else {
        return;
    };
    for (cert, why) in [
        ("rogue", "UnknownIssuer"),
        ("expired", "certificate expired"),
    ] {
        let config = client_config(&format!("{cert}.crt"), &format!("{cert}.key"));
        match Client::connect_with(&jwd.addr, config).await {
            Err(ClientError::Rejected { .. }) => {}
            Err(e) => panic!("{cert}: expected a rejection, got {e}"),
            Ok(_) => panic!("{cert}: the server accepted a bad certificate"),
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !jwd.log().contains(why) {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not log why ({why}):\n{}",
                jwd.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // No client certificate at all.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in jw::tls::load_certs(&certs().join("server-ca.crt")).unwrap() {
            r.add(c).unwrap();
        }
        Arc::new(r)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut anon = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    anon.alpn_protocols = vec![b"jw/1".to_vec()];
    assert!(Client::connect_with(&jwd.addr, Arc::new(anon))
        .await
        .is_err());

    // A client that offers only TLS 1.2 (with a good certificate).
    let mut old = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            jw::tls::load_certs(&certs().join("alice.crt")).unwrap(),
            jw::tls::load_key(&certs().join("alice.key")).unwrap(),
        )
        .unwrap();
    old.alpn_protocols = vec![b"jw/1".to_vec()];
    match Client::connect_with(&jwd.addr, Arc::new(old)).await {
        Err(e) => assert!(
            e.to_string().contains("ProtocolVersion") || e.to_string().contains("version"),
            "{e}"
        ),
        Ok(_) => panic!("TLS 1.2 was accepted"),
    }
    // Good clients are unaffected.
    let alice = jwd.client("alice").await;
    assert!(alice.list(false).await.unwrap().is_empty());
}

/// A raw TLS session after a good handshake and Hello, for sending bytes
/// no well-behaved client would.
async fn raw_session(jwd: &Jwd) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_session_as(jwd, "raw").await
}

/// A raw session whose Hello names the client `client`.
async fn raw_session_as(
    jwd: &Jwd,
    client: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_session_with(jwd, client, None).await
}

/// A raw session, with a small TCP receive buffer if asked (so a client
/// that does not read stops the server's writes after little data).
async fn raw_session_with(
    jwd: &Jwd,
    client: &str,
    recv_buffer: Option<u32>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw::connect(jwd, "alice", 1, client, recv_buffer).await.0
}

async fn read_server_message(tls: &mut raw::Tls) -> Option<ServerMessage> {
    raw::read_message(tls, &mut FrameDecoder::new(protocol::MAX_FRAME)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_and_a_close_while_others_carry_on() {
    let Some(jwd) = Jwd::start("malformed", &[]) else {
        return;
    };
    let bystander = jwd.client("bob").await;
    let job = bystander
        .start(req(
            "sh",
            &["-c", "for i in $(seq 1 50); do echo $i; sleep 0.02; done"],
        ))
        .await
        .unwrap();
    let follower = tokio::spawn({
        let bystander = bystander.clone();
        async move { collect(bystander.logs(logs(job, true, 1 << 20)).await.unwrap()).await }
    });

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x00\x00\x05\xff\xff\xff\xff\xff".to_vec()),
        ("oversize", vec![0x7f, 0xff, 0xff, 0xff]),
        ("unknown variant", vec![0, 0, 0, 1, 9]),
        ("stream zero", {
            let mut f = Vec::new();
            protocol::encode(
                &ClientMessage::Request {
                    stream: 0,
                    request: Request::List { all: false },
                },
                &mut f,
            )
            .unwrap();
            f
        }),
    ];
    for (name, bytes) in cases {
        let mut tls = raw_session(&jwd).await;
        tls.write_all(&bytes).await.unwrap();
        match read_server_message(&mut tls).await {
            Some(ServerMessage::Fatal(e)) => {
                assert_eq!(e.code, ErrorCode::BAD_REQUEST, "{name}: {e}")
            }
            other => panic!("{name}: expected Fatal, got {other:?}"),
        }
        assert!(
            read_server_message(&mut tls).await.is_none(),
            "{name}: the connection stays open"
        );
    }
    let (out, _, end) = follower.await.unwrap();
    assert_eq!(end.exit_code, Some(0));
    assert_eq!(
        out,
        (1..=50)
            .map(|i| format!("{i}\n"))
            .collect::<String>()
            .into_bytes()
    );
    assert!(bystander.list(false).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_mid_handshake_leak_nothing() {
    let Some(jwd) = Jwd::start("handshake_drop", &[]) else {
        return;
    };
    // Warm up: one full session so lazily opened fds exist before counting.
    jwd.client("alice").await.list(false).await.unwrap();
    let before = jwd.fd_count();
    for i in 0..1000 {
        let mut tcp = tokio::net::TcpStream::connect(&jwd.addr).await.unwrap();
        if i % 2 == 0 {
            // Half a ClientHello.
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                .await
                .unwrap();
        }
        drop(tcp);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = jwd.fd_count();
        if now <= before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jwd holds {now} fds, {before} before"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    jwd.client("alice").await.list(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_credit_does_not_stall_another() {
    let Some(jwd) = Jwd::start("credit", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let big = alice
        .start(req("sh", &["-c", "head -c 1000000 /dev/zero"]))
        .await
        .unwrap();
    alice.wait(big).await.unwrap();
    // Stream 1 gets 1000 bytes of credit and never more.
    let mut starved = alice.logs(logs(big, true, 1000)).await.unwrap();
    let ticker = alice
        .start(req(
            "sh",
            &[
                "-c",
                "for i in $(seq 1 20); do echo tick$i; sleep 0.02; done",
            ],
        ))
        .await
        .unwrap();
    let (out, _, end) = collect(alice.logs(logs(ticker, true, 1 << 20)).await.unwrap()).await;
    assert_eq!(end.exit_code, Some(0));
    assert_eq!(
        out,
        (1..=20)
            .map(|i| format!("tick{i}\n"))
            .collect::<String>()
            .into_bytes()
    );
    // The starved stream got exactly its credit, and nothing more.
    let mut got = 0;
    while got < 1000 {
        match starved.next().await.unwrap() {
            Some(Event::Output(c)) => got += c.data.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 1000);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), starved.next())
            .await
            .is_err(),
        "sent past the credit"
    );
    starved.grant(999_000).await.unwrap();
    let mut rest = 0;
    loop {
        match starved.next().await.unwrap() {
            Some(Event::Output(c)) => rest += c.data.len(),
            Some(Event::End(_)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rest, 999_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_job_limit() {
    let Some(jwd) = Jwd::start("maxjobs", &["--max-jobs-per-user", "2"]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let a = alice.start(req("sleep", &["1000"])).await.unwrap();
    let b = alice.start(req("sleep", &["1000"])).await.unwrap();
    let e = alice.start(req("sleep", &["1000"])).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RESOURCE_EXHAUSTED));
    // Another user is not affected.
    let bob = jwd.client("bob").await;
    let c = bob.start(req("sleep", &["1000"])).await.unwrap();
    for (client, id) in [(&alice, a), (&alice, b), (&bob, c)] {
        client.stop(id, 0).await.unwrap();
    }
    alice.start(req("true", &[])).await.unwrap();
}

/// Runs another jwd on `data_dir` and `cgroup_name` until it exits (it
/// must, within a minute); returns whether it succeeded and its log.
fn second_jwd(data_dir: &std::path::Path, cgroup_name: &str) -> (bool, String) {
    let mut child = common::jwd_command(data_dir, cgroup_name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("jwd runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second jwd on the same data directory or cgroup did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    (status.success(), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_jwd_on_the_same_data_dir_or_cgroup_is_refused_and_the_first_keeps_its_jobs() {
    let Some(jwd) = Jwd::start("single", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let id = alice.start(req("sleep", &["1000"])).await.unwrap();
    let other_data = tempfile::tempdir().unwrap();
    let other_name = format!("{}-other", jwd.cgroup_name);
    for (data_dir, name, what) in [
        (
            jwd.data_dir.as_path(),
            other_name.as_str(),
            "data directory",
        ),
        (
            other_data.path(),
            jwd.cgroup_name.as_str(),
            "cgroup subtree",
        ),
    ] {
        let (ok, log) = second_jwd(data_dir, name);
        assert!(!ok, "the second jwd ran:\n{log}");
        assert!(
            log.contains(&format!("the {what}")) && log.contains("is in use by"),
            "{log}"
        );
        // The first one's job runs on, and the first one serves it.
        let info = alice.status(id).await.unwrap();
        assert_eq!(info.state, JobState::Running, "{log}");
        assert!(jwd.data_dir.join("work").exists());
    }
    alice.stop(id, 0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed_after_the_handshake_timeout() {
    // No legitimate client takes part: a slow machine only makes the close
    // come later, within the generous bound below.
    let Some(jwd) = Jwd::start("silent", &["--handshake-timeout", "2s"]) else {
        return;
    };
    let mut silent = tokio::net::TcpStream::connect(&jwd.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(120), silent.read(&mut buf))
        .await
        .expect("the silent connection was never closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !jwd.log().contains("handshake timeout") {
        assert!(std::time::Instant::now() < deadline, "{}", jwd.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_until_one_closes() {
    // A handshake timeout no slow machine reaches: this test counts.
    let Some(jwd) = Jwd::start(
        "connlimit",
        &["--handshake-timeout", "300s", "--max-connections", "3"],
    ) else {
        return;
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        match Client::connect(&jwd.options("alice")).await {
            Ok(c) => open.push(c),
            Err(e) => panic!("{e}\n{}", jwd.log()),
        }
    }
    assert!(Client::connect(&jwd.options("alice")).await.is_err());
    // jwd's log reaches this process through a pipe and a reader thread.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !jwd.log().contains("--max-connections") {
        assert!(std::time::Instant::now() < deadline, "{}", jwd.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server counts a connection until its task has finished: a new
    // one gets in once that has happened.
    drop(open.pop());
    connects_again(&jwd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_jobs_records_them_and_exits_zero() {
    let Some(mut jwd) = Jwd::start("sigterm", &["--shutdown-grace", "500ms"]) else {
        return;
    };
    let data = jwd.keep_data().unwrap();
    let alice = jwd.client("alice").await;
    let id = alice.start(req("sleep", &["1000"])).await.unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let s = jwd.terminate();
        (s, jwd)
    })
    .await
    .unwrap();
    let (status, jwd) = status;
    assert!(status.success(), "jwd exited with {status}");
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    let info = again.client("alice").await.status(id).await.unwrap();
    assert_eq!(info.state, JobState::Exited, "{info:?}");
    assert!(info.stopped);
    drop(again);
    drop(data);
}

/// Output in the page cache is sent from the shared mapping; output that is
/// not (evicted here, as after a restart or under memory pressure) is read
/// with io_uring. Both must give the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_evicted_from_the_page_cache_reads_back_the_same() {
    let Some(jwd) = Jwd::start("evicted", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let script = "i=0; while [ $i -lt 20000 ]; do echo line-$i-of-a-job-output; i=$((i+1)); done";
    let id = alice.start(req("sh", &["-c", script])).await.unwrap();
    let info = alice.wait(id).await.unwrap();
    assert_eq!(info.exit_code, Some(0));
    let expected: Vec<u8> = (0..20000)
        .flat_map(|i| format!("line-{i}-of-a-job-output\n").into_bytes())
        .collect();
    let hot = collect(alice.logs(logs(id, false, 1 << 20)).await.unwrap()).await;
    assert_eq!(hot.0, expected);

    let (path, file) = evict_stdout(&jwd, id);
    // tmpfs and ramfs (the CI guest's root) keep their pages: there the
    // second read goes the same way as the first, and the host run (ext4)
    // is the one that covers the io_uring path.
    // SAFETY: statfs is plain data; all zeroes is a valid value.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and a statfs buffer to fill.
    assert_eq!(unsafe { libc::statfs(c_path.as_ptr(), &mut fs) }, 0);
    // TMPFS_MAGIC, and RAMFS_MAGIC (0x858458f6, not in libc).
    let memory_fs = [libc::TMPFS_MAGIC, 0x8584_58f6].contains(&(fs.f_type as i64));
    assert!(
        memory_fs || !fully_resident(&file),
        "the test could not evict the file"
    );
    let cold = collect(alice.logs(logs(id, false, 1 << 20)).await.unwrap()).await;
    assert_eq!(cold.0, expected);
    assert!(cold.1.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_jobs_output_far_past_the_credit_window_reads_back_whole() {
    // A reader whose credit runs out waits for more: it used to spin on
    // its thread without yielding, so the grant that would end the wait was
    // never read and the server hung (issue 14).
    let Some(jwd) = Jwd::start("window", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let id = alice.start(req("seq", &["1", "600000"])).await.unwrap();
    assert_eq!(alice.wait(id).await.unwrap().exit_code, Some(0));
    let expected: Vec<u8> = (1..=600_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let window = 64 * 1024;
    let read = || async {
        tokio::time::timeout(
            Duration::from_secs(120),
            collect(alice.logs(logs(id, false, window)).await.unwrap()),
        )
        .await
        .expect("the read hung: the server stopped sending")
    };
    // From the page cache (the shared mapping), then evicted (io_uring).
    let hot = read().await;
    assert!(
        hot.0 == expected,
        "{} bytes of {}",
        hot.0.len(),
        expected.len()
    );
    evict_stdout(&jwd, id);
    let cold = read().await;
    assert!(
        cold.0 == expected,
        "{} bytes of {}",
        cold.0.len(),
        expected.len()
    );
    // The server still serves others.
    assert_eq!(alice.list(false).await.unwrap().len(), 1);
}

/// Writes a finished job's stdout back and asks the kernel to drop it from
/// the page cache (tmpfs and ramfs keep it anyway), so jwd's next read of
/// it goes through io_uring, not the mapping.
fn evict_stdout(jwd: &Jwd, id: jw::protocol::JobId) -> (std::path::PathBuf, std::fs::File) {
    let path = jwd
        .data_dir
        .join("jobs")
        .join(id.to_string())
        .join("stdout");
    let file = std::fs::File::open(&path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: advice on an open file; no memory is touched.
    let rc = unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(rc, 0);
    (path, file)
}

/// Whether every page of the file is in the page cache.
fn fully_resident(file: &std::fs::File) -> bool {
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: a new read-only mapping of an open file, at an address the
    // kernel picks (nothing of ours is replaced); unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(file),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    let mut pages = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `addr..addr+len` is the mapping just made; mincore writes one
    // byte per page into `pages`, which has room for every page.
    assert_eq!(unsafe { libc::mincore(addr, len, pages.as_mut_ptr()) }, 0);
    // SAFETY: unmaps the mapping made above, which nothing else uses.
    unsafe { libc::munmap(addr, len) };
    pages.iter().all(|p| p & 1 == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_name_cannot_forge_a_log_line_or_reach_a_terminal() {
    let Some(jwd) = Jwd::start("logforge", &[]) else {
        return;
    };
    let hostile =
        "jw/1\n2026-01-01T00:00:00Z  INFO audit: user=admin action=\"rm\" outcome=\"ok\"\u{1b}[2J";
    let session = raw_session_as(&jwd, hostile).await;
    drop(session);
    // The session line is written when the Hello is accepted.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !jwd.log().contains("session opened peer") || !jwd.log().contains("jw/1\\n") {
        assert!(
            std::time::Instant::now() < deadline,
            "no session line:\n{}",
            jwd.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = jwd.log();
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line:\n{log}"
    );
    assert!(log.contains("\\u{1b}[2J"), "{log}");
}

/// A finished job with 8 MiB of stdout. (A byte count: busybox's head, in
/// the test VM, takes no K/M suffix.)
async fn finished_8mib_job(client: &Client) -> jw::protocol::JobId {
    let job = client
        .start(req("head", &["-c", "8388608", "/dev/zero"]))
        .await
        .unwrap();
    let info = client.wait(job).await.unwrap();
    assert_eq!(info.output.stdout_bytes, 8 << 20, "{info:?}");
    job
}

/// A session that asks for all of `job`'s output and never reads, through
/// a 4 KiB receive buffer: jwd's writes to it stop making progress once its
/// send buffer is full.
async fn stalled_reader(
    jwd: &Jwd,
    job: jw::protocol::JobId,
    follow: bool,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut stalled = raw_session_with(jwd, "stalled", Some(4096)).await;
    let mut request = Vec::new();
    protocol::encode(
        &ClientMessage::Request {
            stream: 1,
            request: Request::Logs(logs(job, follow, protocol::MAX_CREDIT as u32)),
        },
        &mut request,
    )
    .unwrap();
    stalled.write_all(&request).await.unwrap();
    stalled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_with_a_stalled_client_and_a_start_in_flight() {
    let Some(mut jwd) = Jwd::start("drain", &["--shutdown-grace", "1s"]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    // 8 MiB of output for a reader that asks for all of it and never reads
    // (through a 4 KiB receive buffer): its connection's writes block.
    let big = finished_8mib_job(&alice).await;
    let stalled = stalled_reader(&jwd, big, true).await;
    // A job that ignores SIGTERM, and starts racing the shutdown.
    let running = alice
        .start(req("sh", &["-c", "trap '' TERM; sleep 1000"]))
        .await
        .unwrap();
    let bob = jwd.client("bob").await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let bob = bob.clone();
            tokio::spawn(async move { bob.start(req("sleep", &["1000"])).await })
        })
        .collect();
    // SIGTERM while those are under way: jwd must still end (generous
    // bound: this only catches a hang).
    let pid = nix::unistd::Pid::from_raw(jwd.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = jwd.try_wait() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jwd did not shut down:\n{}",
            jwd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}\n{}", jwd.log());
    for start in starts {
        // Refused, cut off, or started and then stopped: never left running.
        let _ = start.await;
    }
    drop(stalled);
    assert!(!jwd.log().contains("jobs still running"), "{}", jwd.log());
    // Every job was stopped and its end recorded, including those started
    // while the shutdown began: a restarted jwd finds none of them lost.
    let data = jwd.keep_data();
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    let admin = again.client("admin").await;
    let jobs = admin.list(true).await.unwrap();
    assert!(
        jobs.iter().any(|j| j.id == running && j.stopped),
        "{jobs:?}"
    );
    for job in &jobs {
        assert_ne!(job.state, JobState::Lost, "{job:?}");
    }
    drop(again);
    drop(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let Some(jwd) = Jwd::start("writetimeout", &["--write-timeout", "2s"]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let big = finished_8mib_job(&alice).await;
    let baseline = jwd.fd_count();
    // Asks for everything and never reads, through a small receive buffer:
    // jwd's writes stop making progress once its send buffer is full.
    let stalled = stalled_reader(&jwd, big, false).await;
    // Generous bounds: they only catch a connection that is never cut.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !jwd.log().contains("write timeout") {
        assert!(std::time::Instant::now() < deadline, "{}", jwd.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while jwd.fd_count() > baseline {
        assert!(
            std::time::Instant::now() < deadline,
            "jwd holds {} fds, {baseline} before the stalled client",
            jwd.fd_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client that reads is served all along.
    let all = collect(alice.logs(logs(big, false, 1 << 20)).await.unwrap()).await;
    assert_eq!(all.0.len(), 8 << 20);
    drop(stalled);
}

/// The most jwd's anonymous memory grows over `during`, sampled until it
/// resolves.
async fn peak_growth<T>(jwd: &Jwd, during: impl std::future::Future<Output = T>) -> (u64, T) {
    let base = jwd.rss_anon();
    let mut peak = base;
    tokio::pin!(during);
    let out = loop {
        tokio::select! {
            out = &mut during => break out,
            _ = tokio::time::sleep(Duration::from_millis(20)) => peak = peak.max(jwd.rss_anon()),
        }
    };
    (peak.max(jwd.rss_anon()).saturating_sub(base), out)
}

/// Waits (with a bound that only catches a leak) until jwd holds no more
/// fds than `baseline`.
async fn fds_back_to(jwd: &Jwd, baseline: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while jwd.fd_count() > baseline {
        assert!(
            std::time::Instant::now() < deadline,
            "jwd holds {} fds, {baseline} before: {:?}\n{}",
            jwd.fd_count(),
            std::fs::read_dir(format!("/proc/{}/fd", jwd.pid()))
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect::<Vec<_>>(),
            jwd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_read_hold_bounded_memory_and_others_are_served() {
    // Before the outgoing budget, each such connection grew jwd by about
    // 38 MB (every stream's chunk queued and encrypted at once).
    let Some(jwd) = Jwd::start("nonreaders", &["--write-timeout", "5s"]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let big = finished_8mib_job(&alice).await;
    let baseline = jwd.fd_count();
    let (growth, ()) = peak_growth(&jwd, async {
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut session = raw_session_with(&jwd, "stalled", Some(4096)).await;
            let mut requests = Vec::new();
            for stream in 1..=512u32 {
                protocol::encode(
                    &ClientMessage::Request {
                        stream,
                        request: Request::Logs(logs(big, false, protocol::MAX_CREDIT as u32)),
                    },
                    &mut requests,
                )
                .unwrap();
            }
            session.write_all(&requests).await.unwrap();
            stalled.push(session);
        }
        // A client that reads is served in full meanwhile.
        let all = collect(alice.logs(logs(big, false, 1 << 20)).await.unwrap()).await;
        assert_eq!(all.0.len(), 8 << 20);
        // The stalled ones are cut off at the write timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while jwd.log().matches("write timeout").count() < 4 {
            assert!(std::time::Instant::now() < deadline, "{}", jwd.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(stalled);
    })
    .await;
    assert!(
        growth < 32 << 20,
        "jwd grew by {} MiB for 4 connections of 512 streams that never read",
        growth >> 20
    );
    fds_back_to(&jwd, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_without_reading_the_replies_hold_bounded_memory() {
    let Some(jwd) = Jwd::start("flood", &["--write-timeout", "5s"]) else {
        return;
    };
    let baseline = jwd.fd_count();
    let session = raw_session_with(&jwd, "flood", Some(4096)).await;
    let (growth, sent) = peak_growth(&jwd, async move {
        let mut session = session;
        // 400,000 requests whose replies (~150 bytes of jwd's memory each
        // if queued) are never read: jwd stops reading them instead, and
        // cuts the client off at the write timeout.
        let mut sent = 0u32;
        let mut batch = Vec::new();
        for stream in 1..=400_000u32 {
            protocol::encode(
                &ClientMessage::Request {
                    stream,
                    request: Request::Status {
                        job: jw::protocol::JobId([7; 16]),
                    },
                },
                &mut batch,
            )
            .unwrap();
            if stream % 1000 == 0 {
                if session.write_all(&batch).await.is_err() {
                    break;
                }
                batch.clear();
                sent = stream;
            }
        }
        sent
    })
    .await;
    assert!(
        growth < 32 << 20,
        "jwd grew by {} MiB for {sent} requests whose replies were never read",
        growth >> 20
    );
    // jwd's log reaches this process through a pipe and a reader thread,
    // behind tens of thousands of audit lines.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !jwd.log().contains("write timeout") {
        assert!(
            std::time::Instant::now() < deadline,
            "sent {sent}; no write timeout logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fds_back_to(&jwd, baseline).await;
    // jwd serves on.
    jwd.client("alice").await.list(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_caps_on_connections_and_streams() {
    let Some(jwd) = Jwd::start(
        "usercaps",
        &[
            "--max-connections-per-user",
            "2",
            "--max-streams-per-user",
            "3",
        ],
    ) else {
        return;
    };
    let a1 = jwd.client("alice").await;
    let _a2 = jwd.client("alice").await;
    let err = Client::connect(&jwd.options("alice"))
        .await
        .err()
        .expect("a third connection of alice is refused");
    assert_eq!(err.code(), Some(ErrorCode::RESOURCE_EXHAUSTED), "{err}");
    assert!(
        err.to_string().contains("--max-connections-per-user"),
        "{err}"
    );
    // bob is not alice.
    let bob = jwd.client("bob").await;
    let bobs = bob.start(req("sleep", &["1000"])).await.unwrap();

    let job = a1.start(req("sleep", &["1000"])).await.unwrap();
    let mut follows = Vec::new();
    for _ in 0..3 {
        follows.push(a1.logs(logs(job, true, 65536)).await.unwrap());
    }
    let mut fourth = a1.logs(logs(job, true, 65536)).await.unwrap();
    let err = fourth.next().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RESOURCE_EXHAUSTED), "{err}");
    assert!(err.to_string().contains("--max-streams-per-user"), "{err}");
    // bob's streams are his own.
    let _bob_follow = bob.logs(logs(bobs, true, 65536)).await.unwrap();
    assert_eq!(bob.status(bobs).await.unwrap().state, JobState::Running);
    // A place comes back once a stream has ended.
    follows.pop().unwrap().cancel().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match a1.status(job).await {
            Ok(info) => {
                assert_eq!(info.state, JobState::Running);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::RESOURCE_EXHAUSTED), "{e}");
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(follows);
    a1.stop(job, 0).await.unwrap();
    bob.stop(bobs, 0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stuck_in_the_handshake_cannot_take_every_connection() {
    // A handshake timeout no slow machine reaches: this test counts.
    let Some(jwd) = Jwd::start(
        "handshakes",
        &["--handshake-timeout", "300s", "--max-handshakes", "2"],
    ) else {
        return;
    };
    let silent: Vec<_> = silent_connections(&jwd, 2).await;
    // A third client in its handshake is closed at once...
    let mut third = tokio::net::TcpStream::connect(&jwd.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(60), third.read(&mut buf))
        .await
        .expect("the connection past --max-handshakes was not closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    // ...and once the silent ones are gone, clients get in again.
    drop(silent);
    connects_again(&jwd).await;
    // An authenticated connection is not counted as a handshake.
    let _a = jwd.client("alice").await;
    let _b = jwd.client("alice").await;
    let _c = jwd.client("bob").await;
}

/// `n` TCP connections to jwd that never send a byte, once jwd has
/// accepted them all (its log says nothing of them, so wait until its fd
/// count shows them).
async fn silent_connections(jwd: &Jwd, n: usize) -> Vec<tokio::net::TcpStream> {
    let before = jwd.fd_count();
    let mut silent = Vec::new();
    for _ in 0..n {
        silent.push(tokio::net::TcpStream::connect(&jwd.addr).await.unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while jwd.fd_count() < before + n {
        assert!(std::time::Instant::now() < deadline, "{}", jwd.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    silent
}

/// jwd's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(jwd: &Jwd) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", jwd.pid())).unwrap();
    // Fields after the command (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_hang_up_mid_stream_leave_jwd_idle() {
    // A reader that vanished used to leave its stream's task spinning.
    let Some(jwd) = Jwd::start("hangups", &[]) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let big = finished_8mib_job(&alice).await;
    let quiet = alice.start(req("sleep", &["1000"])).await.unwrap();
    let baseline = jwd.fd_count();
    for round in 0..20 {
        // Readers of the finished job (follow or not) with a small window,
        // and a follower of the quiet running one, all on one connection
        // that is dropped (TCP closed, no close_notify) mid-stream.
        let mut session = raw_session_with(&jwd, "hangup", Some(4096)).await;
        let mut requests = Vec::new();
        for (stream, job, follow) in [(1, big, false), (2, big, true), (3, quiet, true)] {
            protocol::encode(
                &ClientMessage::Request {
                    stream,
                    request: Request::Logs(logs(job, follow, 65536)),
                },
                &mut requests,
            )
            .unwrap();
        }
        session.write_all(&requests).await.unwrap();
        if round % 2 == 0 {
            // Some read a little first.
            let _ = read_server_message(&mut session).await;
        }
        drop(session);
    }
    fds_back_to(&jwd, baseline).await;
    // Idle: over two seconds with nothing to do, jwd uses (almost) no CPU.
    // A spinning task would take a whole core's worth.
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let before = cpu_ticks(&jwd);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(&jwd) - before;
    assert!(
        used * 4 < 2 * ticks_per_s,
        "jwd used {used} ticks of CPU in 2 s with nothing to do"
    );
    // And serves on.
    let all = collect(alice.logs(logs(big, false, 1 << 20)).await.unwrap()).await;
    assert_eq!(all.0.len(), 8 << 20);
    alice.stop(quiet, 0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_kept_per_user_is_capped_across_jobs_and_restarts() {
    let flags = ["--max-output-per-user", "1M", "--max-output", "16M"];
    let Some(mut jwd) = Jwd::start("useroutput", &flags) else {
        return;
    };
    let alice = jwd.client("alice").await;
    // 1.5 MiB written, 1 MiB kept: the rest is dropped and counted.
    let big = alice
        .start(req("head", &["-c", "1572864", "/dev/zero"]))
        .await
        .unwrap();
    let info = alice.wait(big).await.unwrap();
    assert_eq!(info.exit_code, Some(0));
    assert_eq!(
        (info.output.stdout_bytes, info.output.dropped_bytes),
        (1 << 20, 512 << 10)
    );
    let refused = |e: ClientError| {
        assert_eq!(e.code(), Some(ErrorCode::RESOURCE_EXHAUSTED), "{e}");
        assert!(e.to_string().contains("--max-output-per-user"), "{e}");
    };
    refused(alice.start(req("true", &[])).await.unwrap_err());
    // bob has his own.
    let bob = jwd.client("bob").await;
    let b = bob.start(req("echo", &["hi"])).await.unwrap();
    assert_eq!(bob.wait(b).await.unwrap().output.stdout_bytes, 3);

    // After a restart the kept output still counts.
    drop((alice, bob));
    jwd.kill9();
    let data = jwd.keep_data();
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &flags);
    let alice = again.client("alice").await;
    refused(alice.start(req("true", &[])).await.unwrap_err());
    // Removing the job gives its room back.
    alice.remove(big).await.unwrap();
    let id = alice.start(req("echo", &["room"])).await.unwrap();
    assert_eq!(alice.wait(id).await.unwrap().output.stdout_bytes, 5);
    drop(again);
    drop(data);
}

/// A job whose status is about 180 KB (three 60,000-byte arguments, which
/// every status of it repeats).
fn big_args_job() -> StartRequest {
    let big = "x".repeat(60_000);
    req("sh", &["-c", "sleep 1000", &big, &big, &big])
}

/// Sends `messages` on a session that never reads, through a small
/// receive buffer; returns once jwd stops taking them or has them all.
async fn send_without_reading(jwd: &Jwd, messages: Vec<ClientMessage>) {
    let mut session = raw_session_with(jwd, "unread", Some(4096)).await;
    let mut bytes = Vec::new();
    for m in &messages {
        protocol::encode(m, &mut bytes).unwrap();
    }
    // jwd stops reading (or cuts the session at the write timeout): the
    // write then ends with an error, or never; the bound only ends the
    // test's wait, not a measurement.
    let _ = tokio::time::timeout(Duration::from_secs(20), session.write_all(&bytes)).await;
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_replies_and_requests_that_are_never_read_hold_bounded_memory() {
    // Each of these grew jwd by gigabytes: status replies queued past the
    // read pause (hundreds of requests arrive in one read), lists holding
    // every job's status while waiting for room, and starts cancelled
    // while waiting for their turn, each kept with its request.
    let Some(jwd) = Jwd::start(
        "bigreplies",
        &["--write-timeout", "5s", "--max-starts-per-user", "1"],
    ) else {
        return;
    };
    let alice = jwd.client("alice").await;
    let mut jobs = Vec::new();
    for _ in 0..10 {
        jobs.push(alice.start(big_args_job()).await.unwrap());
    }
    let baseline = jwd.fd_count();
    let jobs_before = jobs.len();
    let status: Vec<_> = (1..=2_000u32)
        .map(|stream| ClientMessage::Request {
            stream,
            request: Request::Status { job: jobs[0] },
        })
        .collect();
    let lists: Vec<_> = (1..=200u32)
        .map(|stream| ClientMessage::Request {
            stream,
            request: Request::List { all: false },
        })
        .collect();
    let mut starts = Vec::new();
    for stream in 1..=500u32 {
        starts.push(ClientMessage::Request {
            stream,
            request: Request::Start(big_args_job()),
        });
        starts.push(ClientMessage::Cancel { stream });
    }
    // Each phase is measured until jwd has closed the session: whatever it
    // did with the requests, it did within the measurement.
    for (what, messages) in [("status", status), ("list", lists), ("start", starts)] {
        let (growth, ()) = peak_growth(&jwd, async {
            send_without_reading(&jwd, messages).await;
            // Starts that got their turn before their cancel arrived ran:
            // their jobs hold a descriptor each.
            // (Counted again each time: one may still be starting.)
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                let jobs = alice.list(false).await.unwrap();
                let running = jobs.iter().filter(|j| j.state.is_active()).count();
                if jwd.fd_count() <= baseline + running - jobs_before {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{}", jwd.log());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            growth < 32 << 20,
            "{what}: jwd grew by {} MiB",
            growth >> 20
        );
    }
    // Cancelled starts that were waiting for a turn started nothing.
    let listed = alice.list(false).await.unwrap();
    assert!(listed.len() < jobs_before + 500, "{} jobs", listed.len());
    for job in listed.iter().filter(|j| j.state.is_active()) {
        alice.stop(job.id, 0).await.unwrap();
    }
}

/// Waits (with a bound that only catches a place never given back) until
/// alice can connect and be served again.
async fn connects_again(jwd: &Jwd) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match Client::connect(&jwd.options("alice")).await {
            Ok(c) => {
                c.list(false).await.unwrap();
                return;
            }
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
