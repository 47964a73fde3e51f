//! The jw wire protocol: frames and messages, as specified in protocol.md.
//!
//! Pure code: no I/O, no async, no knowledge of jobs or sockets. It is the
//! first code to touch a hostile peer's bytes, so nothing here may panic on
//! any input; the fuzz target in `fuzz/` holds it to that.

pub mod frame;
pub mod input;
pub mod job_id;
pub mod legacy;
pub mod message;

pub use frame::{parse_frame, write_frame, FrameDecoder, HEADER_LEN};
pub use input::*;
pub use job_id::*;
pub use legacy::{decode_for, encode_for, JobInfoV2};
pub use message::*;

use serde::{Deserialize, Serialize};

/// Largest frame payload, in bytes (1 MiB). Big enough for any request within
/// the limits below and for a `List` page; small enough that a connection's
/// decode buffer stays cheap.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest `data` in one `Output` event (256 KiB).
pub const MAX_CHUNK: usize = 256 * 1024;
/// Most streams open at once on one connection.
pub const MAX_STREAMS: usize = 1024;
/// Largest credit a stream may hold at once (2^31 - 1, as HTTP/2 windows).
pub const MAX_CREDIT: u64 = (1 << 31) - 1;
/// Longest `command`, in bytes.
pub const MAX_COMMAND_LEN: usize = 4096;
/// Most arguments in `args`.
pub const MAX_ARGS: usize = 4096;
/// Most variables in `env`.
pub const MAX_ENV: usize = 1024;
/// Most bytes of command, arguments, names and values together.
pub const MAX_ARGV_ENV_BYTES: usize = 256 * 1024;

/// Why bytes from a peer could not be turned into a message, or a message
/// into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("malformed message: {0} bytes left over after the message")]
    TrailingBytes(usize),
}

/// Appends `msg` to `out` as one frame.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    write_frame(out, MAX_FRAME, |out| postcard::to_io(msg, out).map(|_| ()))
}

/// Decodes one frame payload as a message. The whole payload must be used:
/// trailing bytes mean the peer and we disagree on the format.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, ProtocolError> {
    let (msg, rest) = postcard::take_from_bytes(payload)?;
    if !rest.is_empty() {
        return Err(ProtocolError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Appends an `Event::Output` frame for `stream` without first copying
/// `data` into an owned message: the server's hot path.
///
/// The bytes are exactly those of
/// `encode(&ServerMessage::Event { stream, event: Event::Output(chunk) })`
/// (a proptest holds it to that).
pub fn encode_output(
    stream: u32,
    which: OutputStream,
    offset: u64,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    encode_output_header(stream, which, offset, data.len(), out)?;
    out.extend_from_slice(data);
    Ok(())
}

/// Appends the start of an `Event::Output` frame whose `len` data bytes the
/// caller appends right after (for example by reading a file straight into
/// the buffer).
///
/// postcard writes enum variant indexes and integers as the same varints,
/// and a byte string as its varint length then the bytes, so the prefix is
/// a tuple of the variant indexes, the fields and the data's length.
pub fn encode_output_header(
    stream: u32,
    which: OutputStream,
    offset: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    const EVENT_VARIANT: u32 = 1; // ServerMessage::Event
    const OUTPUT_VARIANT: u32 = 4; // Event::Output
    let which = which.index() as u32;
    let prefix = postcard::to_allocvec(&(
        EVENT_VARIANT,
        stream,
        OUTPUT_VARIANT,
        which,
        offset,
        len as u64,
    ))?;
    let total = prefix.len() + len;
    if total > MAX_FRAME {
        return Err(ProtocolError::FrameTooLarge {
            len: total,
            max: MAX_FRAME,
        });
    }
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&prefix);
    Ok(())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
