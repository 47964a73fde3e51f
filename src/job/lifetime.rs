//! How long a job may live whatever its command does: its timeout, and
//! its tie to the clients that hold it (`Hold`). A tied job whose holders
//! are all gone gets a deadline (its tie from then); a new holder lifts
//! it. One timer per job that has either, in a task of its own that sleeps
//! until the nearest deadline, is woken when the holders change, and ends
//! with the job; at a deadline it stops the job with the job's grace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::engine::Manager;
use super::error::JobError;
use super::now_ms;
use super::record::StopTerms;
use super::registry::Job;
use super::spec::{format_duration, DEFAULT_GRACE, MAX_TIMEOUT};
use crate::protocol::JobId;

/// Before its first holder, a tied job is given at least this long (a
/// client learns the job's id only once it has started, and holds it a
/// round trip later; with a tie of 0 it would never make it).
pub const FIRST_HOLD: Duration = Duration::from_secs(5);

/// A job's deadlines besides its command.
#[derive(Debug)]
pub(super) struct Lifetime {
    /// When its timeout stops it.
    timeout_at: Option<Instant>,
    /// How long it lives without a holder.
    tie: Option<Duration>,
    /// The grace of the stops here.
    grace: Duration,
    /// As the start asked, for the status record.
    terms: StopTerms,
    held: Mutex<Held>,
    /// The holders changed: the timer looks again.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Held {
    holders: usize,
    /// With no holder: when the tie ends.
    untied_at: Option<Instant>,
}

/// Why the engine stops a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Timeout,
    Untied,
}

impl Lifetime {
    /// A job's deadlines from now, for a job that started at
    /// `started_at_ms` (Unix ms) with a timeout of `timeout_ms`: its tie
    /// runs from now (no client holds it yet).
    pub(super) fn new(started_at_ms: u64, timeout_ms: Option<u64>, terms: StopTerms) -> Lifetime {
        let now = Instant::now();
        let timeout_at = timeout_ms.map(|t| {
            let left = started_at_ms.saturating_add(t).saturating_sub(now_ms());
            // A record's timeout was checked at the start; bounded again
            // so that no record can overflow the clock.
            now + Duration::from_millis(left).min(MAX_TIMEOUT)
        });
        let tie = terms.tie_ms.map(|t| Duration::from_millis(u64::from(t)));
        Lifetime {
            timeout_at,
            tie,
            grace: terms
                .grace_ms
                .map_or(DEFAULT_GRACE, |g| Duration::from_millis(u64::from(g))),
            terms,
            held: Mutex::new(Held {
                holders: 0,
                untied_at: tie.map(|t| now + t.max(FIRST_HOLD)),
            }),
            changed: Notify::new(),
        }
    }

    /// An ended job's: nothing to watch.
    pub(super) fn ended(terms: StopTerms) -> Lifetime {
        Lifetime {
            timeout_at: None,
            tie: None,
            grace: DEFAULT_GRACE,
            terms,
            held: Mutex::new(Held::default()),
            changed: Notify::new(),
        }
    }

    /// What the status record keeps of it.
    pub(super) fn terms(&self) -> StopTerms {
        self.terms
    }

    fn is_watched(&self) -> bool {
        self.timeout_at.is_some() || self.tie.is_some()
    }

    fn hold(&self) {
        let mut held = self.held.lock().expect("held lock");
        held.holders += 1;
        held.untied_at = None;
        drop(held);
        self.changed.notify_one();
    }

    fn release(&self) {
        let mut held = self.held.lock().expect("held lock");
        held.holders = held.holders.saturating_sub(1);
        if held.holders == 0 {
            held.untied_at = self.tie.map(|t| Instant::now() + t);
        }
        drop(held);
        self.changed.notify_one();
    }

