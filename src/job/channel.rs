//! The one definition of what jwd and a job's init (`jw-init`, see
//! `init/`, the job's keeper) say to each other, and how each message and
//! the keeper's exit record are laid out in bytes. Both sides encode and
//! decode through this file only.
//!
//! The channel is a SOCK_SEQPACKET connection, so every message arrives
//! whole and alone. At the start it is one end of a socket pair at
//! [`CHANNEL_FD`]; a restarted jwd reconnects through the keeper's
//! listening socket ([`KEEPER_SOCKET`] in the job's directory, handed to
//! the init at [`LISTENER_FD`]), and the keeper takes the newest
//! connection as its channel. In order:
//! - jwd queues the job's [`Setup`] (postcard) before it clones the init;
//! - the init answers with one [`Report`]: [`Report::ExecOk`] or
//!   [`Report::Failed`] (where and with which errno set-up stopped);
//! - then the keeper writes the command's output into the job's files
//!   itself (the job's directory is handed to it at [`DIR_FD`]) and sends
//!   [`FromInit::Progress`] (the committed lengths) after writes, and as
//!   the first message on every new connection; once the command has
//!   ended it writes its [`ExitRecord`], reports [`Report::Exited`] and
//!   exits;
//! - right before [`Report::ExecOk`], and as the second message on every
//!   new connection, the keeper sends [`FromInit::Input`]: what the job's
//!   input is, with jwd's copy of its write end (the pipe's, or the
//!   terminal's master) as SCM_RIGHTS when it is open;
//! - jwd may send [`ToInit::Signal`] (forwarded to the command),
//!   [`ToInit::SignalAll`] (to every process of the job),
//!   [`ToInit::CloseInput`] (the end of the job's input) and
//!   [`ToInit::Grant`] (how many output bytes the job may keep) at any
//!   time.
//!
//! Byte layout, all integers little-endian: a message starts with a u32
//! kind. A report is [`REPORT_LEN`] bytes: kind, stage (u32), value (i32).
//! Progress is [`PROGRESS_LEN`] bytes: kind, then stdout, stderr and index
//! lengths and dropped bytes (u64 each). Input is [`INPUT_LEN`] bytes
//! (kind, u32 [`InputKind`]). A signal is [`SIGNAL_LEN`] bytes (kind,
//! i32), a grant [`GRANT_LEN`] (kind, u64), closing the input
//! [`CLOSE_INPUT_LEN`] (kind).
//!
//! A jwd and a jw-init of different builds may not agree on any of this:
//! the init's first argument ([`Setup::argv`]) names the format, and the
//! init refuses to start under another.

use std::ffi::{c_int, CStr};

/// The channel to jwd, in the init: one end of a SOCK_SEQPACKET socket
/// pair. It is the only descriptor jwd holds for a running job.
pub const CHANNEL_FD: c_int = 3;
/// The keeper's listening socket (bound at [`KEEPER_SOCKET`]), in the init.
pub const LISTENER_FD: c_int = 4;
/// The job's directory (O_PATH), where the keeper writes output and its
/// exit record.
pub const DIR_FD: c_int = 5;
/// The keeper's listening socket's name in the job's directory.
pub const KEEPER_SOCKET: &str = "keeper.sock";
/// The keeper's exit record's name in the job's directory.
pub const EXIT_FILE: &str = "exit";

