//! Length-prefixed framing: a 4-byte big-endian payload length, then the
//! payload.
//!
//! The decoder is incremental and pure: feed it bytes in pieces of any size
//! and it yields whole payloads. It reads the length as soon as the 4 header
//! bytes are there and rejects an oversize frame before a single payload byte
//! is buffered, so a peer cannot make it allocate what it merely announces.

use super::ProtocolError;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Looks for one whole frame at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed ("incomplete"), or the
/// payload and the number of bytes the frame used. A length above
/// `max_payload` is an error as soon as the header is complete.
pub fn parse_frame(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    // u32 -> usize cannot truncate on the 32- and 64-bit targets we build for.
    let len = len as usize;
    if len > max_payload {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: max_payload,
        });
    }
    let end = HEADER_LEN + len;
    match buf.get(HEADER_LEN..end) {
        Some(payload) => Ok(Some((payload, end))),
        None => Ok(None),
    }
}

/// A buffering frame decoder for a byte stream.
///
/// Memory is bounded by `max_payload + HEADER_LEN` plus the largest single
/// `feed`: bytes are only buffered as they arrive, and consumed frames are
/// dropped from the front.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    max_payload: usize,
    /// Set after an error: a framing error leaves the stream position
    /// unknowable, so every later call returns the same error.
    failed: Option<ProtocolError>,
}

impl FrameDecoder {
    /// A decoder that rejects payloads longer than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_payload,
            failed: None,
        }
    }

    /// Appends bytes read from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to append bytes read from the peer to, with room for at
    /// least `want` more: read straight into it (tokio's `read_buf`, for
    /// one) instead of reading elsewhere and calling `feed`. Append only.
    pub fn append_buffer(&mut self, want: usize) -> &mut Vec<u8> {
        self.compact();
        if self.failed.is_some() {
            // Whatever is appended is never looked at; keep it small.
            self.buf.clear();
        }
        self.buf.reserve(want);
        &mut self.buf
    }

    /// The next whole frame's payload, `Ok(None)` if more bytes are needed.
    ///
    /// The slice borrows the decoder's buffer and is valid until the next
    /// call; decode it before asking for the next frame.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match parse_frame(&self.buf[self.start..], self.max_payload) {
            Ok(Some((_, used))) => {
                let begin = self.start + HEADER_LEN;
                self.start += used;
                Ok(Some(&self.buf[begin..self.start]))
            }
            Ok(None) => Ok(None),
            Err(err) => {
                self.failed = Some(err.clone());
                self.buf = Vec::new();
                self.start = 0;
                Err(err)
            }
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Drops consumed bytes so the buffer does not grow with the stream.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.start);
        }
        self.start = 0;
        // Give back a buffer that grew for one big frame once it is idle.
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }
}

/// Appends one frame to `out`: the header, then whatever `write_payload`
/// appends. Fails, leaving `out` as it was, if the payload exceeds
/// `max_payload`.
pub fn write_frame<E>(
    out: &mut Vec<u8>,
    max_payload: usize,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), ProtocolError>
where
    ProtocolError: From<E>,
{
    let header_at = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(err) = write_payload(out) {
        out.truncate(header_at);
        return Err(err.into());
    }
    let len = out.len() - header_at - HEADER_LEN;
    if len > max_payload {
        out.truncate(header_at);
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: max_payload,
        });
    }
    // len <= max_payload <= u32::MAX here (MAX_FRAME is far below it).
    let len = u32::try_from(len).map_err(|_| ProtocolError::FrameTooLarge {
        len,
        max: max_payload,
    })?;
    out[header_at..header_at + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame::<ProtocolError>(&mut out, 1024, |o| {
            o.extend_from_slice(payload);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn header_is_big_endian_length() {
        assert_eq!(frame(b"abc"), [0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(frame(b""), [0, 0, 0, 0]);
    }

    #[test]
    fn appending_in_place_is_feeding() {
        let mut bytes = frame(b"one");
        bytes.extend(frame(b"three"));
        let mut dec = FrameDecoder::new(1024);
        for piece in bytes.chunks(3) {
            dec.append_buffer(3).extend_from_slice(piece);
        }
        assert_eq!(dec.next_frame().unwrap(), Some(&b"one"[..]));
        assert_eq!(dec.next_frame().unwrap(), Some(&b"three"[..]));
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn many_frames_in_one_feed() {
        let mut bytes = frame(b"one");
        bytes.extend(frame(b""));
        bytes.extend(frame(b"three"));
        let mut dec = FrameDecoder::new(1024);
        dec.feed(&bytes);
        assert_eq!(dec.next_frame().unwrap(), Some(&b"one"[..]));
        assert_eq!(dec.next_frame().unwrap(), Some(&b""[..]));
        assert_eq!(dec.next_frame().unwrap(), Some(&b"three"[..]));
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn one_frame_byte_by_byte() {
        let bytes = frame(b"hello world");
        let mut dec = FrameDecoder::new(1024);
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(
                dec.next_frame().unwrap(),
                None,
                "early frame before byte {i}"
            );
            dec.feed(&[*b]);
        }
        assert_eq!(dec.next_frame().unwrap(), Some(&b"hello world"[..]));
    }

    #[test]
    fn oversize_length_fails_on_the_header_alone() {
        let mut dec = FrameDecoder::new(1024);
        dec.feed(&[0, 0, 4, 1]);
        let err = dec.next_frame().unwrap_err();
        assert_eq!(
            err,
            ProtocolError::FrameTooLarge {
                len: 1025,
                max: 1024
            }
        );
        // Poisoned: later bytes do not resynchronise a broken stream.
        dec.feed(&frame(b"ok"));
        assert_eq!(dec.next_frame().unwrap_err(), err);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn maximum_length_is_accepted() {
        let mut dec = FrameDecoder::new(1024);
        let mut bytes = vec![0, 0, 4, 0];
        bytes.resize(4 + 1024, 7);
        dec.feed(&bytes);
        assert_eq!(dec.next_frame().unwrap().map(<[u8]>::len), Some(1024));
    }

    #[test]
    fn u32_max_length_is_rejected_without_allocating() {
        let mut dec = FrameDecoder::new(1 << 20);
        dec.feed(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            dec.next_frame(),
            Err(ProtocolError::FrameTooLarge { len, .. }) if len == u32::MAX as usize
        ));
    }

    #[test]
    fn writer_refuses_oversize_payload_and_leaves_buffer_alone() {
        let mut out = vec![9];
        let err = write_frame::<ProtocolError>(&mut out, 2, |o| {
            o.extend_from_slice(b"abc");
            Ok(())
        });
        assert!(err.is_err());
        assert_eq!(out, [9]);
    }
}
