//! Protocol tests: round trips of every message, the test vectors printed in
//! protocol.md, truncation, oversize lengths and garbage.

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------- strategies

fn job_id() -> impl Strategy<Value = JobId> {
    any::<[u8; 16]>().prop_map(JobId)
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        any::<Option<u32>>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u32>>(),
        any::<Option<u64>>(),
    )
        .prop_map(|(cpu, mem, r, w, pids, out)| Limits {
            cpu_millicores: cpu,
            memory_bytes: mem,
            io_read_bps: r,
            io_write_bps: w,
            pids,
            output_bytes: out,
        })
}

fn network() -> impl Strategy<Value = Network> {
    prop_oneof![Just(Network::None), Just(Network::Host)]
}

fn start_request() -> impl Strategy<Value = StartRequest> {
    (
        text(),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec((text(), text()), 0..4),
        prop::option::of(text()),
        limits(),
        network(),
    )
        .prop_map(
            |(command, args, env, workdir, limits, network)| StartRequest {
                command,
                args,
                env: env
                    .into_iter()
                    .map(|(name, value)| EnvVar { name, value })
                    .collect(),
                workdir,
                limits,
                network,
            },
        )
}

fn logs_request() -> impl Strategy<Value = LogsRequest> {
    (
        job_id(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(job, stdout, stderr, follow, credit)| LogsRequest {
            job,
            stdout,
            stderr,
            follow,
            credit,
        })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        start_request().prop_map(Request::Start),
        (job_id(), any::<u32>()).prop_map(|(job, grace_ms)| Request::Stop { job, grace_ms }),
        job_id().prop_map(|job| Request::Status { job }),
        any::<bool>().prop_map(|all| Request::List { all }),
        logs_request().prop_map(Request::Logs),
        job_id().prop_map(|job| Request::Wait { job }),
        job_id().prop_map(|job| Request::Remove { job }),
        job_id().prop_map(|job| Request::Attach { job }),
        (job_id(), any::<i32>(), any::<bool>()).prop_map(|(job, signal, all)| Request::Signal {
            job,
            signal,
            all
        }),
        (start_request(), stdin()).prop_map(|(spec, stdin)| Request::StartWith { spec, stdin }),
    ]
}

fn window_size() -> impl Strategy<Value = WindowSize> {
    any::<(u16, u16)>().prop_map(|(rows, cols)| WindowSize { rows, cols })
}

fn stdin() -> impl Strategy<Value = Stdin> {
    prop_oneof![
        Just(Stdin::Null),
        Just(Stdin::Pipe),
        window_size().prop_map(Stdin::Terminal),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<u32>(), text())
            .prop_map(|(version, client)| ClientMessage::Hello(Hello { version, client })),
        (any::<u32>(), request())
            .prop_map(|(stream, request)| ClientMessage::Request { stream, request }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(stream, bytes)| ClientMessage::Credit { stream, bytes }),
        any::<u32>().prop_map(|stream| ClientMessage::Cancel { stream }),
        (
            any::<u32>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(stream, offset, data)| ClientMessage::Input {
                stream,
                offset,
                data
            }),
        any::<u32>().prop_map(|stream| ClientMessage::InputEnd { stream }),
        (any::<u32>(), window_size())
            .prop_map(|(stream, size)| ClientMessage::Resize { stream, size }),
    ]
}

fn job_state() -> impl Strategy<Value = JobState> {
    prop_oneof![
        Just(JobState::Starting),
        Just(JobState::Running),
        Just(JobState::Exited),
        Just(JobState::Failed),
        Just(JobState::Lost),
    ]
}

fn usage() -> impl Strategy<Value = Usage> {
    any::<(u64, u64, u64, u64, u64, u32)>().prop_map(|(u, s, m, r, w, p)| Usage {
        cpu_user_us: u,
        cpu_system_us: s,
        memory_peak_bytes: m,
        io_read_bytes: r,
        io_write_bytes: w,
        pids_current: p,
    })
}