    /// The nearest deadline.
    fn next(&self) -> Option<Instant> {
        let held = self.held.lock().expect("held lock");
        let untied_at = held.untied_at.filter(|_| held.holders == 0);
        drop(held);
        match (self.timeout_at, untied_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline that has passed, if one has.
    fn due(&self, now: Instant) -> Option<Due> {
        if self.timeout_at.is_some_and(|t| t <= now) {
            return Some(Due::Timeout);
        }
        let held = self.held.lock().expect("held lock");
        (held.holders == 0 && held.untied_at.is_some_and(|t| t <= now)).then_some(Due::Untied)
    }
}

/// A client's hold on a job (`Hold`): while one exists, a tied job lives;
/// dropping the last starts its tie's count-down.
#[derive(Debug)]
pub struct Holding {
    job: Arc<Job>,
}

impl Holding {
    pub(super) fn new(job: Arc<Job>) -> Holding {
        job.lifetime.hold();
        Holding { job }
    }

    /// The job held.
    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.job.lifetime.release();
    }
}

impl Manager {
    /// Holds `owner`'s job `id` (others' jobs are not found, whoever
    /// asks): while the guard lives, a tied job is not stopped for want of
    /// a client.
    pub fn hold(&self, owner: &str, id: JobId) -> Result<Holding, JobError> {
        Ok(Holding::new(self.inner.registry.get(id, Some(owner))?))
    }

    /// Starts the timer of a job that has a timeout or a tie.
    pub(super) fn watch_lifetime(&self, job: &Arc<Job>) {
        if !job.lifetime.is_watched() {
            return;
        }
        let (this, job) = (self.clone(), job.clone());
        tokio::spawn(async move { this.keep_time(job).await });
    }

    /// Sleeps until the job's nearest deadline, looks again whenever its
    /// holders change, and stops it at a deadline; returns once the job
    /// has ended.
    async fn keep_time(&self, job: Arc<Job>) {
        let mut info = job.subscribe();
        let lifetime = &job.lifetime;
        let due = loop {
            let next = lifetime.next();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = info.wait_for(|i| !i.state.is_active()) => return,
                _ = lifetime.changed.notified() => continue,
                _ = sleep => {}
            }
            if let Some(due) = lifetime.due(Instant::now()) {
                break due;
            }
        };
        let grace = lifetime.grace;
        match due {
            Due::Timeout => {
                job.info.send_modify(|i| {
                    if i.state.is_active() {
                        i.timed_out = true;
                    }
                });
                tracing::info!(job = %job.id, grace = %format_duration(grace), "the job reached its timeout; stopping it");
            }
            Due::Untied => {
                tracing::info!(job = %job.id, grace = %format_duration(grace), "no client has held the tied job for its tie; stopping it");
            }
        }
        if let Err(e) = self.end(job.id, None, grace).await {
            tracing::warn!(job = %job.id, error = %e, "cannot stop the job");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(tie_ms: Option<u32>) -> StopTerms {
        StopTerms {
            tie_ms,
            grace_ms: None,
        }
    }

    #[test]
    fn a_tie_counts_from_the_last_holder_and_the_start() {
        let before = Instant::now();
        let l = Lifetime::new(now_ms(), None, terms(Some(1000)));
        let first = l.next().expect("the first hold's window");
        assert!(first >= before + FIRST_HOLD && first <= Instant::now() + FIRST_HOLD);
        assert_eq!(l.due(first), Some(Due::Untied));
        l.hold();
        l.hold();
        assert_eq!(l.next(), None);
        assert_eq!(l.due(first + FIRST_HOLD * 10), None, "held");
        l.release();
        assert_eq!(l.next(), None, "one holder left");
        let before = Instant::now();
        l.release();
        let at = l.next().expect("unheld");
        let tie = Duration::from_secs(1);
        assert!(at >= before + tie && at <= Instant::now() + tie);
        assert_eq!(l.due(at - Duration::from_millis(1)), None);
        assert_eq!(l.due(at), Some(Due::Untied));
    }

    #[test]
    fn a_timeout_counts_from_the_start_and_holders_do_not_lift_it() {
        let before = Instant::now();
        let l = Lifetime::new(now_ms() - 500, Some(2000), terms(None));
        let at = l.next().expect("a deadline");
        assert!(at <= Instant::now() + Duration::from_millis(1500));
        assert!(at + Duration::from_millis(10) >= before + Duration::from_millis(1500));
        l.hold();
        assert_eq!(l.next(), Some(at));
        assert_eq!(l.due(at), Some(Due::Timeout));
        assert!(!Lifetime::new(now_ms(), None, terms(None)).is_watched());
        assert_eq!(Lifetime::ended(terms(Some(1))).next(), None);
    }
}
