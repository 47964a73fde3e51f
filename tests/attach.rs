//! A job's input over the wire (protocol version 2), through jwd's real
//! binary and real TLS, as a client that breaks the rules would use it:
//! version 1 sessions, input past the credit, at the wrong offset, on the
//! wrong stream; one writer at a time, owners only; detach and attach
//! again; a job that never reads holds the client at its credit.

mod common;

use common::raw::Raw;
use common::Jwd;
use jw::protocol::{
    Attached, ClientMessage, ErrorCode, Event, JobId, LogsRequest, Request, ServerMessage,
    StartRequest, Stdin,
};

fn req(command: &str, args: &[&str]) -> StartRequest {
    common::start_req(command, args)
}

/// Starts `command` with its input open, on stream 1 of `raw`.
async fn start_with_input(raw: &mut Raw, command: &str, args: &[&str]) -> JobId {
    start_with(raw, command, args, Stdin::Pipe).await
}

/// Starts `command` with `stdin`, on stream 1 of `raw`.
async fn start_with(raw: &mut Raw, command: &str, args: &[&str], stdin: Stdin) -> JobId {
    raw.send(&ClientMessage::Request {
        stream: 1,
        request: Request::StartWith {
            spec: req(command, args),
            stdin,
        },
    })
    .await;
    match raw.next().await {
        Some(ServerMessage::Event {
            event: Event::Started { job },
            ..
        }) => job,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// Attaches on `stream`; the server's Attached, or the error.
async fn attach(raw: &mut Raw, stream: u32, job: JobId) -> Result<Attached, (ErrorCode, String)> {
    raw.send(&ClientMessage::Request {
        stream,
        request: Request::Attach { job },
    })
    .await;
    match raw.next().await {
        Some(ServerMessage::Event {
            event: Event::Attached(a),
            stream: s,
        }) if s == stream => Ok(a),
        Some(ServerMessage::Event {
            event: Event::Error(e),
            ..
        }) => Err((e.code, e.message)),
        other => panic!("expected Attached, got {other:?}"),
    }
}

/// The connection ends with Fatal(bad_request); returns its message.
async fn expect_fatal(raw: &mut Raw) -> String {
    loop {
        match raw.next().await {
            Some(ServerMessage::Fatal(e)) => {
                assert_eq!(e.code, ErrorCode::BAD_REQUEST, "{e}");
                assert!(raw.next().await.is_none(), "the connection stays open");
                return e.message;
            }
            // Replies already on their way may come first.
            Some(ServerMessage::Event { .. }) => {}
            other => panic!("expected Fatal, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_messages_on_a_version_1_session_are_fatal() {
    let Some(jwd) = Jwd::start("attach-v1", &[]) else {
        return;
    };
    let mut v1 = Raw::new(&jwd, "alice", 1).await;
    assert_eq!(v1.welcome.version, 1);
    v1.send(&ClientMessage::Request {
        stream: 1,
        request: Request::Attach {
            job: JobId([7; 16]),
        },
    })
    .await;
    let message = expect_fatal(&mut v1).await;
    assert!(message.contains("version 2"), "{message}");
    // A version 1 client's requests still work.
    let mut old = Raw::new(&jwd, "alice", 1).await;
    old.send(&ClientMessage::Request {
        stream: 1,
        request: Request::List { all: false },
    })
    .await;
    assert!(matches!(
        old.next().await,
        Some(ServerMessage::Event {
            event: Event::ListEnd { count: 0 },
            ..
        })
    ));
    let newer = Raw::new(&jwd, "alice", jw::protocol::PROTOCOL_VERSION + 1).await;
    assert_eq!(
        newer.welcome.version,
        jw::protocol::PROTOCOL_VERSION,
        "the highest both speak"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_past_the_credit_at_a_wrong_offset_or_on_another_stream_is_fatal() {
    let Some(jwd) = Jwd::start("attach-rules", &[]) else {
        return;
    };
    let mut raw = Raw::new(&jwd, "alice", 2).await;
    let job = start_with_input(&mut raw, "sleep", &["1000"]).await;
    let attached = attach(&mut raw, 2, job).await.unwrap();
    assert!(!attached.terminal);
    assert_eq!(attached.input_offset, 0);
    let credit = attached.credit as usize;
    raw.send(&ClientMessage::Input {
        stream: 2,
        offset: 0,
        data: vec![b'x'; credit + 1],
    })
    .await;
    let message = expect_fatal(&mut raw).await;
    assert!(
        message.contains("beyond the stream's input credit"),
        "{message}"
    );

    // The detached job takes a new writer, at the offset the server has.
    let mut raw = Raw::new(&jwd, "alice", 2).await;
    let attached = attach(&mut raw, 1, job).await.unwrap();
    raw.send(&ClientMessage::Input {
        stream: 1,
        offset: attached.input_offset + 1,
        data: b"skipped a byte".to_vec(),
    })
    .await;
    let message = expect_fatal(&mut raw).await;
    assert!(message.contains("expected"), "{message}");

    let mut raw = Raw::new(&jwd, "alice", 2).await;
    raw.send(&ClientMessage::Request {
        stream: 1,
        request: Request::Logs(LogsRequest {
            job,
            stdout: Some(0),
            stderr: None,
            follow: true,
            credit: 0,
        }),
    })
    .await;
    raw.send(&ClientMessage::Input {
        stream: 1,
        offset: 0,
        data: b"to a logs stream".to_vec(),
    })
    .await;
    let message = expect_fatal(&mut raw).await;
    assert!(message.contains("not an Attach stream"), "{message}");
    jwd.client("alice").await.stop(job, 0).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_at_a_time_the_owner_only_and_detach_leaves_the_input_open() {
    let Some(jwd) = Jwd::start("attach-owner", &[]) else {
        return;
    };
    let mut alice = Raw::new(&jwd, "alice", 2).await;
    let job = start_with_input(&mut alice, "cat", &[]).await;
    let first = attach(&mut alice, 2, job).await.unwrap();
    let (code, message) = attach(&mut alice, 3, job).await.unwrap_err();
    assert_eq!(code, ErrorCode::FAILED_PRECONDITION, "{message}");
    assert!(
        message.contains("only one may write at a time"),
        "{message}"
    );
    for user in ["bob", "admin"] {
        let mut other = Raw::new(&jwd, user, 2).await;
        let (code, message) = attach(&mut other, 1, job).await.unwrap_err();
        assert_eq!(code, ErrorCode::NOT_FOUND, "{user}: {message}");
    }
    alice
        .send(&ClientMessage::Input {
            stream: 2,
            offset: first.input_offset,
            data: b"one\n".to_vec(),
        })
        .await;
    // Detach: the job goes on, its input open.
    alice.send(&ClientMessage::Cancel { stream: 2 }).await;
    loop {
        match alice.next().await {
            Some(ServerMessage::Event {
                stream: 2,
                event: Event::Error(e),
            }) => {
                assert_eq!(e.code, ErrorCode::CANCELLED);
                break;
            }
            Some(ServerMessage::Event {
                stream: 2,
                event: Event::InputCredit { .. },
            }) => {}
            other => panic!("expected the cancel, got {other:?}"),
        }
    }
    // The same job, a new writer: it starts where the first one ended
    // (once the server wrote what the first one sent).
    let client = jwd.client("alice").await;
    let mut tries = 0;
    let second = loop {
        match attach(&mut alice, 4, job).await {
            Ok(a) => break a,
            // The first writer's handler lets go as its stream ends.
            Err((ErrorCode::FAILED_PRECONDITION, m)) if m.contains("one may write") => {
                tries += 1;
                assert!(tries < 1000, "the first writer never let go");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(second.input_offset, 4);
    alice
        .send(&ClientMessage::Input {
            stream: 4,
            offset: 4,
            data: b"two\n".to_vec(),
        })
        .await;
    alice.send(&ClientMessage::InputEnd { stream: 4 }).await;
    loop {
        match alice.next().await {
            Some(ServerMessage::Event {
                stream: 4,
                event: Event::Detached { input_offset },
            }) => {
                assert_eq!(input_offset, 8);
                break;
            }
            Some(ServerMessage::Event {
                stream: 4,
                event: Event::InputCredit { .. },
            }) => {}
            other => panic!("expected Detached, got {other:?}"),
        }
    }
    let end = client.wait(job).await.unwrap();
    assert_eq!(end.exit_code, Some(0), "cat read EOF: {end:?}");
    assert_eq!(end.output.stdout_bytes, 8);
    // Closed input is not attached again.
    let (code, message) = attach(&mut alice, 5, job).await.unwrap_err();
    assert_eq!(code, ErrorCode::FAILED_PRECONDITION, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_reads_holds_the_writer_at_its_credit() {
    let Some(jwd) = Jwd::start("attach-credit", &[]) else {
        return;
    };
    let mut raw = Raw::new(&jwd, "alice", 2).await;
    let job = start_with_input(&mut raw, "sleep", &["1000"]).await;
    let attached = attach(&mut raw, 2, job).await.unwrap();
    let before = jwd.rss_anon();
    // All of the credit, in the largest pieces allowed.
    let mut offset = 0u64;
    let mut left = attached.credit as usize;
    while left > 0 {
        let n = left.min(64 * 1024);
        raw.send(&ClientMessage::Input {
            stream: 2,
            offset,
            data: vec![b'y'; n],
        })
        .await;
        offset += n as u64;
        left -= n;
    }
    // The job reads nothing: a pipe's worth goes in and its credit comes
    // back, no more; a Status on the same connection is answered
    // meanwhile. (The pipe's capacity is the kernel's; the rest of the
    // credit waits in jwd.)
    raw.send(&ClientMessage::Request {
        stream: 3,
        request: Request::Status { job },
    })
    .await;
    let mut returned = 0u64;
    loop {
        match raw.next().await {
            Some(ServerMessage::Event {
                stream: 3,
                event: Event::Status(info),
            }) => {
                assert!(info.state.is_active());
                break;
            }
            Some(ServerMessage::Event {
                stream: 2,
                event: Event::InputCredit { bytes },
            }) => returned += u64::from(bytes),
            other => panic!("expected the status, got {other:?}"),
        }
    }
    assert!(
        returned < u64::from(attached.credit),
        "all {returned} bytes of credit came back from a job that reads nothing"
    );
    let growth = jwd.rss_anon().saturating_sub(before);
    println!("jwd RssAnon growth holding one writer's credit: {growth} bytes");
    assert!(
        growth < 8 << 20,
        "jwd grew {growth} bytes for {} bytes of credit",
        attached.credit
    );
    // Stopping the job ends the writer.
    jwd.client("alice").await.stop(job, 0).await.unwrap();
    loop {
        match raw.next().await {
            Some(ServerMessage::Event {
                stream: 2,
                event: Event::Detached { .. },
            }) => break,
            Some(ServerMessage::Event {
                stream: 2,
                event: Event::InputCredit { .. },
            }) => {}
            other => panic!("expected Detached, got {other:?}"),
        }
    }
}

/// Waits until the job's stdout (read with a Logs request) holds `text`.
async fn wait_for_output(client: &jw::client::Client, job: JobId, text: &str) {
    let mut stream = client
        .logs(LogsRequest {
            job,
            stdout: Some(0),
            stderr: None,
            follow: true,
            credit: 1 << 20,
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains(text) {
        match stream.next().await.unwrap() {
            Some(Event::Output(c)) => out.extend_from_slice(&c.data),
            other => panic!("{text:?} never came: {other:?} after {out:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_outlives_jwd_and_is_attached_again_after_a_restart() {
    let Some((mut jwd, data)) = Jwd::start_kept("attach-restart", &[]) else {
        return;
    };
    let mut raw = Raw::new(&jwd, "alice", 2).await;
    let script = "read a; echo got-$a; read b; echo got-$b";
    let job = start_with_input(&mut raw, "sh", &["-c", script]).await;
    attach(&mut raw, 2, job).await.unwrap();
    raw.send(&ClientMessage::Input {
        stream: 2,
        offset: 0,
        data: b"one\n".to_vec(),
    })
    .await;
    wait_for_output(&jwd.client("alice").await, job, "got-one").await;
    jwd.kill9();
    drop(raw);
    let again = Jwd::start_with(&jwd.data_dir, &jwd.cgroup_name, &[]);
    let mut raw = Raw::new(&again, "alice", 2).await;
    // The keeper hands the restarted jwd the job's input as it reconnects.
    let mut stream = 1;
    let attached = loop {
        match attach(&mut raw, stream, job).await {
            Ok(a) => break a,
            Err((ErrorCode::FAILED_PRECONDITION, m)) if m.contains("taking it over") => {
                assert!(stream < 600, "the input never came back: {m}");
                stream += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(attached.input_offset, 0, "counted by the new jwd");
    raw.send(&ClientMessage::Input {
        stream,
        offset: 0,
        data: b"two\n".to_vec(),
    })
    .await;
    raw.send(&ClientMessage::InputEnd { stream }).await;
    let client = again.client("alice").await;
    let end = client.wait(job).await.unwrap();
    assert_eq!(end.exit_code, Some(0), "{end:?}");
    wait_for_output(&client, job, "got-one\ngot-two\n").await;
    drop(again);
    drop(data);
}

/// Sends `bytes` of input on `stream` from `offset`, in the largest pieces.
async fn send_input(raw: &mut Raw, stream: u32, mut offset: u64, bytes: usize) {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(64 * 1024);
        raw.send(&ClientMessage::Input {
            stream,
            offset,
            data: vec![b'z'; n],
        })
        .await;
        offset += n as u64;
        left -= n;
    }
}

/// Reads `raw` until `stream` ends; its last event.
async fn stream_end(raw: &mut Raw, stream: u32) -> Event {
    loop {
        match raw.next().await {
            Some(ServerMessage::Event { stream: s, event }) if s == stream => {
                if event.is_terminal() {
                    return event;
                }
            }
            Some(ServerMessage::Event { .. }) => {}
            other => panic!("stream {stream} never ended: {other:?}"),
        }
    }
}

/// Attaches on `stream` once the writer before has let go (its handler
/// ends a moment after its stream).
async fn attach_when_free(raw: &mut Raw, stream: u32, job: JobId) -> Attached {
    for _ in 0..1000 {
        match attach(raw, stream, job).await {
            Ok(attached) => return attached,
            // The id is free again once the error ended the stream.
            Err((ErrorCode::FAILED_PRECONDITION, m)) if m.contains("one may write") => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("the writer before never let go");
}

/// A terminal that reads nothing and echoes nothing: a writer fills it.
/// Starts one as alice on a new session, attaches on stream 2 and sends
/// all the credit: more than the terminal holds, so the writer waits for
/// room.
async fn filled_deaf_terminal(jwd: &Jwd) -> (Raw, JobId) {
    let mut raw = Raw::new(jwd, "alice", 2).await;
    let terminal = Stdin::Terminal(jw::protocol::WindowSize { rows: 24, cols: 80 });
    let args = ["-c", "stty raw -echo; exec sleep 1000"];
    let job = start_with(&mut raw, "sh", &args, terminal).await;
    let attached = attach(&mut raw, 2, job).await.unwrap();
    send_input(&mut raw, 2, 0, attached.credit as usize).await;
    (raw, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_job_that_ends_with_input_waiting_ends_its_writer_and_stalls_nobody() {
    let Some(jwd) = Jwd::start("attach-tty-end", &[]) else {
        return;
    };
    let (mut raw, job) = filled_deaf_terminal(&jwd).await;
    let bob = jwd.client("bob").await;
    bob.list(false).await.unwrap();
    let alice = jwd.client("alice").await;
    alice.stop(job, 0).await.unwrap();
    // The writer ends with the job, and the server serves everyone.
    assert!(matches!(
        stream_end(&mut raw, 2).await,
        Event::Detached { .. }
    ));
    for _ in 0..4 {
        bob.list(false).await.unwrap();
    }
    raw.send(&ClientMessage::Request {
        stream: 5,
        request: Request::Status { job },
    })
    .await;
    assert!(matches!(stream_end(&mut raw, 5).await, Event::Status(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_of_input_that_cannot_go_in_still_lets_the_writer_go() {
    let Some(jwd) = Jwd::start("attach-tty-full", &[]) else {
        return;
    };
    let (mut raw, job) = filled_deaf_terminal(&jwd).await;
    raw.send(&ClientMessage::Cancel { stream: 2 }).await;
    assert!(matches!(stream_end(&mut raw, 2).await, Event::Error(_)));
    // A second writer whose end of input (the terminal's EOF character)
    // has no room: it can still detach, and a third one attach. (How much
    // of the first writer's input the terminal took before the cancel is
    // the server's pace: if the EOF still fits, the writer ends with
    // Detached instead; either way it must end, and let the next in.)
    attach_when_free(&mut raw, 3, job).await;
    raw.send(&ClientMessage::InputEnd { stream: 3 }).await;
    raw.send(&ClientMessage::Cancel { stream: 3 }).await;
    assert!(matches!(
        stream_end(&mut raw, 3).await,
        Event::Error(_) | Event::Detached { .. }
    ));
    let third = 4;
    attach_when_free(&mut raw, third, job).await;
    jwd.client("alice").await.stop(job, 0).await.unwrap();
    assert!(matches!(
        stream_end(&mut raw, third).await,
        Event::Detached { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_in_one_byte_frames_holds_no_more_than_the_credit() {
    let Some(jwd) = Jwd::start("attach-tiny", &[]) else {
        return;
    };
    let mut raw = Raw::new(&jwd, "alice", 2).await;
    let job = start_with_input(&mut raw, "sleep", &["1000"]).await;
    let attached = attach(&mut raw, 2, job).await.unwrap();
    let before = jwd.rss_anon();
    let mut frames = Vec::new();
    // A quarter of the credit, a byte a frame: as queued frames this held
    // about 3 MB; as bytes it holds 64 KiB.
    let frames_sent = u64::from(attached.credit / 4);
    for offset in 0..frames_sent {
        jw::protocol::encode(
            &ClientMessage::Input {
                stream: 2,
                offset,
                data: vec![b'q'],
            },
            &mut frames,
        )
        .unwrap();
    }
    tokio::io::AsyncWriteExt::write_all(&mut raw.tls, &frames)
        .await
        .unwrap();
    // Answered after every frame before it was taken (tens of thousands
    // of frames: most of a minute in the emulated guest).
    raw.send(&ClientMessage::Request {
        stream: 3,
        request: Request::Status { job },
    })
    .await;
    loop {
        match raw.next_within(std::time::Duration::from_secs(600)).await {
            Some(ServerMessage::Event {
                stream: 3,
                event: Event::Status(_),
            }) => break,
            Some(ServerMessage::Event { stream: 2, .. }) => {}
            other => panic!("expected the status, got {other:?}"),
        }
    }
    let growth = jwd.rss_anon().saturating_sub(before);
    println!("jwd RssAnon growth for {frames_sent} one-byte frames: {growth} bytes");
    assert!(growth < 2 << 20, "jwd grew {growth} bytes");
    jwd.client("alice").await.stop(job, 0).await.unwrap();
}
