//! jwd's side of a job's keeper (its init, `init/keeper.rs`), beyond the
//! channel: the keeper's listening socket, made before the clone; the
//! keeper record jwd writes after it (which process keeps the job, and
//! with which uid); and, for a restarted jwd, finding a keeper that is
//! still alive and connecting to it.
//!
//! A recorded pid is never trusted on its own: a restarted jwd opens a
//! pidfd on it (which pins the process), then checks that this process
//! started at the recorded time, is PID 1 of its own PID namespace, and
//! lives in the job's cgroup. A pid reused by anything else fails the
//! first or the last check; only then does jwd connect to the socket.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::channel::KEEPER_SOCKET;
use super::uids::JobIds;
use crate::protocol::JobId;

/// The keeper record's name in the job's directory.
pub const KEEPER_FILE: &str = "keeper";

/// Which process keeps a job, as whom the job runs, and the most output
/// it may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeeperRecord {
    /// The keeper's pid in jwd's PID namespace.
    pub pid: i32,
    /// Its start time (clock ticks after boot, /proc/PID/stat field 22).
    pub start_time: u64,
    pub ids: JobIds,
    /// The job's output cap (`--max-output`).
    pub output_cap: u64,
}

impl KeeperRecord {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {}\n",
            self.pid,
            self.start_time,
            self.ids.uid,
            self.ids.gid,
            u8::from(self.ids.pooled),
            self.output_cap
        )
    }

    fn decode(text: &str) -> Option<KeeperRecord> {
        let mut words = text.split_ascii_whitespace();
        let mut next = || words.next();
        let record = KeeperRecord {
            pid: next()?.parse().ok().filter(|p: &i32| *p > 0)?,
            start_time: next()?.parse().ok()?,
            ids: JobIds {
                uid: next()?.parse().ok()?,
                gid: next()?.parse().ok()?,
                pooled: match next()? {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                },
            },
            output_cap: next()?.parse().ok()?,
        };
        next().is_none().then_some(record)
    }

    /// The record of the calling process, the keeper itself, as jwd's
    /// PID namespace sees it: read from /proc/self/stat while the keeper
    /// still sees the host's /proc (before it mounts its own).
    pub fn of_this_process(ids: JobIds, output_cap: u64) -> std::io::Result<KeeperRecord> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let pid = stat
            .split_ascii_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| std::io::Error::other("cannot read this process's pid"))?;
        Ok(KeeperRecord {
            pid,
            start_time: parse_start_time(&stat)?,
            ids,
            output_cap,
        })
    }

    /// Writes the record into the job's directory `dir` (owner-only): the
    /// keeper does, before the command runs, so no window is left in
    /// which a job runs that a restarted jwd could not find.
    pub fn write_at(&self, dir: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::openat(
            dir,
            KEEPER_FILE,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        std::fs::File::from(fd).write_all(self.encode().as_bytes())
    }

    pub fn read(dir: &Path) -> Option<KeeperRecord> {
        Self::decode(&std::fs::read_to_string(dir.join(KEEPER_FILE)).ok()?)
    }
}

/// A process's start time, from /proc/PID/stat (field 22, after the
/// command name, which may hold spaces and parentheses).
fn start_time(pid: i32) -> std::io::Result<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

fn parse_start_time(stat: &str) -> std::io::Result<u64> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_ascii_whitespace().nth(19)?.parse().ok())
        .ok_or_else(|| std::io::Error::other("cannot read a process's start time"))
}

/// The path of `name` in the directory `dir` is open on: short whatever
/// the data directory's path (a socket's path has at most 107 bytes).
fn in_dir(dir: &OwnedFd, name: &str) -> String {
    format!("/proc/self/fd/{}/{name}", dir.as_raw_fd())
}

/// The keeper's listening socket, bound in the job's directory `dir` (an
/// O_PATH descriptor) and listening: handed to the init, closed by jwd.
pub fn listen(dir: &OwnedFd) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = rustix::net::SocketAddrUnix::new(in_dir(dir, KEEPER_SOCKET))?;
    rustix::net::bind(&socket, &addr)?;
    // Owner-only like every file in the data directory (bind applies the
    // umask only).
    rustix::fs::chmodat(
        dir,
        KEEPER_SOCKET,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::AtFlags::empty(),
    )?;
    rustix::net::listen(&socket, 4)?;
    Ok(socket)
}

