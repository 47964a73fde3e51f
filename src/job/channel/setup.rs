//! The job's set-up, the first message on the channel: everything jwd tells
//! the init about the job, as data.

use std::ffi::CStr;

use super::ARGS_VERSION;

/// Everything jwd tells the init about the job, sent as the first message
/// on the channel (postcard), never through the command line or the
/// environment: the init runs as root before it drops privileges, and
/// nothing a user chose may reach the dynamic loader or the init's own
/// arguments. The init is executed with [`INIT_ENV`] and `jw-init
/// jw-init/5` as its whole command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    pub uid: u32,
    pub gid: u32,
    /// The uid is one of jwd's pool (given back when the job is gone).
    pub pooled: bool,
    /// A new network namespace with only `lo` (false: the host's network).
    pub new_net: bool,
    pub hostname: String,
    /// The job's work directory on the host, bound at `sandbox::JOB_HOME`.
    pub home: String,
    /// The working directory inside the job.
    pub workdir: String,
    /// Host paths the job may not see (jwd's data directory, key, ...).
    pub hide: Vec<String>,
    /// Cgroup directories the init moves itself into before anything else.
    pub join: Vec<String>,
    /// A cgroup directory the keeper moves itself into once the command
    /// runs (jw's v1 memory subtree: its output is not charged to the job);
    /// empty: it stays.
    pub keeper_cgroup: String,
    /// The seccomp filter to install (BPF, `sandbox::default_filter`);
    /// empty: none (`jwd --no-seccomp`).
    #[serde(with = "serde_bytes")]
    pub seccomp: Vec<u8>,
    /// Paths to try for the command, in order (execvp's search).
    pub candidates: Vec<String>,
    /// The command's argv, argv[0] first.
    pub argv: Vec<String>,
    /// The command's environment, `NAME=value` each, applied only at its
    /// execve.
    pub env: Vec<String>,
    /// The most output bytes the job may keep (stdout and stderr together).
    pub output_cap: u64,
    /// Of those, how many the keeper may write before jwd grants more
    /// (`ToInit::Grant`): the owner's share, when jwd caps it.
    pub granted: u64,
    /// The job's input: /dev/null, a pipe, or a terminal of this size.
    pub stdin: crate::protocol::Stdin,
}

/// The largest setup message (the protocol's argv and environment limit,
/// plus the strings jwd adds).
pub const MAX_SETUP: usize = crate::protocol::MAX_ARGV_ENV_BYTES + 64 * 1024 + 16 * 4096;

/// The init's whole environment: fixed, chosen by no user.
pub const INIT_ENV: [&CStr; 1] = [c"PATH=/usr/sbin:/usr/bin:/sbin:/bin"];

impl Setup {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a Setup always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Setup> {
        let setup: Setup = postcard::from_bytes(bytes).ok()?;
        let has_nul = std::iter::once(&setup.hostname)
            .chain([&setup.home, &setup.workdir])
            .chain(&setup.hide)
            .chain(&setup.join)
            .chain(std::iter::once(&setup.keeper_cgroup))
            .chain(&setup.candidates)
            .chain(&setup.argv)
            .chain(&setup.env)
            .any(|s| s.contains('\0'));
        if has_nul || setup.argv.is_empty() || setup.candidates.is_empty() {
            return None;
        }
        Some(setup)
    }

    /// The init's command line.
    pub fn argv() -> [&'static CStr; 2] {
        [c"jw-init", ARGS_VERSION]
    }
}
