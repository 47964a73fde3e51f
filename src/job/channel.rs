//! The one definition of what jwd and a job's init (`jw-init`, see
//! `init/`) say to each other, and how each message is laid out in bytes.
//! Both sides encode and decode through this file only.
//!
//! The channel is a SOCK_SEQPACKET socket pair, so every message arrives
//! whole and alone; the init holds its end at [`CHANNEL_FD`]. In order:
//! - jwd queues the job's [`Setup`] (postcard) before it clones the init;
//! - the init answers with one [`Report`]: [`Report::ExecOk`] or
//!   [`Report::Failed`] (where and with which errno set-up stopped);
//! - then it relays the command's output ([`FromInit::Output`]) and, once
//!   the command has ended, reports [`Report::Exited`] and exits;
//! - jwd may send [`ToInit::Signal`] at any time (the init forwards it).
//!
//! Byte layout, all integers little-endian: a message from the init starts
//! with a u32 kind. A report is [`REPORT_LEN`] bytes: kind, stage (u32),
//! value (i32). Output is the kind, then 1..=[`OUTPUT_CHUNK`] bytes. A
//! message to the init is [`CONTROL_LEN`] bytes: kind, then the value.
//!
//! A jwd and a jw-init of different builds may not agree on any of this:
//! the init's first argument ([`Setup::argv`]) names the format, and the
//! init refuses to start under another.

use std::ffi::{c_int, CStr};

use crate::protocol::OutputStream;

/// The channel to jwd, in the init: one end of a SOCK_SEQPACKET socket
/// pair. It is the only descriptor jwd holds for a running job.
pub const CHANNEL_FD: c_int = 3;

/// The length of every report from the init (kind, stage, value).
pub const REPORT_LEN: usize = 12;
/// Report kinds.
pub const REPORT_EXEC_OK: u32 = 1;
pub const REPORT_FAILED: u32 = 2;
pub const REPORT_EXITED: u32 = 3;
/// Output kinds: the kind, then 1..=OUTPUT_CHUNK bytes the command wrote.
pub const MSG_STDOUT: u32 = 4;
pub const MSG_STDERR: u32 = 5;
/// The kind's bytes in front of an output message's bytes.
pub const OUTPUT_HEADER: usize = 4;
/// The most output bytes one message carries.
pub const OUTPUT_CHUNK: usize = 64 * 1024;
/// The largest message jwd has to receive.
pub const MAX_MESSAGE: usize = OUTPUT_HEADER + OUTPUT_CHUNK;
/// From jwd to the init: kind, then the signal (i32) to forward to the
/// command.
pub const CONTROL_SIGNAL: u32 = 1;
pub const CONTROL_LEN: usize = 8;
/// The exit code of the clone's child when it cannot set up its fds (and
/// so cannot report).
pub const EXIT_FDS: i32 = 125;
/// The init's first argument: the argument and message format, so a jwd
/// and a jw-init from different builds fail loudly instead of misreading
/// each other.
pub const ARGS_VERSION: &CStr = c"jw-init/2";

mod setup;
mod stage;
#[cfg(test)]
mod tests;

pub use setup::{Setup, INIT_ENV, MAX_SETUP};
pub use stage::Stage;

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

/// A message from the init to jwd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromInit<'a> {
    Report(Report),
    /// Bytes the command wrote (1..=[`OUTPUT_CHUNK`]).
    Output {
        stream: OutputStream,
        bytes: &'a [u8],
    },
}

fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
}

impl<'a> FromInit<'a> {
    /// Reads one whole message as received; output borrows its bytes.
    pub fn decode(message: &'a [u8]) -> Result<FromInit<'a>, BadMessage> {
        if message.len() < 4 {
            return Err(BadMessage::Empty);
        }
        let kind = u32::from_le_bytes(word(message, 0));
        let len = message.len();
        let bad_length = Err(BadMessage::Length { kind, len });
        match kind {
            MSG_STDOUT | MSG_STDERR => {
                if len <= OUTPUT_HEADER || len > MAX_MESSAGE {
                    return bad_length;
                }
                let stream = if kind == MSG_STDOUT {
                    OutputStream::Stdout
                } else {
                    OutputStream::Stderr
                };
                Ok(FromInit::Output {
                    stream,
                    bytes: &message[OUTPUT_HEADER..],
                })
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

    /// The message's length in bytes.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            FromInit::Report(_) => REPORT_LEN,
            FromInit::Output { bytes, .. } => OUTPUT_HEADER + bytes.len(),
        }
    }

    /// Never: every message has its kind at least.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the message at the start of `buf` (at least [`Self::len`]
    /// bytes) and returns its length. (The init's relay builds output in
    /// place instead: [`OutputBuffer`].)
    #[cfg(test)]
    pub fn encode(&self, buf: &mut [u8]) -> usize {
        match *self {
            FromInit::Report(report) => buf[..REPORT_LEN].copy_from_slice(&report.encode()),
            FromInit::Output { stream, bytes } => {
                buf[..OUTPUT_HEADER].copy_from_slice(&output_kind(stream).to_le_bytes());
                buf[OUTPUT_HEADER..OUTPUT_HEADER + bytes.len()].copy_from_slice(bytes);
            }
        }
        self.len()
    }
}

fn output_kind(stream: OutputStream) -> u32 {
    match stream {
        OutputStream::Stdout => MSG_STDOUT,
        OutputStream::Stderr => MSG_STDERR,
    }
}

/// The init's buffer for relaying output without a copy: the command's
/// bytes are read straight into [`OutputBuffer::payload`], then
/// [`OutputBuffer::message`] puts the kind in front of them. Allocated
/// once per job.
pub struct OutputBuffer(Box<[u8]>);

impl Default for OutputBuffer {
    fn default() -> Self {
        OutputBuffer(vec![0u8; MAX_MESSAGE].into_boxed_slice())
    }
}

impl OutputBuffer {
    /// Where the next chunk of output goes: [`OUTPUT_CHUNK`] bytes.
    pub fn payload(&mut self) -> &mut [u8] {
        &mut self.0[OUTPUT_HEADER..]
    }

    /// The message for the first `len` bytes of the payload (1..=
    /// [`OUTPUT_CHUNK`]), of `stream`.
    pub fn message(&mut self, stream: OutputStream, len: usize) -> &[u8] {
        debug_assert!((1..=OUTPUT_CHUNK).contains(&len));
        self.0[..OUTPUT_HEADER].copy_from_slice(&output_kind(stream).to_le_bytes());
        &self.0[..OUTPUT_HEADER + len]
    }
}

/// A message from jwd to the init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToInit {
    /// Forward this signal to the command.
    Signal(i32),
}

impl ToInit {
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let ToInit::Signal(sig) = *self;
        let mut message = [0u8; CONTROL_LEN];
        message[..4].copy_from_slice(&CONTROL_SIGNAL.to_le_bytes());
        message[4..].copy_from_slice(&sig.to_le_bytes());
        message
    }

    pub fn decode(message: &[u8]) -> Result<ToInit, BadMessage> {
        if message.len() < 4 {
            return Err(BadMessage::Empty);
        }
        let kind = u32::from_le_bytes(word(message, 0));
        if kind != CONTROL_SIGNAL {
            return Err(BadMessage::UnknownKind(kind));
        }
        if message.len() != CONTROL_LEN {
            return Err(BadMessage::Length {
                kind,
                len: message.len(),
            });
        }
        Ok(ToInit::Signal(i32::from_le_bytes(word(message, 4))))
    }
}
