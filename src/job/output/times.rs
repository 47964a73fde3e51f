//! The time index of a job's output (`times`): when each run of the order
//! index began.
//!
//! Record j (24 bytes: three little-endian u64) belongs to index record j:
//! the Unix time in microseconds at which its first byte was captured, and
//! the committed lengths of stdout and stderr at that moment (where the
//! run begins in its stream, and where the other stream stood). A record
//! is thus also a place to begin reading at without walking the index
//! from its start (`seek.rs`).
//!
//! The keeper (`store.rs`) writes record j just before index record j, so
//! every committed index record has its time, except those a restarted jwd
//! appended for bytes a crash left unindexed (`Output::open_closed`), and
//! every record of a job whose keeper predates this file (it has none).
//! Readers take those as "no time known".
//!
//! A run gets a new index record (and so a time) when the stream changes,
//! and when its bytes come `TIME_STEP_US` or more after its time: a time is
//! exact to that much, and a job that writes without pause costs at most
//! one record per `TIME_STEP_US` per stream. Times never go backwards (the
//! writer holds the clock at its last time while a stepped-back clock
//! catches up), so they can be searched by bisection.

/// The time index's file name in a job's directory.
pub const TIMES_FILE: &str = "times";
/// Bytes of one time record.
pub(super) const TIME_RECORD: u64 = 24;
/// A run's bytes captured this long (microseconds) after its time begin a
/// new run of the same stream: the precision of times.
pub(super) const TIME_STEP_US: u64 = 10_000;

/// When a run began, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTime {
    /// Unix time in microseconds of the run's first byte.
    pub time_us: u64,
    /// The committed lengths of stdout and stderr when it began.
    pub base: [u64; 2],
}

impl RunTime {
    pub(super) fn encode(&self) -> [u8; TIME_RECORD as usize] {
        let mut out = [0u8; TIME_RECORD as usize];
        out[..8].copy_from_slice(&self.time_us.to_le_bytes());
        out[8..16].copy_from_slice(&self.base[0].to_le_bytes());
        out[16..].copy_from_slice(&self.base[1].to_le_bytes());
        out
    }

    /// The record in `bytes` (at least `TIME_RECORD` long).
    pub(super) fn decode(bytes: &[u8]) -> RunTime {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        RunTime {
            time_us: word(0),
            base: [word(1), word(2)],
        }
    }
}

/// Now, in Unix microseconds (the vDSO's clock: no system call).
pub(super) fn now_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

/// A bisection for the first of `count` records whose time is at or after
/// `since`: ask `probe` which record to read, tell `answer` its time, until
/// `probe` says `None`; then `found` is the record (`count` if none is).
#[derive(Debug)]
pub(super) struct Bisect {
    lo: u64,
    hi: u64,
    since: u64,
}

impl Bisect {
    pub(super) fn new(count: u64, since: u64) -> Bisect {
        Bisect {
            lo: 0,
            hi: count,
            since,
        }
    }

    /// The record to read next, or `None` once found.
    pub(super) fn probe(&self) -> Option<u64> {
        (self.lo < self.hi).then(|| self.lo + (self.hi - self.lo) / 2)
    }

    /// The time of record `j` (the last probe).
    pub(super) fn answer(&mut self, j: u64, time_us: u64) {
        if time_us >= self.since {
            self.hi = j;
        } else {
            self.lo = j + 1;
        }
    }

    pub(super) fn found(&self) -> u64 {
        self.lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let r = RunTime {
            time_us: 1_764_000_000_123_456,
            base: [7, u64::MAX - 1],
        };
        assert_eq!(RunTime::decode(&r.encode()), r);
    }

    fn search(times: &[u64], since: u64) -> u64 {
        let mut b = Bisect::new(times.len() as u64, since);
        let mut probes = 0;
        while let Some(j) = b.probe() {
            b.answer(j, times[j as usize]);
            probes += 1;
            assert!(probes <= 64, "bisection ends");
        }
        b.found()
    }

    #[test]
    fn the_search_finds_the_first_run_at_or_after_the_time() {
        let times = [10, 20, 20, 20, 30, 45];
        assert_eq!(search(&times, 0), 0);
        assert_eq!(search(&times, 10), 0);
        assert_eq!(search(&times, 11), 1);
        assert_eq!(search(&times, 20), 1, "the first of equal times");
        assert_eq!(search(&times, 21), 4);
        assert_eq!(search(&times, 45), 5);
        assert_eq!(search(&times, 46), 6, "none: the end");
        assert_eq!(search(&[], 5), 0);
    }

    #[test]
    fn the_search_reads_few_records_of_many() {
        let times: Vec<u64> = (0..1_000_000).map(|i| i * 3).collect();
        let mut b = Bisect::new(times.len() as u64, 1_500_001);
        let mut probes = 0;
        while let Some(j) = b.probe() {
            b.answer(j, times[j as usize]);
            probes += 1;
        }
        assert_eq!(b.found(), 500_001);
        assert!(probes <= 20, "{probes} probes");
    }
}
