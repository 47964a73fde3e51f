//! Who a job runs as: a uid and gid of its own from a configured range
//! (systemd's DynamicUser=, `jwd --job-uids`), or one fixed account an
//! operator opts into (`jwd --job-user`).
//!
//! A per-job uid is what keeps tenants apart where namespaces do not: the
//! per-uid RLIMIT_NPROC pool, file ownership in anything two jobs could
//! both reach, signals, ptrace and /proc access. A uid goes back to the
//! pool only once the job's processes are gone (its cgroup removed) and its
//! work directory with every file it wrote there.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::sync::Mutex;

/// The default range: above the ids of ordinary accounts, of systemd's
/// dynamic users (61184-65519) and of the 16-bit world. jwd checks the
/// range against every account and group the host knows and against the
/// subordinate ids of /etc/subuid and /etc/subgid (which `useradd` hands
/// out from 100000 in steps of 65536: the eighth user's reach 600000).
pub const DEFAULT_RANGE: &str = "600000-699999";

/// An inclusive range of uids (each job's gid is the same number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub last: u32,
}

/// Why a range or a fixed user cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("invalid uid range {0:?}: write FIRST-LAST, e.g. {DEFAULT_RANGE}")]
    Syntax(String),
    #[error("invalid uid range {first}-{last}: {why}")]
    Bad {
        first: u32,
        last: u32,
        why: &'static str,
    },
    #[error("the job uid range {first}-{last} overlaps {kind} {name:?} ({kind} id {id}) of this host; choose a range no account or group uses (jwd --job-uids)")]
    Overlaps {
        first: u32,
        last: u32,
        kind: &'static str,
        name: String,
        id: u32,
    },
    #[error("job user {0:?} does not exist on this host (jwd --job-user)")]
    NoSuchUser(String),
}

impl std::str::FromStr for UidRange {
    type Err = UidError;

    fn from_str(s: &str) -> Result<UidRange, UidError> {
        let syntax = || UidError::Syntax(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(syntax)?;
        let first: u32 = a.trim().parse().map_err(|_| syntax())?;
        let last: u32 = b.trim().parse().map_err(|_| syntax())?;
        let bad = |why| UidError::Bad { first, last, why };
        if first > last {
            return Err(bad("the first uid is above the last"));
        }
        if first < 1000 {
            return Err(bad(
                "it reaches below 1000, where the host's system accounts live",
            ));
        }
        // 65535 and 4294967295 are "no uid" to parts of the kernel and libc.
        if (first..=last).contains(&65535) || last == u32::MAX {
            return Err(bad(
                "it contains 65535 or 4294967295, which mean \"no uid\"",
            ));
        }
        Ok(UidRange { first, last })
    }
}

impl std::fmt::Display for UidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl UidRange {
    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, id: u32) -> bool {
        (self.first..=self.last).contains(&id)
    }

    /// Refuses a range that holds an account or group the host knows
    /// (through NSS: files, LDAP, ...) or another user's subordinate ids,
    /// so no job can ever own a real user's (or a rootless container's)
    /// files.
    pub fn check_host(&self) -> Result<(), UidError> {
        for (kind, name, first, count) in subordinate_ids() {
            let last = first.saturating_add(count.saturating_sub(1));
            if count > 0 && first <= self.last && last >= self.first {
                return Err(UidError::Overlaps {
                    first: self.first,
                    last: self.last,
                    kind,
                    name,
                    id: first.max(self.first),
                });
            }
        }
        for (kind, name, id) in host_ids() {
            if self.contains(id) {
                return Err(UidError::Overlaps {
                    first: self.first,
                    last: self.last,
                    kind,
                    name,
                    id,
                });
            }
        }
        Ok(())
    }
}

/// Every (kind, name, first, count) of /etc/subuid and /etc/subgid.
fn subordinate_ids() -> Vec<(&'static str, String, u32, u32)> {
    let mut out = Vec::new();
    for (kind, path) in [
        ("subordinate uid range of", "/etc/subuid"),
        ("subordinate gid range of", "/etc/subgid"),
    ] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        out.extend(text.lines().filter_map(|line| {
            let mut parts = line.trim().split(':');
            let name = parts.next()?;
            let first = parts.next()?.parse().ok()?;
            let count = parts.next()?.parse().ok()?;
            Some((kind, name.to_string(), first, count))
        }));
    }
    out
}

