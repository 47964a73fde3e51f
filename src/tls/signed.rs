//! Checks the signature of a signed X.509 structure (here: a revocation
//! list) against a CA's public key with the algorithms of rustls's crypto
//! provider, so a list that names a CA but was not signed by its key is
//! refused when jwd loads it, not at every handshake after.
//!
//! Both inputs are DER (`SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }`
//! and the CA's `SubjectPublicKeyInfo`); the few TLVs needed are split
//! here, bounds-checked, rather than parsed twice.

use rustls::pki_types::SignatureVerificationAlgorithm;

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;

/// One DER TLV split off the front of an input.
#[derive(Debug, PartialEq, Eq)]
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    /// Tag, length and contents.
    whole: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
}

/// One DER TLV off the front of `input`; `None` when it is truncated or
/// its length is not DER.
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some(Tlv {
        tag,
        contents: &rest[..len],
        whole: &input[..header + len],
        rest: &rest[len..],
    })
}

/// A TLV of the given tag.
fn expect(tag: u8, input: &[u8]) -> Result<Tlv<'_>, SignatureError> {
    match tlv(input) {
        Some(t) if t.tag == tag => Ok(t),
        _ => Err(SignatureError::Malformed),
    }
}

/// The bytes of a BIT STRING with no unused bits.
fn bits(contents: &[u8]) -> Option<&[u8]> {
    match contents.split_first() {
        Some((0, bits)) => Some(bits),
        _ => None,
    }
}

/// Why a signature did not verify.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// The structure or the key is not the DER expected.
    Malformed,
    /// No algorithm of the provider matches the signature's and the key's.
    Unsupported,
    /// The signature is not the key's.
    Invalid,
}

/// Verifies the signature of `signed` (DER of a signed structure) with
/// the public key `spki` (DER of a SubjectPublicKeyInfo).
pub(crate) fn verify(
    signed: &[u8],
    spki: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), SignatureError> {
    let outer = expect(SEQUENCE, signed)?.contents;
    let tbs = tlv(outer).ok_or(SignatureError::Malformed)?;
    let signature_alg = expect(SEQUENCE, tbs.rest)?;
    let signature = expect(BIT_STRING, signature_alg.rest)?;
    let signature = bits(signature.contents).ok_or(SignatureError::Malformed)?;
    let key_info = expect(SEQUENCE, spki)?.contents;
    let key_alg = expect(SEQUENCE, key_info)?;
    let key = expect(BIT_STRING, key_alg.rest)?;
    let key = bits(key.contents).ok_or(SignatureError::Malformed)?;
    let (tbs, signature_alg, key_alg) = (tbs.whole, signature_alg.contents, key_alg.contents);
    let mut matched = false;
    for alg in algorithms {
        if alg.signature_alg_id().as_ref() != signature_alg
            || alg.public_key_alg_id().as_ref() != key_alg
        {
            continue;
        }
        matched = true;
        if alg.verify_signature(key, tbs, signature).is_ok() {
            return Ok(());
        }
    }
    Err(if matched {
        SignatureError::Invalid
    } else {
        SignatureError::Unsupported
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_reads_short_and_long_lengths_and_refuses_truncation() {
        assert_eq!(
            tlv(&[0x04, 2, 9, 8, 7]),
            Some(Tlv {
                tag: 0x04,
                contents: &[9, 8],
                whole: &[0x04, 2, 9, 8],
                rest: &[7]
            })
        );
        let mut long = vec![0x04, 0x81, 200];
        long.extend(std::iter::repeat_n(1, 200));
        let t = tlv(&long).unwrap();
        assert_eq!(
            (t.contents.len(), t.whole.len(), t.rest.len()),
            (200, 203, 0)
        );
        assert_eq!(tlv(&[0x04, 3, 1]), None);
        assert_eq!(tlv(&[0x04, 0x80]), None);
        assert_eq!(tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(tlv(&[]), None);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let algs = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        assert_eq!(verify(&[], &[], algs), Err(SignatureError::Malformed));
        assert_eq!(
            verify(&[0x30, 2, 0x30, 0], &[0x30, 0], algs),
            Err(SignatureError::Malformed)
        );
    }
}
