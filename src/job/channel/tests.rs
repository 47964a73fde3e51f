//! The channel's messages: each round-trips, and what a peer of the same
//! build never sends is refused.

use super::*;

fn sample() -> Setup {
    Setup {
        uid: 600_123,
        gid: 600_123,
        new_net: true,
        hostname: "jw-0123abcd".into(),
        home: "/var/lib/jw/work/0123".into(),
        workdir: "/home/job".into(),
        hide: vec!["/var/lib/jw".into(), "/etc/jw/server.key".into()],
        seccomp: vec![1, 2, 3, 4, 5, 6, 7, 8],
        join: vec![
            "/sys/fs/cgroup/memory/x/1".into(),
            "/sys/fs/cgroup/pids/x/1".into(),
        ],
        candidates: vec!["/usr/bin/sh".into(), "/bin/sh".into()],
        argv: vec!["sh".into(), "-c".into(), "".into(), "--".into(), "3".into()],
        env: vec!["LD_PRELOAD=/tmp/x.so".into(), "A=".into()],
    }
}

#[test]
fn setup_round_trips() {
    let setup = sample();
    assert_eq!(Setup::decode(&setup.encode()), Some(setup));
}

#[test]
fn setup_rejects_what_jwd_never_sends() {
    let good = sample().encode();
    // Every truncation.
    for len in 0..good.len() {
        assert_eq!(Setup::decode(&good[..len]), None, "len {len}");
    }
    let mut no_argv = sample();
    no_argv.argv.clear();
    assert_eq!(Setup::decode(&no_argv.encode()), None);
    let mut nul = sample();
    nul.env.push("A=\0".into());
    assert_eq!(Setup::decode(&nul.encode()), None);
}

#[test]
fn the_largest_request_fits_one_setup_message() {
    let mut big = sample();
    // The protocol's limits: MAX_ARGS arguments and MAX_ENV variables,
    // MAX_ARGV_ENV_BYTES together; the base environment on top.
    use crate::protocol::{MAX_ARGS, MAX_ARGV_ENV_BYTES, MAX_ENV};
    let half = MAX_ARGV_ENV_BYTES / 2;
    big.argv = vec!["a".repeat(half / MAX_ARGS); MAX_ARGS];
    big.env = vec!["E=".to_string() + &"b".repeat(half / MAX_ENV); MAX_ENV + 4];
    big.candidates = vec!["/usr/local/sbin/".to_string() + &"c".repeat(4096); 6];
    assert!(big.encode().len() <= MAX_SETUP, "{}", big.encode().len());
}

#[test]
fn every_stage_has_a_number_and_words() {
    for stage in Stage::ALL {
        assert_eq!(Stage::from_u32(stage as u32), Some(stage));
        assert!(!stage.describe().is_empty());
    }
    assert_eq!(Stage::from_u32(0), None);
}

fn all_from_init() -> Vec<FromInit<'static>> {
    let mut all = vec![
        FromInit::Report(Report::ExecOk),
        FromInit::Report(Report::Exited { wait_status: 0 }),
        FromInit::Report(Report::Exited {
            wait_status: 9 | 0x80,
        }),
        FromInit::Report(Report::Exited {
            wait_status: 3 << 8,
        }),
        FromInit::Output {
            stream: OutputStream::Stdout,
            bytes: b"x",
        },
        FromInit::Output {
            stream: OutputStream::Stderr,
            bytes: &[0xff; OUTPUT_CHUNK],
        },
    ];
    for stage in Stage::ALL {
        all.push(FromInit::Report(Report::Failed { stage, errno: 2 }));
    }
    all.push(FromInit::Report(Report::Failed {
        stage: Stage::Exec,
        errno: -1,
    }));
    all
}

