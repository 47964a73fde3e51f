//! The channel's messages: each round-trips, and what a peer of the same
//! build never sends is refused.

use super::*;

fn sample() -> Setup {
    Setup {
        uid: 600_123,
        gid: 600_123,
        pooled: true,
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
        keeper_cgroup: "/sys/fs/cgroup/memory/x".into(),
        candidates: vec!["/usr/bin/sh".into(), "/bin/sh".into()],
        argv: vec!["sh".into(), "-c".into(), "".into(), "--".into(), "3".into()],
        env: vec!["LD_PRELOAD=/tmp/x.so".into(), "A=".into()],
        output_cap: 1 << 30,
        granted: 1 << 20,
        stdin: crate::protocol::Stdin::Terminal(crate::protocol::WindowSize {
            rows: 50,
            cols: 132,
        }),
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

fn progress(a: u64, b: u64, i: u64, d: u64) -> Progress {
    Progress {
        lens: [a, b],
        index_len: i,
        dropped: d,
        closed: false,
    }
}

fn all_from_init() -> Vec<FromInit> {
    let mut all = vec![
        FromInit::Report(Report::ExecOk),
        FromInit::Report(Report::Exited { wait_status: 0 }),
        FromInit::Report(Report::Exited {
            wait_status: 9 | 0x80,
        }),
        FromInit::Report(Report::Exited {
            wait_status: 3 << 8,
        }),
        FromInit::Progress(progress(0, 0, 0, 0)),
        FromInit::Progress(progress(u64::MAX, 1, 1 << 40, 7)),
        FromInit::Input(InputKind::Null),
        FromInit::Input(InputKind::Pipe),
        FromInit::Input(InputKind::Terminal),
        FromInit::Input(InputKind::Closed),
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
    let mut buf = [0u8; MAX_MESSAGE];
    let n = FromInit::Progress(progress(1, 2, 4, 258)).encode(&mut buf);
    assert_eq!(
        buf[..n],
        [
            6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2,
            1, 0, 0, 0, 0, 0, 0
        ]
    );
    let mut control = [0u8; CONTROL_LEN];
    assert_eq!(
        ToInit::Signal(libc::SIGTERM).encode(&mut control),
        [1, 0, 0, 0, 15, 0, 0, 0]
    );
    assert_eq!(
        ToInit::Grant(513).encode(&mut control),
        [2, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(ToInit::CloseInput.encode(&mut control), [3, 0, 0, 0]);
    assert_eq!(
        ToInit::SignalAll(libc::SIGUSR1).encode(&mut control),
        [4, 0, 0, 0, 10, 0, 0, 0]
    );
    let n = FromInit::Input(InputKind::Terminal).encode(&mut buf);
    assert_eq!(buf[..n], [7, 0, 0, 0, 2, 0, 0, 0]);
}

#[test]
fn truncated_long_and_unknown_messages_are_refused() {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    for message in all_from_init() {
        let n = message.encode(&mut buf);
        for len in 0..n {
            assert!(FromInit::decode(&buf[..len]).is_err(), "{message:?} {len}");
        }
        assert!(FromInit::decode(&buf[..n + 1]).is_err(), "{message:?} long");
    }
    let mut bad_input = [0u8; MAX_MESSAGE];
    let n = FromInit::Input(InputKind::Pipe).encode(&mut bad_input);
    bad_input[4..8].copy_from_slice(&9u32.to_le_bytes());
    assert!(FromInit::decode(&bad_input[..n]).is_err());
    for kind in [0u32, 4, 5, 99, u32::MAX] {
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
    let messages = [libc::SIGTERM, libc::SIGKILL, 0, -1, i32::MAX]
        .map(ToInit::Signal)
        .into_iter()
        .chain([0, 1, u64::MAX].map(ToInit::Grant))
        .chain([libc::SIGUSR1, 0].map(ToInit::SignalAll))
        .chain([ToInit::CloseInput]);
    for message in messages {
        let mut buf = [0u8; CONTROL_LEN];
        let bytes = message.encode(&mut buf).to_vec();
        assert_eq!(ToInit::decode(&bytes), Ok(message));
        for len in 0..bytes.len() {
            assert!(ToInit::decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(ToInit::decode(&long).is_err());
        let mut other = bytes;
        other[0] = 5;
        assert_eq!(ToInit::decode(&other), Err(BadMessage::UnknownKind(5)));
    }
}

#[test]
fn exit_records_round_trip_and_torn_ones_are_refused() {
    let record = ExitRecord {
        wait_status: 3 << 8,
        ended_at_ms: 1_700_000_000_123,
        written: progress(10, 20, 8, 5),
    };
    let bytes = record.encode();
    assert_eq!(ExitRecord::decode(&bytes), Some(record));
    for len in 0..bytes.len() {
        assert_eq!(ExitRecord::decode(&bytes[..len]), None, "{len}");
    }
    let mut foreign = bytes;
    foreign[0] = b'x';
    assert_eq!(ExitRecord::decode(&foreign), None);
}
