//! The digest fanout readers compare their streams with.

/// An order-sensitive digest to compare streams: FNV-1a over 64-bit words
/// (byte-wise FNV would make the client, not jwd, the bottleneck). Chunk
/// boundaries do not matter: the state carries partial words.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest {
    hash: u64,
    word: u64,
    fill: u32,
}

impl Digest {
    pub(crate) fn new() -> Self {
        Digest {
            hash: FNV_START,
            word: 0,
            fill: 0,
        }
    }

    pub(crate) fn update(&mut self, mut bytes: &[u8]) {
        while self.fill != 0 && !bytes.is_empty() {
            self.push_byte(bytes[0]);
            bytes = &bytes[1..];
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        for &b in words.remainder() {
            self.push_byte(b);
        }
    }

    fn push_byte(&mut self, b: u8) {
        self.word |= u64::from(b) << (8 * self.fill);
        self.fill += 1;
        if self.fill == 8 {
            let w = self.word;
            self.word = 0;
            self.fill = 0;
            self.mix(w);
        }
    }

    fn mix(&mut self, w: u64) {
        self.hash = (self.hash ^ w).wrapping_mul(0x100000001b3);
    }
}

const FNV_START: u64 = 0xcbf29ce484222325;