/// The length of every report from the init (kind, stage, value).
pub const REPORT_LEN: usize = 12;
/// Report kinds.
pub const REPORT_EXEC_OK: u32 = 1;
pub const REPORT_FAILED: u32 = 2;
pub const REPORT_EXITED: u32 = 3;
/// Progress: the kind, then four u64.
pub const MSG_PROGRESS: u32 = 6;
pub const PROGRESS_LEN: usize = 4 + 4 * 8;
/// Input: the kind, then the [`InputKind`] (u32); the descriptor, if
/// any, rides along as SCM_RIGHTS.
pub const MSG_INPUT: u32 = 7;
pub const INPUT_LEN: usize = 8;
/// The largest message jwd has to receive.
pub const MAX_MESSAGE: usize = PROGRESS_LEN;
/// From jwd to the init: a signal to forward to the command (kind, i32).
pub const CONTROL_SIGNAL: u32 = 1;
pub const SIGNAL_LEN: usize = 8;
/// From jwd to the init: the output bytes the job may keep in all (kind,
/// u64).
pub const CONTROL_GRANT: u32 = 2;
pub const GRANT_LEN: usize = 12;
/// From jwd to the init: close the job's input (kind only).
pub const CONTROL_CLOSE_INPUT: u32 = 3;
pub const CLOSE_INPUT_LEN: usize = 4;
/// From jwd to the init: a signal to send to every process of the job
/// (kind, i32).
pub const CONTROL_SIGNAL_ALL: u32 = 4;
/// The largest message the init has to receive.
pub const CONTROL_LEN: usize = GRANT_LEN;
/// The exit code of the clone's child when it cannot set up its fds (and
/// so cannot report).
pub const EXIT_FDS: i32 = 125;
/// The init's first argument: the argument and message format, so a jwd
/// and a jw-init from different builds fail loudly instead of misreading
/// each other.
pub const ARGS_VERSION: &CStr = c"jw-init/5";

mod setup;
mod stage;
#[cfg(test)]
mod tests;

pub use setup::{Setup, INIT_ENV, MAX_SETUP};
pub use stage::Stage;

use super::output::Progress;

/// A message the init cannot have sent (or jwd cannot have sent, for
/// [`ToInit`]): too short or too long for its kind, or of no known kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    #[error("an empty message")]
    Empty,
    #[error("a message of unknown kind {0}")]
    UnknownKind(u32),
    #[error("a message of kind {kind} with {len} bytes")]
    Length { kind: u32, len: usize },
    #[error("a failure report of unknown stage {0}")]
    UnknownStage(u32),
}

/// A report from the init: how set-up went, then how the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The command was executed.
    ExecOk,
    /// Set-up failed at `stage` with `errno`; the init exits.
    Failed { stage: Stage, errno: i32 },
    /// The command ended with this wait status (waitpid's); the init exits.
    Exited { wait_status: i32 },
}

impl Report {
    /// The report's bytes, on the stack. No allocation, no lock: the child
    /// of the clone, which shares jwd's memory, reports through it.
    pub fn encode(&self) -> [u8; REPORT_LEN] {
        let (kind, stage, value) = match *self {
            Report::ExecOk => (REPORT_EXEC_OK, 0, 0),
            Report::Failed { stage, errno } => (REPORT_FAILED, stage as u32, errno),
            Report::Exited { wait_status } => (REPORT_EXITED, 0, wait_status),
        };
        let mut buf = [0u8; REPORT_LEN];
        buf[0..4].copy_from_slice(&kind.to_le_bytes());
        buf[4..8].copy_from_slice(&stage.to_le_bytes());
        buf[8..12].copy_from_slice(&value.to_le_bytes());
        buf
    }
}

/// What a job's input is, as the keeper says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum InputKind {
    /// `/dev/null`: the job was started without input.
    Null = 0,
    /// A pipe, open: its write end comes with the message.
    Pipe = 1,
    /// A terminal: its master comes with the message.
    Terminal = 2,
    /// A pipe that was closed (end of input).
    Closed = 3,
}

impl InputKind {
    /// Whether the message carries a descriptor.
    pub fn has_fd(self) -> bool {
        matches!(self, InputKind::Pipe | InputKind::Terminal)
    }

    fn from_u32(n: u32) -> Option<InputKind> {
        [
            InputKind::Null,
            InputKind::Pipe,
            InputKind::Terminal,
            InputKind::Closed,
        ]
        .into_iter()
        .find(|k| *k as u32 == n)
    }
}

