//! Job cgroups: layout detection, and one module per layout behind one
//! interface (`Cgroups` to make them, `JobCgroup` for one job's).
//!
//! Both layouts clone the job INTO a cgroup2 leaf that jw created: that gives
//! atomic placement, `cgroup.kill` for the whole tree, and cpu.stat. Where the
//! limit controllers live differs:
//! - `v2`: the same leaf carries cpu.max, memory.max, io.max, pids.max.
//! - `hybrid`: cgroup2 has no controllers; v1 cgroups created under the
//!   server's own v1 paths carry the limits, and the child is placed in them
//!   before it may execve (it waits on a pipe for the parent).
//!
//! jw only ever touches directories it created: its subtree (named by
//! `CgroupConfig::name`) under the server's own cgroup in each hierarchy, and
//! job directories inside it named by job id.

mod devices;
mod fs;
mod hybrid;
mod v1;
mod v2;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use devices::{block_devices, BlockDevice};

use crate::protocol::{Limits, Usage};

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {op} {path}: {source}{hint}")]
    Io {
        op: String,
        path: PathBuf,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("unsupported cgroup layout: {0}")]
    Unsupported(String),
}

impl CgroupError {
    fn io(op: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        let hint = match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                " (jwd must run as root with a writable cgroup filesystem)"
            }
            _ => "",
        };
        CgroupError::Io {
            op: op.into(),
            path: path.to_path_buf(),
            source,
            hint,
        }
    }
}

/// Where jw keeps its cgroups.
#[derive(Debug, Clone)]
pub struct CgroupConfig {
    /// Name of jw's subtree under the server's own cgroup in each hierarchy.
    /// One per server instance; a restarted server with the same name cleans
    /// up what its predecessor left.
    pub name: String,
    /// Where the hierarchies are mounted (normally /sys/fs/cgroup).
    pub mount_root: PathBuf,
    /// Where block devices are listed (normally /sys/block).
    pub sys_block: PathBuf,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            name: "jw".into(),
            mount_root: "/sys/fs/cgroup".into(),
            sys_block: "/sys/block".into(),
        }
    }
}

/// The detected layout, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    V2,
    Hybrid,
}

impl std::fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutKind::V2 => "v2",
            LayoutKind::Hybrid => "hybrid",
        })
    }
}

/// jw's cgroups on this host, for whichever layout it has.
#[derive(Debug)]
pub enum Cgroups {
    V2(v2::V2Cgroups),
    Hybrid(hybrid::HybridCgroups),
}

impl Cgroups {
    /// Detects the layout once and prepares jw's subtree in it.
    pub fn detect(config: &CgroupConfig) -> Result<Cgroups, CgroupError> {
        let mounts = Mounts::read()?;
        let own = OwnCgroups::read()?;
        let root_v2 = config.mount_root.clone();
        let v2_at_root = mounts.cgroup2.as_deref() == Some(root_v2.as_path());
        let devices = block_devices(&config.sys_block);
        if v2_at_root {
            let controllers =
                fs::read_optional(&root_v2.join("cgroup.controllers")).unwrap_or_default();
            let missing: Vec<&str> = v2::CONTROLLERS
                .iter()
                .copied()
                .filter(|c| !controllers.split_whitespace().any(|x| x == *c))
                .collect();
            if !missing.is_empty() {
                return Err(CgroupError::Unsupported(format!(
                    "cgroup2 at {} lacks the controllers {}",
                    root_v2.display(),
                    missing.join(", ")
                )));
            }
            return Ok(Cgroups::V2(v2::V2Cgroups::new(config, &own, devices)?));
        }
        if let Some(unified) = &mounts.cgroup2 {
            return Ok(Cgroups::Hybrid(hybrid::HybridCgroups::new(
                config, unified, &mounts, &own, devices,
            )?));
        }
        Err(CgroupError::Unsupported(
            "no cgroup2 hierarchy is mounted (jw needs cgroup2, alone or beside v1 controllers)"
                .into(),
        ))
    }

    pub fn kind(&self) -> LayoutKind {
        match self {
            Cgroups::V2(_) => LayoutKind::V2,
            Cgroups::Hybrid(_) => LayoutKind::Hybrid,
        }
    }

    /// The block devices I/O limits apply to.
    pub fn devices(&self) -> &[BlockDevice] {
        match self {
            Cgroups::V2(c) => &c.devices,
            Cgroups::Hybrid(c) => &c.devices,
        }
    }

    /// Where job leaves are created in the cgroup2 hierarchy.
    pub fn v2_subtree(&self) -> &Path {
        match self {
            Cgroups::V2(c) => &c.subtree,
            Cgroups::Hybrid(c) => &c.subtree,
        }
    }