/// Every (kind, name, id) of the host's accounts and groups. Enumerating
/// is not thread-safe in libc; jwd does it once, at start-up, before its
/// runtimes exist.
fn host_ids() -> Vec<(&'static str, String, u32)> {
    static ENUMERATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = ENUMERATING.lock().unwrap_or_else(|e| e.into_inner());
    let mut ids = Vec::new();
    // SAFETY: setpwent/getpwent/endpwent iterate libc's static state,
    // serialized by the lock above; each entry is copied out before the
    // next call overwrites it.
    unsafe { libc::setpwent() };
    loop {
        // SAFETY: as above.
        let pw = unsafe { libc::getpwent() };
        if pw.is_null() {
            break;
        }
        // SAFETY: a non-null entry points to a valid passwd struct, which
        // stays put until the next getpwent (the lock above).
        let pw = unsafe { &*pw };
        // SAFETY: pw_name of a valid entry is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(pw.pw_name) };
        ids.push(("account", name.to_string_lossy().into_owned(), pw.pw_uid));
    }
    // SAFETY: as above.
    unsafe { libc::endpwent() };
    // SAFETY: the same as setpwent, for groups.
    unsafe { libc::setgrent() };
    loop {
        // SAFETY: as above.
        let gr = unsafe { libc::getgrent() };
        if gr.is_null() {
            break;
        }
        // SAFETY: a non-null entry points to a valid group struct, which
        // stays put until the next getgrent (the lock above).
        let gr = unsafe { &*gr };
        // SAFETY: gr_name of a valid entry is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(gr.gr_name) };
        ids.push(("group", name.to_string_lossy().into_owned(), gr.gr_gid));
    }
    // SAFETY: as above.
    unsafe { libc::endgrent() };
    ids
}

/// A job's identity on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobIds {
    pub uid: u32,
    pub gid: u32,
    /// Taken from the pool (and to be given back).
    pub pooled: bool,
}

/// Where job identities come from.
#[derive(Debug)]
pub enum Identities {
    /// A uid (and the same gid) per job from a range.
    Pool(UidPool),
    /// Every job runs as this one account (`jwd --job-user`).
    Fixed { uid: u32, gid: u32 },
}

