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
        (start_request(), stdin(), start_options()).prop_map(|(spec, stdin, options)| {
            Request::StartJob(Box::new(StartJob {
                spec,
                stdin,
                options,
            }))
        }),
        (
            logs_request(),
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            any::<bool>()
        )
            .prop_map(|(logs, tail_lines, since_us, timestamps)| Request::Read(
                ReadRequest {
                    logs,
                    tail_lines,
                    since_us,
                    timestamps,
                }
            )),
        job_id().prop_map(|job| Request::Hold { job }),
        text().prop_map(|name| Request::Resolve { name }),
    ]
}

fn start_options() -> impl Strategy<Value = StartOptions> {
    (
        prop::option::of(text()),
        any::<Option<u64>>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
    )
        .prop_map(|(name, timeout_ms, tie_ms, grace_ms)| StartOptions {
            name,
            timeout_ms,
            tie_ms,
            grace_ms,
        })
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
        (
            prop::option::of(text()),
            limits(),
            any::<Option<u64>>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (id, owner, command, args),
                (state, exit_code, signal),
                (oom_killed, stopped, started_at_ms, ended_at_ms),
                (usage, (so, se, dropped), error),
                (name, limits, timeout_ms, timed_out),
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
                name,
                limits,
                timeout_ms,
                timed_out,
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
        (output_stream(), any::<u64>(), any::<u64>()).prop_map(|(stream, offset, time_us)| {
            Event::OutputTime {
                stream,
                offset,
                time_us,
            }
        }),
        job_id().prop_map(|job| Event::Resolved { job }),
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

pub(super) fn frame_of<T: serde::Serialize>(msg: &T) -> Vec<u8> {
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

    /// A server writes a version 3 message for an older session in that
    /// version's form, which reads back as the same message without what
    /// version 3 added (a timeout reads as a stop).
    #[test]
    fn older_sessions_get_the_older_form(msg in server_message()) {
        // Events version 3 added are never sent on an older session.
        prop_assume!(!matches!(
            msg,
            ServerMessage::Event { event: Event::OutputTime { .. } | Event::Resolved { .. }, .. }
        ));
        let mut bytes = Vec::new();
        encode_for(2, &msg, &mut bytes).unwrap();
        let mut dec = FrameDecoder::new(MAX_FRAME);
        dec.feed(&bytes);
        let back = decode_for(2, dec.next_frame().unwrap().unwrap()).unwrap();
        let older = |i: &JobInfo| JobInfo::from(JobInfoV2::from(i));
        let expected = match msg {
            ServerMessage::Event { stream, event } => ServerMessage::Event {
                stream,
                event: match event {
                    Event::Status(i) => Event::Status(older(&i)),
                    Event::ListItem(i) => Event::ListItem(older(&i)),
                    Event::End(i) => Event::End(older(&i)),
                    other => other,
                },
            },
            other => other,
        };
        prop_assert_eq!(back, expected);
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
