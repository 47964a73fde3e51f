//! The owner's output kept over all their jobs, against jwd's cap for it
//! (`--max-output-per-user`), and the grants that hand a running job's
//! keeper its share of it a little ahead of its writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One user's output kept over all their jobs, against the server's cap
/// for it. Grants take room before the keeper writes; removing a job, or
/// the end of a job that did not use all its grant, gives bytes back.
#[derive(Debug)]
pub struct UserOutput {
    kept: AtomicU64,
    cap: u64,
}

impl UserOutput {
    pub fn new(cap: u64, kept: u64) -> Arc<UserOutput> {
        Arc::new(UserOutput {
            kept: AtomicU64::new(kept),
            cap,
        })
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes kept or granted now.
    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::Acquire)
    }

    pub fn is_full(&self) -> bool {
        self.kept() >= self.cap
    }

    /// Takes room for up to `want` bytes; returns how many it got.
    pub fn take(&self, want: u64) -> u64 {
        let mut got = 0;
        let _ = self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |kept| {
                got = want.min(self.cap.saturating_sub(kept));
                Some(kept + got)
            });
        got
    }

    /// Counts `bytes` kept whatever the cap (written under an earlier
    /// grant).
    pub fn add(&self, bytes: u64) {
        self.kept.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back `bytes` (a job removed, or a grant not used).
    pub fn give_back(&self, bytes: u64) {
        let _ = self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |kept| {
                Some(kept.saturating_sub(bytes))
            });
    }
}

/// The least a capped owner's job is granted ahead of what it wrote: what
/// a quiet job holds of its owner's room (10,000 sleeping jobs hold 640
/// MiB of it; at 1 MiB each they filled the default 10 GiB cap and the
/// owner's starts were refused).
pub const GRANT_AHEAD_MIN: u64 = 64 << 10;
/// The most: a job writing fast is granted as much ahead as it wrote, up
/// to this, so a jwd a little behind never makes it drop bytes, while a
/// quiet job holds little of its owner's room.
pub const GRANT_AHEAD_MAX: u64 = 64 << 20;

/// What one running job's keeper may write: all of its cap when its owner
/// is not capped, else a share of the owner's room taken ahead of its
/// writes and topped up as it reports progress.
#[derive(Debug)]
pub struct Grant {
    user: Option<Arc<UserOutput>>,
    cap: u64,
    granted: u64,
    /// The job's end was settled (`settle`); dropped before that, the job
    /// never ran and everything granted goes back.
    settled: bool,
    /// The grant the keeper was last told is all there is (the owner's
    /// room ran out), so it is not told again.
    refused: Option<u64>,
    /// The last grant the keeper took delivery of (`told`): one that could
    /// not be sent is sent again at the next report.
    told: Option<u64>,
}

impl Grant {
    /// A job that has kept `kept` bytes so far (0 for a new one). Its
    /// keeper has been told nothing yet (a new job's learns the first
    /// grant in its set-up: `told` it).
    pub fn new(cap: u64, user: Option<Arc<UserOutput>>, kept: u64) -> Grant {
        let mut grant = Grant {
            granted: if user.is_some() { kept.min(cap) } else { cap },
            user,
            cap,
            settled: false,
            refused: None,
            told: None,
        };
        grant.top_up(kept);
        grant
    }

    /// The keeper took delivery of grant `total`.
    pub fn told(&mut self, total: u64) {
        self.told = Some(total);
    }

    /// The bytes the keeper may keep in all.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// After the keeper reported `kept` bytes: the total to tell it now,
    /// if any. That is the grant when it grew (or the keeper was not told
    /// the last one), or, once, the grant unchanged when the keeper has
    /// used it all and its owner has no room left (the keeper, which waits
    /// for a grant rather than drop bytes jwd would let it keep, then
    /// drops). Call `told` once it was delivered.
    pub fn top_up(&mut self, kept: u64) -> Option<u64> {
        if let Some(user) = &self.user {
            let ahead = kept.clamp(GRANT_AHEAD_MIN, GRANT_AHEAD_MAX);
            let target = kept.saturating_add(ahead).min(self.cap);
            if self.granted < target && self.granted.saturating_sub(kept) < ahead / 2 {
                let got = user.take(target - self.granted);
                if got > 0 {
                    self.granted += got;
                    self.refused = None;
                }
            }
        }
        if self.told != Some(self.granted) {
            return Some(self.granted);
        }
        let used_up = self.user.is_some()
            && kept >= self.granted
            && self.granted < self.cap
            && self.refused != Some(self.granted);
        used_up.then(|| {
            self.refused = Some(self.granted);
            self.granted
        })
    }