fn job_info() -> impl Strategy<Value = JobInfo> {
    (
        (
            job_id(),
            text(),
            text(),
            prop::collection::vec(text(), 0..3),
        ),
        (job_state(), any::<Option<i32>>(), any::<Option<i32>>()),
        (
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<Option<u64>>(),
        ),
        (usage(), any::<(u64, u64, u64)>(), prop::option::of(text())),
    )
        .prop_map(
            |(
                (id, owner, command, args),
                (state, exit_code, signal),
                (oom_killed, stopped, started_at_ms, ended_at_ms),
                (usage, (so, se, dropped), error),
            )| JobInfo {
                id,
                owner,
                command,
                args,
                state,
                exit_code,
                signal,
                oom_killed,
                stopped,
                started_at_ms,
                ended_at_ms,
                usage,
                output: OutputInfo {
                    stdout_bytes: so,
                    stderr_bytes: se,
                    dropped_bytes: dropped,
                },
                error,
                name: None,
                limits: Limits::default(),
                timeout_ms: None,
                timed_out: false,
            },
        )
}

fn error_info() -> impl Strategy<Value = ErrorInfo> {
    (any::<u16>(), text()).prop_map(|(code, message)| ErrorInfo::new(ErrorCode(code), message))
}

fn output_stream() -> impl Strategy<Value = OutputStream> {
    prop_oneof![Just(OutputStream::Stdout), Just(OutputStream::Stderr)]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        job_id().prop_map(|job| Event::Started { job }),
        job_info().prop_map(Event::Status),
        job_info().prop_map(Event::ListItem),
        any::<u32>().prop_map(|count| Event::ListEnd { count }),
        (
            output_stream(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(stream, offset, data)| Event::Output(OutputChunk {
                stream,
                offset,
                data
            })),
        job_info().prop_map(Event::End),
        Just(Event::Removed),
        error_info().prop_map(Event::Error),
        (
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            any::<(u64, u64)>()
        )
            .prop_map(
                |(terminal, input_offset, credit, (writer, previous_writer))| {
                    Event::Attached(Attached {
                        terminal,
                        input_offset,
                        credit,
                        writer,
                        previous_writer,
                    })
                }
            ),
        any::<u32>().prop_map(|bytes| Event::InputCredit { bytes }),
        any::<u64>().prop_map(|input_offset| Event::Detached { input_offset }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            any::<u32>(),
            text(),
            text(),
            prop::collection::vec(text(), 0..3),
            any::<bool>(),
            any::<(u32, u32, u32)>()
        )
            .prop_map(|(version, server, user, groups, admin, (f, s, c))| {
                ServerMessage::Welcome(Welcome {
                    version,
                    server,
                    identity: Identity {
                        user,
                        groups,
                        admin,
                    },
                    limits: ConnectionLimits {
                        max_frame: f,
                        max_streams: s,
                        max_chunk: c,
                    },
                })
            }),
        (any::<u32>(), event()).prop_map(|(stream, event)| ServerMessage::Event { stream, event }),
        error_info().prop_map(ServerMessage::Fatal),
    ]
}

// ---------------------------------------------------------------- helpers

fn frame_of<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out).expect("encodes");
    out
}