#[test]
fn every_message_from_the_init_round_trips() {
    let mut buf = vec![0u8; MAX_MESSAGE];
    for message in all_from_init() {
        let n = message.encode(&mut buf);
        assert_eq!(n, message.len(), "{message:?}");
        assert_eq!(FromInit::decode(&buf[..n]), Ok(message));
        if let FromInit::Report(report) = message {
            assert_eq!(&report.encode()[..], &buf[..n]);
        }
    }
}

#[test]
fn the_byte_layout_is_the_one_both_builds_agree_on() {
    let failed = Report::Failed {
        stage: Stage::Chdir,
        errno: libc::EACCES,
    };
    assert_eq!(
        failed.encode(),
        [2, 0, 0, 0, 13, 0, 0, 0, 13, 0, 0, 0],
        "kind 2, stage 13, EACCES"
    );
    assert_eq!(
        Report::ExecOk.encode(),
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        Report::Exited { wait_status: 256 }.encode(),
        [3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    );
    let mut out = OutputBuffer::default();
    out.payload()[..2].copy_from_slice(b"hi");
    assert_eq!(
        out.message(OutputStream::Stderr, 2),
        [5, 0, 0, 0, b'h', b'i']
    );
    assert_eq!(
        ToInit::Signal(libc::SIGTERM).encode(),
        [1, 0, 0, 0, 15, 0, 0, 0]
    );
}

#[test]
fn output_built_in_place_decodes_as_output() {
    let mut out = OutputBuffer::default();
    assert_eq!(out.payload().len(), OUTPUT_CHUNK);
    out.payload().fill(7);
    let message = out.message(OutputStream::Stdout, OUTPUT_CHUNK);
    assert_eq!(message.len(), MAX_MESSAGE);
    assert_eq!(
        FromInit::decode(message),
        Ok(FromInit::Output {
            stream: OutputStream::Stdout,
            bytes: &[7; OUTPUT_CHUNK]
        })
    );
}

#[test]
fn truncated_long_and_unknown_messages_are_refused() {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    for message in all_from_init() {
        let n = message.encode(&mut buf);
        let shortest_whole = match message {
            // Output is whole with any bytes at all.
            FromInit::Output { .. } => OUTPUT_HEADER + 1,
            _ => n,
        };
        for len in 0..shortest_whole {
            assert!(FromInit::decode(&buf[..len]).is_err(), "{message:?} {len}");
        }
        if let FromInit::Report(_) = message {
            assert!(FromInit::decode(&buf[..n + 1]).is_err(), "{message:?} long");
        }
    }
    buf[..4].copy_from_slice(&MSG_STDOUT.to_le_bytes());
    assert!(
        FromInit::decode(&buf[..MAX_MESSAGE + 1]).is_err(),
        "too much output"
    );
    for kind in [0u32, 6, 99, u32::MAX] {
        let mut report = Report::ExecOk.encode();
        report[..4].copy_from_slice(&kind.to_le_bytes());
        assert_eq!(
            FromInit::decode(&report),
            Err(BadMessage::UnknownKind(kind))
        );
    }
    let mut unknown_stage = Report::Failed {
        stage: Stage::Exec,
        errno: 1,
    }
    .encode();
    unknown_stage[4..8].copy_from_slice(&999u32.to_le_bytes());
    assert_eq!(
        FromInit::decode(&unknown_stage),
        Err(BadMessage::UnknownStage(999))
    );
}

#[test]
fn every_message_to_the_init_round_trips_and_others_are_refused() {
    for sig in [libc::SIGTERM, libc::SIGKILL, 0, -1, i32::MAX] {
        let message = ToInit::Signal(sig);
        let bytes = message.encode();
        assert_eq!(ToInit::decode(&bytes), Ok(message));
        for len in 0..bytes.len() {
            assert!(ToInit::decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(ToInit::decode(&long).is_err());
        let mut other = bytes;
        other[0] = 2;
        assert_eq!(ToInit::decode(&other), Err(BadMessage::UnknownKind(2)));
    }
}
