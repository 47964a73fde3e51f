//! Drives the protocol decoder with arbitrary bytes, the way a hostile peer
//! would: the frame decoder fed in pieces, then both message decoders on
//! every frame. Panics, hangs and unbounded allocation are findings; so is
//! any disagreement between the incremental decoder and a one-shot parse, or
//! a message that does not survive re-encoding.
#![no_main]

use jw::protocol::{
    decode, decode_for, encode, encode_for, parse_frame, ClientMessage, FrameDecoder, ServerMessage,
};
use libfuzzer_sys::fuzz_target;

/// Small so that oversize handling is exercised often; the real limit is
/// checked the same way.
const MAX: usize = 4096;

fn check_round_trip<T>(payload: &[u8])
where
    T: serde::Serialize + for<'a> serde::Deserialize<'a> + PartialEq + std::fmt::Debug,
{
    if let Ok(msg) = decode::<T>(payload) {
        let mut wire = Vec::new();
        encode(&msg, &mut wire).expect("a decoded message re-encodes");
        let (again, used) = parse_frame(&wire, usize::MAX).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(decode::<T>(again).unwrap(), msg);
    }
}

/// A server's frame in the form of protocol versions 1 and 2 (a shorter
/// `JobInfo`): what decodes re-encodes to the same bytes.
fn check_older_form(payload: &[u8]) {
    if let Ok(msg) = decode_for(2, payload) {
        let mut wire = Vec::new();
        encode_for(2, &msg, &mut wire).expect("a decoded message re-encodes");
        let (again, _) = parse_frame(&wire, usize::MAX).unwrap().unwrap();
        assert_eq!(decode_for(2, again).unwrap(), msg);
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: the size of the pieces the stream arrives in.
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);

    // One-shot reference parse of the whole stream.
    let mut reference = Vec::new();
    let mut rest = stream;
    let reference_error = loop {
        match parse_frame(rest, MAX) {
            Ok(Some((payload, used))) => {
                reference.push(payload.to_vec());
                rest = &rest[used..];
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };

    // The incremental decoder, fed piece by piece, must agree.
    let mut decoder = FrameDecoder::new(MAX);
    let mut frames = Vec::new();
    let mut error = None;
    'feed: for chunk in stream.chunks(piece) {
        decoder.feed(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(payload)) => {
                    check_round_trip::<ClientMessage>(payload);
                    check_round_trip::<ServerMessage>(payload);
                    check_older_form(payload);
                    frames.push(payload.to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(decoder.buffered() <= MAX + 4 + piece);
    }
    assert_eq!(frames, reference);
    assert_eq!(error, reference_error);
});