fn decode_one<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, ProtocolError> {
    let mut dec = FrameDecoder::new(MAX_FRAME);
    dec.feed(bytes);
    match dec.next_frame()? {
        Some(payload) => decode(payload).map(Some),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------- properties

proptest! {
    #[test]
    fn client_messages_round_trip(msg in client_message()) {
        let bytes = frame_of(&msg);
        prop_assert_eq!(decode_one::<ClientMessage>(&bytes).unwrap(), Some(msg));
    }

    #[test]
    fn server_messages_round_trip(msg in server_message()) {
        let bytes = frame_of(&msg);
        prop_assert_eq!(decode_one::<ServerMessage>(&bytes).unwrap(), Some(msg));
    }

    /// Every proper prefix of a valid frame is "incomplete", never an error
    /// and never a wrong message.
    #[test]
    fn every_truncation_is_incomplete(msg in server_message()) {
        let bytes = frame_of(&msg);
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode_one::<ServerMessage>(&bytes[..cut]).unwrap(), None);
        }
    }

    /// Frames split at arbitrary points across many feeds come out whole and
    /// in order.
    #[test]
    fn frames_survive_arbitrary_splits(
        msgs in prop::collection::vec(client_message(), 1..6),
        cuts in prop::collection::vec(1usize..40, 1..30),
    ) {
        let mut wire = Vec::new();
        for m in &msgs {
            encode(m, &mut wire).unwrap();
        }
        let mut dec = FrameDecoder::new(MAX_FRAME);
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap().min(rest.len());
            dec.feed(&rest[..n]);
            rest = &rest[n..];
            while let Some(payload) = dec.next_frame().unwrap() {
                got.push(decode::<ClientMessage>(payload).unwrap());
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(dec.buffered(), 0);
    }

    /// Random bytes give frames or clean errors, never a panic.
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = FrameDecoder::new(256);
        dec.feed(&bytes);
        while let Ok(Some(payload)) = dec.next_frame() {
            let _ = decode::<ClientMessage>(payload);
            let _ = decode::<ServerMessage>(payload);
        }
    }

    /// Random payloads inside a well-formed frame never panic the message
    /// decoder, and whatever decodes re-encodes to the same bytes.
    #[test]
    fn garbage_payloads_decode_canonically_or_fail(payload in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(msg) = decode::<ClientMessage>(&payload) {
            let again = frame_of(&msg);
            prop_assert_eq!(decode_one::<ClientMessage>(&again).unwrap(), Some(msg));
        }
        if let Ok(msg) = decode::<ServerMessage>(&payload) {
            let again = frame_of(&msg);
            prop_assert_eq!(decode_one::<ServerMessage>(&again).unwrap(), Some(msg));
        }
    }

    /// Header plus data is the same frame as the one-call encoder.
    #[test]
    fn output_header_then_data_matches(
        stream in any::<u32>(),
        which in output_stream(),
        offset in any::<u64>(),
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut split = Vec::new();
        encode_output_header(stream, which, offset, data.len(), &mut split).unwrap();
        split.extend_from_slice(&data);
        let mut whole = Vec::new();
        encode_output(stream, which, offset, &data, &mut whole).unwrap();
        prop_assert_eq!(split, whole);
    }

    /// The hand-assembled Output frame is byte-identical to the generic one.
    #[test]
    fn fast_output_encoding_matches_generic(
        stream in any::<u32>(),
        which in output_stream(),
        offset in any::<u64>(),
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut fast = Vec::new();
        encode_output(stream, which, offset, &data, &mut fast).unwrap();
        let generic = frame_of(&ServerMessage::Event {
            stream,
            event: Event::Output(OutputChunk { stream: which, offset, data }),
        });
        prop_assert_eq!(fast, generic);
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut payload = postcard::to_allocvec(&ClientMessage::Cancel { stream: 1 }).unwrap();
    payload.push(0);
    assert_eq!(
        decode::<ClientMessage>(&payload),
        Err(ProtocolError::TrailingBytes(1))
    );
}

#[test]
fn empty_payload_is_malformed() {
    assert!(matches!(
        decode::<ClientMessage>(&[]),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn unknown_variant_is_malformed() {
    // ClientMessage has 4 variants (0..=3); 4 is from a newer protocol.
    assert!(matches!(
        decode::<ClientMessage>(&[4]),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn oversize_message_is_refused_by_the_encoder() {
    let mut out = Vec::new();
    let big = ServerMessage::Fatal(ErrorInfo::new(ErrorCode::INTERNAL, "x".repeat(MAX_FRAME)));
    assert!(matches!(
        encode(&big, &mut out),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn largest_output_chunk_fits_in_a_frame() {
    let mut out = Vec::new();
    encode_output(
        u32::MAX,
        OutputStream::Stderr,
        u64::MAX,
        &vec![0; MAX_CHUNK],
        &mut out,
    )
    .unwrap();
    assert!(out.len() - HEADER_LEN <= MAX_FRAME);
}

// ---------------------------------------------------------------- vectors

/// The messages whose exact frames protocol.md prints, by vector name.
fn vector_messages() -> Vec<(&'static str, Vec<u8>)> {
    let job = JobId([
        0x6f, 0x1c, 0x2a, 0x9e, 0x3b, 0x4d, 0x4f, 0x0a, 0x8c, 0x11, 0x5e, 0x7d, 0x20, 0x93, 0xb4,
        0x01,
    ]);
    let info = JobInfo {
        id: job,
        owner: "alice".into(),
        command: "/bin/echo".into(),
        args: vec!["hello".into()],
        state: JobState::Exited,
        exit_code: Some(0),
        signal: None,
        oom_killed: false,
        stopped: false,
        started_at_ms: 1_795_000_000_000,
        ended_at_ms: Some(1_795_000_000_004),
        usage: Usage {
            cpu_user_us: 310,
            cpu_system_us: 920,
            memory_peak_bytes: 1_048_576,
            io_read_bytes: 0,
            io_write_bytes: 0,
            pids_current: 0,
        },
        output: OutputInfo {
            stdout_bytes: 6,
            stderr_bytes: 0,
            dropped_bytes: 0,
        },
        error: None,
        name: None,
        limits: Limits::default(),
        timeout_ms: None,
        timed_out: false,
    };
    let client = |m: ClientMessage| frame_of(&m);
    let server = |m: ServerMessage| frame_of(&m);
    // The vectors of versions 1 and 2 with a JobInfo are in its older form.
    let server_v2 = |m: ServerMessage| {
        let mut out = Vec::new();
        encode_for(2, &m, &mut out).expect("encodes");
        out
    };
    vec![
        (
            "hello",
            client(ClientMessage::Hello(Hello {
                version: 1,
                client: "jw/0.1.0".into(),
            })),
        ),
        (
            "welcome",
            server(ServerMessage::Welcome(Welcome {
                version: 1,
                server: "jwd/0.1.0".into(),
                identity: Identity {
                    user: "alice".into(),
                    groups: vec!["dev".into()],
                    admin: false,
                },
                limits: ConnectionLimits {
                    max_frame: MAX_FRAME as u32,
                    max_streams: MAX_STREAMS as u32,
                    max_chunk: MAX_CHUNK as u32,
                },
            })),
        ),
        (
            "start",
            client(ClientMessage::Request {
                stream: 1,
                request: Request::Start(StartRequest {
                    command: "/bin/echo".into(),
                    args: vec!["hello".into()],
                    env: vec![EnvVar {
                        name: "LANG".into(),
                        value: "C.UTF-8".into(),
                    }],
                    workdir: None,
                    limits: Limits {
                        cpu_millicores: Some(500),
                        memory_bytes: Some(64 << 20),
                        pids: Some(100),
                        ..Limits::default()
                    },
                    network: Network::None,
                }),
            }),
        ),
        (
            "started",
            server(ServerMessage::Event {
                stream: 1,
                event: Event::Started { job },
            }),
        ),
        (
            "logs",
            client(ClientMessage::Request {
                stream: 2,
                request: Request::Logs(LogsRequest {
                    job,
                    stdout: Some(0),
                    stderr: Some(0),
                    follow: true,
                    credit: 262_144,
                }),
            }),
        ),
        (
            "output",
            server(ServerMessage::Event {
                stream: 2,
                event: Event::Output(OutputChunk {
                    stream: OutputStream::Stdout,
                    offset: 0,
                    data: b"hello\n".to_vec(),
                }),
            }),
        ),
        (
            "credit",
            client(ClientMessage::Credit {
                stream: 2,
                bytes: 65_536,
            }),
        ),
        (
            "end",
            server_v2(ServerMessage::Event {
                stream: 2,
                event: Event::End(info.clone()),
            }),
        ),
        (
            "stop",
            client(ClientMessage::Request {
                stream: 3,
                request: Request::Stop {
                    job,
                    grace_ms: 10_000,
                },
            }),
        ),
        (
            "list",
            client(ClientMessage::Request {
                stream: 4,
                request: Request::List { all: false },
            }),
        ),
        (
            "list_end",
            server(ServerMessage::Event {
                stream: 4,
                event: Event::ListEnd { count: 0 },
            }),
        ),
        ("cancel", client(ClientMessage::Cancel { stream: 2 })),
        (
            "error",
            server(ServerMessage::Event {
                stream: 5,
                event: Event::Error(ErrorInfo::new(ErrorCode::NOT_FOUND, "no such job")),
            }),
        ),
        (
            "fatal",
            server(ServerMessage::Fatal(ErrorInfo::new(
                ErrorCode::BAD_REQUEST,
                "frame too large",
            ))),
        ),
        (
            "hello_v2",
            client(ClientMessage::Hello(Hello {
                version: 2,
                client: "jw/0.1.0".into(),
            })),
        ),
        (
            "start_with",
            client(ClientMessage::Request {
                stream: 1,
                request: Request::StartWith {
                    spec: StartRequest {
                        command: "sh".into(),
                        args: vec![],
                        env: vec![EnvVar {
                            name: "TERM".into(),
                            value: "xterm".into(),
                        }],
                        workdir: None,
                        limits: Limits::default(),
                        network: Network::None,
                    },
                    stdin: Stdin::Terminal(WindowSize { rows: 24, cols: 80 }),
                },
            }),
        ),
        (
            "attach",
            client(ClientMessage::Request {
                stream: 6,
                request: Request::Attach { job },
            }),
        ),
        (
            "attached",
            server(ServerMessage::Event {
                stream: 6,
                event: Event::Attached(Attached {
                    terminal: true,
                    input_offset: 0,
                    credit: 262_144,
                    writer: 0x1234,
                    previous_writer: 0,
                }),
            }),
        ),
        (
            "input",
            client(ClientMessage::Input {
                stream: 6,
                offset: 0,
                data: b"ls\r".to_vec(),
            }),
        ),
        (
            "input_credit",
            server(ServerMessage::Event {
                stream: 6,
                event: Event::InputCredit { bytes: 3 },
            }),
        ),
        (
            "resize",
            client(ClientMessage::Resize {
                stream: 6,
                size: WindowSize {
                    rows: 50,
                    cols: 132,
                },
            }),
        ),
        ("input_end", client(ClientMessage::InputEnd { stream: 6 })),
        (
            "detached",
            server(ServerMessage::Event {
                stream: 6,
                event: Event::Detached { input_offset: 3 },
            }),
        ),
        (
            "signal",
            client(ClientMessage::Request {
                stream: 7,
                request: Request::Signal {
                    job,
                    signal: 10,
                    all: false,
                },
            }),
        ),
    ]
}

#[test]
fn version_2_messages_are_marked_so() {
    let job = JobId([0; 16]);
    assert_eq!(ClientMessage::Cancel { stream: 1 }.min_version(), 1);
    assert_eq!(ClientMessage::InputEnd { stream: 1 }.min_version(), 2);
    let request = |request| ClientMessage::Request { stream: 1, request };
    assert_eq!(request(Request::Wait { job }).min_version(), 1);
    assert_eq!(request(Request::Attach { job }).min_version(), 2);
    assert!(!Event::InputCredit { bytes: 1 }.is_terminal());
    assert!(Event::Detached { input_offset: 0 }.is_terminal());
}

/// The ```hex name=... blocks of protocol.md, in document order.
fn document_vectors() -> Vec<(String, Vec<u8>)> {
    let doc = include_str!("../../protocol.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex name=") else {
            continue;
        };
        let mut bytes = Vec::new();
        for body in lines.by_ref() {
            if body.trim() == "```" {
                break;
            }
            for tok in body.split_whitespace() {
                bytes.push(
                    u8::from_str_radix(tok, 16)
                        .unwrap_or_else(|_| panic!("vector {name}: {tok:?} is not a hex byte")),
                );
            }
        }
        out.push((name.to_string(), bytes));
    }
    out
}

fn hex_block(name: &str, bytes: &[u8]) -> String {
    let mut s = format!("```hex name={name}\n");
    for line in bytes.chunks(16) {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&hex.join(" "));
        s.push('\n');
    }
    s.push_str("```\n");
    s
}

/// protocol.md and the code agree byte for byte. On a mismatch the message
/// prints the block the document should contain.
#[test]
fn protocol_md_vectors_match_the_code() {
    let doc: std::collections::HashMap<String, Vec<u8>> = document_vectors().into_iter().collect();
    let mut problems = Vec::new();
    for (name, bytes) in vector_messages() {
        match doc.get(name) {
            Some(d) if *d == bytes => {}
            Some(_) => problems.push(format!(
                "vector {name} differs; the code says:\n{}",
                hex_block(name, &bytes)
            )),
            None => problems.push(format!(
                "vector {name} missing; the code says:\n{}",
                hex_block(name, &bytes)
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        doc.len(),
        vector_messages().len(),
        "protocol.md has vectors the tests do not know"
    );
}

/// Every vector in the document decodes, and re-encodes to the same bytes.
#[test]
fn protocol_md_vectors_decode() {
    for (name, bytes) in document_vectors() {
        let mut dec = FrameDecoder::new(MAX_FRAME);
        dec.feed(&bytes);
        let payload = dec
            .next_frame()
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: incomplete"));
        let again = match decode::<ClientMessage>(payload) {
            Ok(m) => frame_of(&m),
            Err(_) => match decode::<ServerMessage>(payload) {
                Ok(m) => frame_of(&m),
                // A version 1 or 2 frame with a JobInfo in its older form.
                Err(_) => {
                    let m = decode_for(2, payload).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let mut out = Vec::new();
                    encode_for(2, &m, &mut out).unwrap();
                    out
                }
            },
        };
        assert_eq!(again, bytes, "{name}");
    }
}