impl Identities {
    /// A fixed account, looked up by name.
    pub fn fixed(user: &str) -> Result<Identities, UidError> {
        let user = nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .ok_or_else(|| UidError::NoSuchUser(user.to_string()))?;
        Ok(Identities::Fixed {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// An identity for a new job; `None` when every uid of the range is in
    /// use.
    pub fn take(&self) -> Option<JobIds> {
        match self {
            Identities::Pool(pool) => pool.take().map(|uid| JobIds {
                uid,
                gid: uid,
                pooled: true,
            }),
            Identities::Fixed { uid, gid } => Some(JobIds {
                uid: *uid,
                gid: *gid,
                pooled: false,
            }),
        }
    }

    /// Gives an identity back once nothing of its job is left.
    pub fn give_back(&self, ids: JobIds) {
        if let (Identities::Pool(pool), true) = (self, ids.pooled) {
            pool.give_back(ids.uid);
        }
    }

    /// Marks the identity of a job a restarted jwd adopted as in use, so no
    /// new job gets it while that one runs. Returns false if it is not one
    /// this jwd hands out (a range changed across the restart): the job
    /// runs on, and its uid is simply never given to another job.
    pub fn claim(&self, ids: JobIds) -> bool {
        match (self, ids.pooled) {
            (Identities::Pool(pool), true) => pool.claim(ids.uid),
            _ => true,
        }
    }

    /// How many identities there are (None: unlimited, one shared account).
    pub fn capacity(&self) -> Option<u64> {
        match self {
            Identities::Pool(pool) => Some(pool.range.len()),
            Identities::Fixed { .. } => None,
        }
    }
}

/// The uids of a range, lowest free first: a small host reuses a small
/// set of uids, so each one's work directory is made once and emptied,
/// instead of an inode created and deleted per job (on ext4 without a
/// journal, inode allocation scans past recently deleted inodes: that was
/// a quarter of jwd's CPU per start). A uid is only taken back once nothing
/// of its last job is left (`Manager` releases it after the job's cgroups
/// and files are gone).
#[derive(Debug)]
pub struct UidPool {
    range: UidRange,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    /// Uids handed out before and given back.
    returned: BTreeSet<u32>,
    /// The lowest uid never handed out; `None` once the range is used up.
    fresh: Option<u32>,
    in_use: usize,
}

impl UidPool {
    pub fn new(range: UidRange) -> UidPool {
        UidPool {
            range,
            state: Mutex::new(PoolState {
                returned: BTreeSet::new(),
                fresh: Some(range.first),
                in_use: 0,
            }),
        }
    }

    pub fn range(&self) -> UidRange {
        self.range
    }

    /// The lowest free uid.
    pub fn take(&self) -> Option<u32> {
        let mut state = self.state.lock().expect("uid pool lock");
        let uid = match state.returned.pop_first() {
            Some(uid) => uid,
            None => {
                let uid = state.fresh?;
                state.fresh = (uid < self.range.last).then(|| uid + 1);
                uid
            }
        };
        state.in_use += 1;
        Some(uid)
    }

    /// Takes `uid` out of the free ones (an adopted job's). False if it is
    /// outside the range or already in use.
    pub fn claim(&self, uid: u32) -> bool {
        if !self.range.contains(uid) {
            return false;
        }
        let mut state = self.state.lock().expect("uid pool lock");
        match state.fresh {
            Some(fresh) if uid >= fresh => {
                // Every uid below it and never handed out becomes free.
                state.returned.extend(fresh..uid);
                state.fresh = (uid < self.range.last).then(|| uid + 1);
            }
            _ => {
                if !state.returned.remove(&uid) {
                    return false;
                }
            }
        }
        state.in_use += 1;
        true
    }

    pub fn give_back(&self, uid: u32) {
        let mut state = self.state.lock().expect("uid pool lock");
        if self.range.contains(uid)
            && state.fresh.is_none_or(|f| uid < f)
            && state.returned.insert(uid)
        {
            state.in_use -= 1;
        }
    }

    pub fn in_use(&self) -> usize {
        self.state.lock().expect("uid pool lock").in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_uids_are_not_handed_out_until_given_back() {
        let pool = UidPool::new(UidRange {
            first: 100,
            last: 104,
        });
        assert_eq!(pool.take(), Some(100));
        assert!(pool.claim(102), "never handed out");
        assert!(!pool.claim(102), "already in use");
        assert!(!pool.claim(100), "in use");
        assert!(!pool.claim(99), "outside the range");
        assert_eq!(pool.take(), Some(101));
        assert_eq!(pool.take(), Some(103));
        pool.give_back(102);
        assert_eq!(pool.take(), Some(102));
        assert_eq!(pool.take(), Some(104));
        assert_eq!(pool.take(), None);
        assert_eq!(pool.in_use(), 5);
    }

    #[test]
    fn parses_and_refuses_ranges() {
        assert_eq!(
            "600000-699999".parse::<UidRange>(),
            Ok(UidRange {
                first: 600_000,
                last: 699_999
            })
        );
        assert_eq!(DEFAULT_RANGE.parse::<UidRange>().unwrap().len(), 100_000);
        for bad in [
            "",
            "5",
            "a-b",
            "10-",
            "-10",
            "700000-600000",
            "0-2000",
            "999-2000",
        ] {
            assert!(bad.parse::<UidRange>().is_err(), "{bad}");
        }
        assert!("65000-66000".parse::<UidRange>().is_err());
        assert!("4294967000-4294967295".parse::<UidRange>().is_err());
        let err = "0-10".parse::<UidRange>().unwrap_err().to_string();
        assert!(err.contains("system accounts"), "{err}");
    }

    #[test]
    fn a_range_holding_a_host_account_is_refused() {
        // root's group or account is always there; nobody (65534) almost
        // always. A range around the first non-system account found.
        let (kind, name, id) = host_ids()
            .into_iter()
            .find(|(_, _, id)| *id >= 1000 && *id != 65535 && *id < u32::MAX - 1)
            .unwrap_or(("account", "nobody".into(), 65534));
        let range = UidRange {
            first: id,
            last: id,
        };
        match range.check_host() {
            Err(UidError::Overlaps { id: found, .. }) => assert_eq!(found, id, "{kind} {name}"),
            other => panic!("{kind} {name} ({id}) not found: {other:?}"),
        }
        assert!(DEFAULT_RANGE
            .parse::<UidRange>()
            .unwrap()
            .check_host()
            .is_ok());
    }

    #[test]
    fn pool_hands_out_each_uid_once_lowest_first() {
        let pool = UidPool::new(UidRange {
            first: 2000,
            last: 2002,
        });
        assert_eq!(pool.take(), Some(2000));
        assert_eq!(pool.take(), Some(2001));
        pool.give_back(2000);
        assert_eq!(pool.take(), Some(2000), "the lowest free");
        assert_eq!(pool.take(), Some(2002));
        assert_eq!(pool.take(), None, "exhausted");
        assert_eq!(pool.in_use(), 3);
        pool.give_back(2001);
        // Giving back twice, or what was never handed out, changes nothing.
        pool.give_back(2001);
        pool.give_back(1999);
        assert_eq!(pool.in_use(), 2);
        assert_eq!(pool.take(), Some(2001));
        assert_eq!(pool.take(), None);
    }
}