/// A message from the init to jwd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromInit {
    Report(Report),
    /// What the keeper has written so far (`closed` is never sent: jwd
    /// learns the end from the report and the channel's end).
    Progress(Progress),
    /// What the job's input is (its descriptor travels beside the bytes).
    Input(InputKind),
}

fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
}

fn long(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Progress as its four numbers: stdout, stderr, index, dropped.
fn progress_words(p: &Progress) -> [u64; 4] {
    [p.lens[0], p.lens[1], p.index_len, p.dropped]
}

fn progress_from(w: [u64; 4]) -> Progress {
    Progress {
        lens: [w[0], w[1]],
        index_len: w[2],
        dropped: w[3],
        closed: false,
    }
}

impl FromInit {
    /// Reads one whole message as received.
    pub fn decode(message: &[u8]) -> Result<FromInit, BadMessage> {
        if message.len() < 4 {
            return Err(BadMessage::Empty);
        }
        let kind = u32::from_le_bytes(word(message, 0));
        let len = message.len();
        let bad_length = Err(BadMessage::Length { kind, len });
        match kind {
            MSG_PROGRESS => {
                if len != PROGRESS_LEN {
                    return bad_length;
                }
                Ok(FromInit::Progress(progress_from([
                    long(message, 4),
                    long(message, 12),
                    long(message, 20),
                    long(message, 28),
                ])))
            }
            MSG_INPUT => {
                if len != INPUT_LEN {
                    return bad_length;
                }
                let kind = u32::from_le_bytes(word(message, 4));
                InputKind::from_u32(kind)
                    .map(FromInit::Input)
                    .ok_or(BadMessage::UnknownKind(kind))
            }
            REPORT_EXEC_OK | REPORT_FAILED | REPORT_EXITED => {
                if len != REPORT_LEN {
                    return bad_length;
                }
                let stage = u32::from_le_bytes(word(message, 4));
                let value = i32::from_le_bytes(word(message, 8));
                Ok(FromInit::Report(match kind {
                    REPORT_EXEC_OK => Report::ExecOk,
                    REPORT_FAILED => Report::Failed {
                        stage: Stage::from_u32(stage).ok_or(BadMessage::UnknownStage(stage))?,
                        errno: value,
                    },
                    _ => Report::Exited { wait_status: value },
                }))
            }
            other => Err(BadMessage::UnknownKind(other)),
        }
    }

    /// Writes the message at the start of `buf` (at least
    /// [`MAX_MESSAGE`] bytes) and returns its length.
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        match self {
            FromInit::Report(report) => {
                buf[..REPORT_LEN].copy_from_slice(&report.encode());
                REPORT_LEN
            }
            FromInit::Progress(p) => {
                buf[..4].copy_from_slice(&MSG_PROGRESS.to_le_bytes());
                for (i, w) in progress_words(p).into_iter().enumerate() {
                    buf[4 + 8 * i..12 + 8 * i].copy_from_slice(&w.to_le_bytes());
                }
                PROGRESS_LEN
            }
            FromInit::Input(kind) => {
                buf[..4].copy_from_slice(&MSG_INPUT.to_le_bytes());
                buf[4..8].copy_from_slice(&(*kind as u32).to_le_bytes());
                INPUT_LEN
            }
        }
    }
}

/// A message from jwd to the init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToInit {
    /// Forward this signal to the command.
    Signal(i32),
    /// Send this signal to every process of the job (the keeper excepted).
    SignalAll(i32),
    /// Close the job's input: the command reads EOF once it has read what
    /// is in the pipe.
    CloseInput,
    /// The job may keep this many output bytes in all (stdout and stderr
    /// together, within its own cap); past it the keeper drops and counts.
    Grant(u64),
}