    /// Every cgroup directory jw has for jobs now (v2 and v1): for leak
    /// checks in tests and soak runs.
    pub fn job_dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroups::V2(c) => fs::job_dirs(&c.subtree),
            Cgroups::Hybrid(c) => c.job_dirs(),
        }
    }

    /// Removes jw's (empty) subtree directories: on shutdown, and by tests
    /// that made a subtree of their own. Directories still holding job
    /// cgroups are left alone.
    pub fn remove_subtree(&self) {
        match self {
            Cgroups::V2(c) => {
                let _ = std::fs::remove_dir(&c.subtree);
            }
            Cgroups::Hybrid(c) => c.remove_subtree(),
        }
    }

    /// Creates a job's cgroups with its limits written, ready to clone into.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<JobCgroup, CgroupError> {
        match self {
            Cgroups::V2(c) => c.create(id, limits),
            Cgroups::Hybrid(c) => c.create(id, limits),
        }
    }

    /// Kills and removes every job cgroup a previous server with the same
    /// subtree left behind. Returns how many jobs' cgroups were removed.
    pub fn cleanup_stale(&self) -> Result<usize, CgroupError> {
        match self {
            Cgroups::V2(c) => c.cleanup_stale(),
            Cgroups::Hybrid(c) => c.cleanup_stale(),
        }
    }
}

/// One job's cgroups.
#[derive(Debug)]
pub struct JobCgroup {
    /// The cgroup2 leaf the job is cloned into.
    leaf: PathBuf,
    /// Hybrid only: the v1 cgroups that carry the limits.
    v1: Option<v1::V1Job>,
}

impl JobCgroup {
    fn new(leaf: PathBuf, v1: Option<v1::V1Job>) -> Result<Self, CgroupError> {
        Ok(JobCgroup { leaf, v1 })
    }

    /// The cgroup2 leaf directory.
    pub fn leaf(&self) -> &Path {
        &self.leaf
    }

    /// Opens the leaf O_PATH for clone3's `cgroup` field. Held only around
    /// the clone: a running job should not cost the server one more fd.
    pub fn open_leaf(&self) -> Result<OwnedFd, CgroupError> {
        rustix::fs::open(
            &self.leaf,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| CgroupError::io("open", &self.leaf, e.into()))
    }

    /// The cgroups the job's init must join itself, by writing to their
    /// `cgroup.procs` before it runs anything of the job: the v1 ones in
    /// the hybrid layout (v1 has no CLONE_INTO_CGROUP), and the leaf too
    /// when the kernel refused CLONE_INTO_CGROUP (`into_leaf = false`).
    pub fn join_dirs(&self, into_leaf: bool) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if !into_leaf {
            dirs.push(self.leaf.clone());
        }
        if let Some(v1) = &self.v1 {
            dirs.extend(v1.dirs().into_iter().map(Path::to_path_buf));
        }
        dirs
    }

    /// Kills every process in the job at once (cgroup.kill, Linux 5.14+).
    /// Falls back to SIGKILL for each listed pid on older kernels.
    pub fn kill(&self) -> Result<(), CgroupError> {
        let kill_file = self.leaf.join("cgroup.kill");
        match std::fs::write(&kill_file, "1") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The pids are in our own cgroup: they cannot be reused by
                // someone else's process between the read and the kill
                // except after they died, which the kernel guards with ESRCH.
                for pid in fs::procs(&self.leaf) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Ok(())
            }
            Err(e) => Err(CgroupError::io("write \"1\" to", &kill_file, e)),
        }
    }

    /// SIGKILLs each process listed in any of the job's cgroups, one by
    /// one: for when cgroup.kill cannot be written, or did not take.
    pub fn kill_listed(&self) {
        v1::kill_procs(&self.leaf);
        if let Some(v1) = &self.v1 {
            for dir in v1.dirs() {
                v1::kill_procs(dir);
            }
        }
    }

    /// Whether any process is still in the job.
    pub fn populated(&self) -> bool {
        fs::read_optional(&self.leaf.join("cgroup.events"))
            .and_then(|s| fs::keyed(&s, "populated"))
            .map(|n| n > 0)
            .unwrap_or_else(|| !fs::procs(&self.leaf).is_empty())
    }

    /// Resource use so far.
    pub fn usage(&self) -> Usage {
        let cpu = fs::read_optional(&self.leaf.join("cpu.stat")).unwrap_or_default();
        let mut usage = Usage {
            cpu_user_us: fs::keyed(&cpu, "user_usec").unwrap_or(0),
            cpu_system_us: fs::keyed(&cpu, "system_usec").unwrap_or(0),
            ..Usage::default()
        };
        match &self.v1 {
            Some(v1) => v1.usage(&mut usage),
            None => v2::usage(&self.leaf, &mut usage),
        }
        usage
    }

    /// Whether the kernel's OOM killer killed a process of the job. Reads
    /// the `oom_kill` counter, not `oom` (which also counts allocations that
    /// merely failed; see containerd#6323).
    pub fn oom_killed(&self) -> bool {
        match &self.v1 {
            Some(v1) => v1.oom_kills() > 0,
            None => v2::oom_kills(&self.leaf) > 0,
        }
    }

    /// Removes the job's cgroups if that needs no waiting: `Ok(false)` if
    /// one is still busy or populated (then call `remove`, off the async
    /// runtime). Call after the job has ended and its figures were read.
    pub fn remove_now(&self) -> Result<bool, CgroupError> {
        if self.populated() {
            return Ok(false);
        }
        let leaf = fs::rmdir_now(&self.leaf)?;
        let v1 = self
            .v1
            .as_ref()
            .map(v1::V1Job::remove_now)
            .unwrap_or(Ok(true))?;
        Ok(leaf && v1)
    }

    /// Removes all of the job's cgroups. Call after the job has ended and
    /// its figures were read.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if self.populated() {
            self.kill()?;
        }
        let leaf = fs::rmdir(&self.leaf);
        let v1 = self.v1.as_ref().map(v1::V1Job::remove).unwrap_or(Ok(()));
        leaf.and(v1)
    }
}

