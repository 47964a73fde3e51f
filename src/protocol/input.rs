//! The vocabulary of a job's input (protocol version 2): what a job's
//! stdin is, a terminal's size, and the answer that opens an `Attach`
//! stream. Field order is wire order, as in `message.rs`.

use serde::{Deserialize, Serialize};

/// A job's input (version 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stdin {
    /// `/dev/null`, as with `Start`.
    #[default]
    Null,
    /// A pipe the job's owner writes into with `Attach`.
    Pipe,
    /// A pseudo-terminal of this size: the job's stdin, stdout and stderr
    /// (its output is one stream, stdout), its controlling terminal.
    Terminal(WindowSize),
}

/// A terminal's size in character cells (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// The answer that opens an `Attach` stream (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The job's input is a terminal (`Resize` applies).
    pub terminal: bool,
    /// Bytes of input the job was given before this stream: the `offset`
    /// of the stream's first `Input`.
    pub input_offset: u64,
    /// Input bytes the client may send before an `InputCredit`.
    pub credit: u32,
    /// This writer's number (random, never 0).
    pub writer: u64,
    /// The writer that attached before this one through this server (0:
    /// none since it has had the job). A client attaching again after a
    /// lost connection that finds its own number here knows nobody else
    /// wrote in between: `input_offset` counts only its bytes.
    pub previous_writer: u64,
}
