//! The test vectors of protocol.md: every ```hex block is the exact frame
//! of a message built here, byte for byte, and decodes back to it.

use super::tests::frame_of;
use super::*;

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
        (
            "hello_v3",
            client(ClientMessage::Hello(Hello {
                version: 3,
                client: "jw/0.1.0".into(),
            })),
        ),
        (
            "start_job",
            client(ClientMessage::Request {
                stream: 1,
                request: Request::StartJob(Box::new(StartJob {
                    spec: StartRequest {
                        command: "make".into(),
                        args: vec![],
                        env: vec![],
                        workdir: None,
                        limits: Limits::default(),
                        network: Network::None,
                    },
                    stdin: Stdin::Null,
                    options: StartOptions {
                        name: Some("build".into()),
                        timeout_ms: Some(600_000),
                        tie_ms: Some(60_000),
                        grace_ms: None,
                    },
                })),
            }),
        ),
        (
            "hold",
            client(ClientMessage::Request {
                stream: 2,
                request: Request::Hold { job },
            }),
        ),
        (
            "read",
            client(ClientMessage::Request {
                stream: 3,
                request: Request::Read(ReadRequest {
                    logs: LogsRequest {
                        job,
                        stdout: Some(0),
                        stderr: Some(0),
                        follow: false,
                        credit: 262_144,
                    },
                    tail_lines: Some(2),
                    since_us: None,
                    timestamps: true,
                }),
            }),
        ),
        (
            "output_time",
            server(ServerMessage::Event {
                stream: 3,
                event: Event::OutputTime {
                    stream: OutputStream::Stdout,
                    offset: 0,
                    time_us: 1_795_000_000_001_000,
                },
            }),
        ),
        (
            "resolve",
            client(ClientMessage::Request {
                stream: 4,
                request: Request::Resolve {
                    name: "6f1c2a9e".into(),
                },
            }),
        ),
        (
            "resolved",
            server(ServerMessage::Event {
                stream: 4,
                event: Event::Resolved { job },
            }),
        ),
        (
            "end_v3",
            server(ServerMessage::Event {
                stream: 2,
                event: Event::End(JobInfo {
                    name: Some("build".into()),
                    limits: Limits {
                        memory_bytes: Some(1 << 30),
                        pids: Some(1024),
                        output_bytes: Some(1 << 30),
                        ..Limits::default()
                    },
                    timeout_ms: Some(600_000),
                    ..info.clone()
                }),
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

#[test]
fn version_3_messages_are_marked_so() {
    let job = JobId([0; 16]);
    let request = |request| ClientMessage::Request { stream: 1, request };
    assert_eq!(request(Request::Hold { job }).min_version(), 3);
    assert_eq!(
        request(Request::Resolve {
            name: "abcd".into()
        })
        .min_version(),
        3
    );
    assert!(!Event::OutputTime {
        stream: OutputStream::Stdout,
        offset: 0,
        time_us: 0
    }
    .is_terminal());
    assert!(Event::Resolved { job }.is_terminal());
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