impl ToInit {
    /// Writes the message at the start of `buf` and returns its bytes.
    pub fn encode<'b>(&self, buf: &'b mut [u8; CONTROL_LEN]) -> &'b [u8] {
        match *self {
            ToInit::Signal(sig) | ToInit::SignalAll(sig) => {
                let kind = match self {
                    ToInit::SignalAll(_) => CONTROL_SIGNAL_ALL,
                    _ => CONTROL_SIGNAL,
                };
                buf[..4].copy_from_slice(&kind.to_le_bytes());
                buf[4..8].copy_from_slice(&sig.to_le_bytes());
                &buf[..SIGNAL_LEN]
            }
            ToInit::CloseInput => {
                buf[..4].copy_from_slice(&CONTROL_CLOSE_INPUT.to_le_bytes());
                &buf[..CLOSE_INPUT_LEN]
            }
            ToInit::Grant(bytes) => {
                buf[..4].copy_from_slice(&CONTROL_GRANT.to_le_bytes());
                buf[4..12].copy_from_slice(&bytes.to_le_bytes());
                &buf[..GRANT_LEN]
            }
        }
    }

    pub fn decode(message: &[u8]) -> Result<ToInit, BadMessage> {
        if message.len() < 4 {
            return Err(BadMessage::Empty);
        }
        let kind = u32::from_le_bytes(word(message, 0));
        let bad_length = Err(BadMessage::Length {
            kind,
            len: message.len(),
        });
        match kind {
            CONTROL_SIGNAL if message.len() == SIGNAL_LEN => {
                Ok(ToInit::Signal(i32::from_le_bytes(word(message, 4))))
            }
            CONTROL_SIGNAL_ALL if message.len() == SIGNAL_LEN => {
                Ok(ToInit::SignalAll(i32::from_le_bytes(word(message, 4))))
            }
            CONTROL_GRANT if message.len() == GRANT_LEN => Ok(ToInit::Grant(long(message, 4))),
            CONTROL_CLOSE_INPUT if message.len() == CLOSE_INPUT_LEN => Ok(ToInit::CloseInput),
            CONTROL_SIGNAL | CONTROL_SIGNAL_ALL | CONTROL_GRANT | CONTROL_CLOSE_INPUT => bad_length,
            other => Err(BadMessage::UnknownKind(other)),
        }
    }
}

/// What the keeper leaves in the job's directory ([`EXIT_FILE`]) when the
/// command has ended, before it exits: how it ended and what was written,
/// so a jwd that was away then still learns both. One `pwrite` of
/// [`EXIT_RECORD_LEN`] bytes (within a page: a crash leaves it whole or
/// absent): magic, wait status, end time, then the progress figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    pub wait_status: i32,
    pub ended_at_ms: u64,
    pub written: Progress,
}

const EXIT_MAGIC: &[u8; 4] = b"jwx1";
pub const EXIT_RECORD_LEN: usize = 4 + 4 + 8 + 4 * 8;

impl ExitRecord {
    pub fn encode(&self) -> [u8; EXIT_RECORD_LEN] {
        let mut buf = [0u8; EXIT_RECORD_LEN];
        buf[..4].copy_from_slice(EXIT_MAGIC);
        buf[4..8].copy_from_slice(&self.wait_status.to_le_bytes());
        buf[8..16].copy_from_slice(&self.ended_at_ms.to_le_bytes());
        for (i, w) in progress_words(&self.written).into_iter().enumerate() {
            buf[16 + 8 * i..24 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        buf
    }

    pub fn decode(bytes: &[u8]) -> Option<ExitRecord> {
        if bytes.len() != EXIT_RECORD_LEN || &bytes[..4] != EXIT_MAGIC {
            return None;
        }
        Some(ExitRecord {
            wait_status: i32::from_le_bytes(word(bytes, 4)),
            ended_at_ms: long(bytes, 8),
            written: progress_from([
                long(bytes, 16),
                long(bytes, 24),
                long(bytes, 32),
                long(bytes, 40),
            ]),
        })
    }

    /// The record in job directory `dir`, if the keeper wrote one.
    pub fn read(dir: &std::path::Path) -> Option<ExitRecord> {
        Self::decode(&std::fs::read(dir.join(EXIT_FILE)).ok()?)
    }
}
