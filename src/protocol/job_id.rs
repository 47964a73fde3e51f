//! A job's identity on the wire: 128 random bits, written as a UUID.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's identity: 128 random bits, shown as a UUID (version 4).
///
/// Unguessable on purpose: a job id is not a capability (authorization still
/// applies), but it must not leak how many jobs exist or let one user probe
/// for another's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub [u8; 16]);

impl JobId {
    /// Builds an id from 16 random bytes, setting the UUID v4 version and
    /// variant bits so the text form is a well-formed UUID.
    pub fn from_random(mut bytes: [u8; 16]) -> Self {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        JobId(bytes)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// Why a job id given as text was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job id {0:?}: expected 32 hex digits, optionally as a UUID with dashes")]
pub struct ParseJobIdError(pub String);

impl std::str::FromStr for JobId {
    type Err = ParseJobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseJobIdError(s.to_string());
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 {
            return Err(err());
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(err)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(err)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(JobId(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_text_round_trips_as_uuid_v4() {
        let id = JobId::from_random([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, "abababab-abab-4bab-abab-abababababab");
        assert_eq!(text.parse::<JobId>().unwrap(), id);
        let plain: String = text.chars().filter(|&c| c != '-').collect();
        assert_eq!(plain.parse::<JobId>().unwrap(), id);
    }

    #[test]
    fn bad_job_ids_are_rejected() {
        for bad in [
            "",
            "xyz",
            "abababab-abab-4bab-abab-ababababab",
            "g".repeat(32).as_str(),
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
    }
}