/// Where each hierarchy is mounted, from /proc/self/mountinfo.
#[derive(Debug, Default)]
struct Mounts {
    cgroup2: Option<PathBuf>,
    /// v1 controller name -> mount point.
    v1: Vec<(String, PathBuf)>,
}

impl Mounts {
    fn read() -> Result<Mounts, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read(path)?;
        Ok(Self::parse(&text))
    }

    fn parse(mountinfo: &str) -> Mounts {
        let mut mounts = Mounts::default();
        for line in mountinfo.lines() {
            // id parent maj:min root mount-point options [optional...] - fstype source super-options
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or("");
            let super_opts = right.nth(1).unwrap_or("");
            match fstype {
                "cgroup2" if mounts.cgroup2.is_none() => {
                    mounts.cgroup2 = Some(PathBuf::from(mount_point));
                }
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if v1::CONTROLLERS.contains(&opt)
                            && !mounts.v1.iter().any(|(c, _)| c == opt)
                        {
                            mounts
                                .v1
                                .push((opt.to_string(), PathBuf::from(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        mounts
    }

    fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, p)| p.as_path())
    }
}

/// The server's own cgroup in each hierarchy, from /proc/self/cgroup.
#[derive(Debug, Default)]
struct OwnCgroups {
    /// The cgroup2 path ("0::/path").
    v2: String,
    /// v1 controller -> path.
    v1: Vec<(String, String)>,
}

impl OwnCgroups {
    fn read() -> Result<OwnCgroups, CgroupError> {
        let text = fs::read(Path::new("/proc/self/cgroup"))?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> OwnCgroups {
        let mut own = OwnCgroups {
            v2: "/".into(),
            v1: Vec::new(),
        };
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                own.v2 = path.to_string();
            } else {
                for c in controllers.split(',') {
                    own.v1.push((c.to_string(), path.to_string()));
                }
            }
        }
        own
    }

    fn v1(&self, controller: &str) -> &str {
        self.v1
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, p)| p.as_str())
            .unwrap_or("/")
    }
}

/// `mount` joined with a cgroup path from /proc/self/cgroup ("/a/b").
fn under(mount: &Path, cgroup_path: &str) -> PathBuf {
    mount.join(cgroup_path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_mountinfo() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/blkio rw,relatime shared:9 - cgroup cgroup rw,blkio
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
36 30 0:32 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";
        let m = Mounts::parse(text);
        assert_eq!(
            m.cgroup2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(m.v1("blkio"), Some(Path::new("/sys/fs/cgroup/blkio")));
        assert_eq!(m.v1("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(m.v1("name=systemd"), None);
    }

    #[test]
    fn parses_combined_v1_mounts() {
        let m = Mounts::parse(
            "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(m.v1("cpu"), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(m.cgroup2, None);
    }

    #[test]
    fn parses_own_cgroups() {
        let own = OwnCgroups::parse("4:memory:/process_api/f8\n1:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(own.v2, "/user.slice");
        assert_eq!(own.v1("memory"), "/process_api/f8");
        assert_eq!(own.v1("cpuacct"), "/");
        assert_eq!(own.v1("pids"), "/");
        assert_eq!(
            under(Path::new("/sys/fs/cgroup/memory"), "/process_api/f8"),
            Path::new("/sys/fs/cgroup/memory/process_api/f8")
        );
        assert_eq!(under(Path::new("/m"), "/"), Path::new("/m/"));
    }
}