    /// The job has ended having kept `kept` bytes: what it was granted and
    /// did not use goes back to its owner.
    pub fn settle(&mut self, kept: u64) {
        if let Some(user) = &self.user {
            if kept >= self.granted {
                // More than this jwd granted (under a previous jwd's
                // grant): it is on disk, and counts.
                user.add(kept - self.granted);
            } else {
                user.give_back(self.granted - kept);
            }
            self.granted = kept;
        }
        self.settled = true;
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncapped_owner_grants_the_whole_cap_once() {
        let mut g = Grant::new(1 << 30, None, 0);
        assert_eq!(g.granted(), 1 << 30);
        // Told in its set-up; an adopted keeper is told at its first report.
        assert_eq!(g.top_up(0), Some(1 << 30));
        g.told(1 << 30);
        assert_eq!(g.top_up(1 << 29), None);
        assert_eq!(g.top_up(1 << 30), None, "its own cap, not the owner's");
    }

    #[test]
    fn a_grant_the_keeper_did_not_get_is_sent_again() {
        let user = UserOutput::new(1 << 30, 0);
        let mut g = Grant::new(1 << 30, Some(user), 0);
        g.told(g.granted());
        let first = g.granted();
        let second = g.top_up(first).expect("topped up");
        // Not delivered (a full channel): the next report sends it again.
        assert_eq!(g.top_up(first), Some(second));
        g.told(second);
        assert_eq!(g.top_up(first), None);
    }

    #[test]
    fn a_capped_owner_grants_ahead_and_gets_the_rest_back() {
        let user = UserOutput::new(10 << 20, 0);
        let mut g = Grant::new(1 << 30, Some(user.clone()), 0);
        assert_eq!(g.granted(), GRANT_AHEAD_MIN);
        assert_eq!(user.kept(), GRANT_AHEAD_MIN);
        g.told(g.granted());
        let tell = |g: &mut Grant, kept| {
            let t = g.top_up(kept);
            if let Some(t) = t {
                g.told(t);
            }
            t
        };
        // Not yet past half of what is ahead: nothing new.
        assert_eq!(tell(&mut g, GRANT_AHEAD_MIN / 4), None);
        // Past it: topped up to as much ahead as it wrote.
        let kept = 3 * GRANT_AHEAD_MIN / 4;
        assert_eq!(tell(&mut g, kept), Some(kept + GRANT_AHEAD_MIN));
        // The owner's room runs out: the grant stops there, and once it is
        // used up the keeper is told so, once.
        assert_eq!(tell(&mut g, 9 << 20), Some(10 << 20));
        assert!(user.is_full());
        assert_eq!(tell(&mut g, 19 << 19), None, "not used up yet");
        assert_eq!(tell(&mut g, 10 << 20), Some(10 << 20), "no more");
        assert_eq!(tell(&mut g, 10 << 20), None, "said once");
        // Room again (a job removed): granted again.
        user.give_back(1 << 20);
        assert_eq!(tell(&mut g, 10 << 20), Some(11 << 20));
        g.settle(11 << 20);
        assert_eq!(user.kept(), 10 << 20);
    }

    #[test]
    fn two_jobs_of_one_owner_share_its_room() {
        let user = UserOutput::new(GRANT_AHEAD_MIN + 10, 0);
        let a = Grant::new(1 << 30, Some(user.clone()), 0);
        let b = Grant::new(1 << 30, Some(user.clone()), 0);
        assert_eq!(a.granted() + b.granted(), GRANT_AHEAD_MIN + 10);
        assert_eq!(b.granted(), 10);
        // A start that failed gives back all it was granted.
        drop(b);
        assert_eq!(user.kept(), GRANT_AHEAD_MIN);
    }

    #[test]
    fn bytes_kept_past_this_jwds_grant_still_count() {
        let user = UserOutput::new(1 << 30, 100);
        // Adopted having kept 100 bytes; it ends with 5 MiB (written under
        // the last jwd's grant, told late).
        let mut g = Grant::new(1 << 30, Some(user.clone()), 100);
        g.settle(5 << 20);
        assert_eq!(user.kept(), 5 << 20);
    }

    #[test]
    fn a_grant_never_passes_the_jobs_own_cap() {
        let user = UserOutput::new(1 << 40, 0);
        let g = Grant::new(100, Some(user.clone()), 0);
        assert_eq!(g.granted(), 100);
        assert_eq!(user.kept(), 100);
    }
}