/// Why a recorded keeper cannot be adopted.
#[derive(Debug, thiserror::Error)]
pub enum Gone {
    #[error("no keeper record")]
    NoRecord,
    #[error("the keeper (pid {0}) has exited")]
    Exited(i32),
    #[error("pid {0} is another process now")]
    Reused(i32),
    #[error("cannot connect to the keeper (pid {pid}): {error}")]
    Unreachable { pid: i32, error: std::io::Error },
}

/// A live keeper, connected.
#[derive(Debug)]
pub struct Found {
    pub record: KeeperRecord,
    /// The new channel to it (nonblocking).
    pub channel: OwnedFd,
    /// A pidfd on it: after its channel's end, when it has exited (it is
    /// not this jwd's child, to reap).
    pub pidfd: OwnedFd,
}

/// Finds the keeper of job `id` in `dir`, if it is alive, and connects to
/// it.
pub fn find(dir: &Path, id: JobId) -> Result<Found, Gone> {
    let record = KeeperRecord::read(dir).ok_or(Gone::NoRecord)?;
    let pid = record.pid;
    let raw = rustix::process::Pid::from_raw(pid).ok_or(Gone::NoRecord)?;
    // The pidfd pins the process for the checks: if `pid` was free and
    // reused, this is the new process, which fails them.
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
        .map_err(|_| Gone::Exited(pid))?;
    if start_time(pid).ok() != Some(record.start_time) || !keeps(pid, id) {
        return Err(Gone::Reused(pid));
    }
    // Still the same process after the checks (it could have exited in
    // between, and its pid been taken since).
    // (A pidfd polls readable once its process has exited.)
    let mut poll = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut poll, Some(&zero)).map_or(true, |n| n > 0) {
        return Err(Gone::Exited(pid));
    }
    let channel = connect(dir).map_err(|error| Gone::Unreachable { pid, error })?;
    Ok(Found {
        record,
        channel,
        pidfd,
    })
}

/// Whether `pid` is PID 1 of its own PID namespace and in job `id`'s
/// cgroup2 leaf.
fn keeps(pid: i32, id: JobId) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let first_in_own_namespace = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ns| {
            ns.split_ascii_whitespace().last() == Some("1")
                && ns.split_ascii_whitespace().count() >= 2
        });
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let leaf = format!("/{id}");
    let in_leaf = cgroups
        .lines()
        .filter_map(|l| l.strip_prefix("0::"))
        .any(|path| path.ends_with(&leaf));
    first_in_own_namespace && in_leaf
}

/// Connects to the keeper's socket in `dir`.
fn connect(dir: &Path) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let dir_fd = super::output::Store::open_dir(dir)?;
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let addr = rustix::net::SocketAddrUnix::new(in_dir(&dir_fd, KEEPER_SOCKET))?;
    rustix::net::connect(&socket, &addr)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_ones_are_refused() {
        let record = KeeperRecord {
            pid: 4242,
            start_time: 123_456,
            ids: JobIds {
                uid: 600_001,
                gid: 600_001,
                pooled: true,
            },
            output_cap: 1 << 30,
        };
        let text = record.encode();
        assert_eq!(KeeperRecord::decode(&text), Some(record));
        for cut in 0..text.trim_end().len() {
            let torn = &text[..cut];
            assert_ne!(KeeperRecord::decode(torn), Some(record), "{torn:?}");
        }
        assert_eq!(KeeperRecord::decode("0 1 2 3 1 5"), None, "pid 0");
        assert_eq!(KeeperRecord::decode("1 1 2 3 2 5"), None, "pooled flag");
        assert_eq!(KeeperRecord::decode("1 1 2 3 1 5 9"), None, "trailing word");
        assert!(KeeperRecord::decode("1 1 2 3 1 5").is_some());
    }

    #[test]
    fn this_process_is_no_keeper() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_ok());
        assert!(!keeps(me, JobId::from_random([1; 16])));
    }

    #[test]
    fn a_process_records_itself_as_proc_sees_it() {
        let ids = JobIds {
            uid: 1,
            gid: 2,
            pooled: false,
        };
        let record = KeeperRecord::of_this_process(ids, 5).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(record.pid, me);
        assert_eq!(record.start_time, start_time(me).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let fd = crate::job::output::Store::open_dir(dir.path()).unwrap();
        use std::os::fd::AsFd;
        record.write_at(fd.as_fd()).unwrap();
        assert_eq!(KeeperRecord::read(dir.path()), Some(record));
    }
}
