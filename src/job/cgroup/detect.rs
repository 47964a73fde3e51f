//! Layout detection: from the mount table and the server's own
//! `/proc/self/cgroup`, which layout this host has and where jw's subtrees
//! go in it. Also where a given process's cgroups are, for tools that watch
//! a server from outside.

use std::path::{Path, PathBuf};

use super::hybrid::HybridLayout;
use super::layout::Layout;
use super::parse::{self, under};
use super::v2::V2Layout;
use super::{block_devices, controller, fs, CgroupConfig, CgroupError, LayoutKind};

/// Where each hierarchy jw uses is mounted.
#[derive(Debug, Default)]
struct Mounts {
    cgroup2: Option<PathBuf>,
    /// v1 limit controller -> mount point.
    v1: Vec<(String, PathBuf)>,
}

impl Mounts {
    fn parse(mountinfo: &str) -> Mounts {
        let mut mounts = Mounts::default();
        for mount in parse::cgroup_mounts(mountinfo) {
            if mount.v2 {
                if mounts.cgroup2.is_none() {
                    mounts.cgroup2 = Some(PathBuf::from(mount.point));
                }
                continue;
            }
            for opt in mount.options.split(',') {
                if controller::V1.contains(&opt) && mounts.v1(opt).is_none() {
                    mounts
                        .v1
                        .push((opt.to_string(), PathBuf::from(mount.point)));
                }
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

/// The server's own cgroup in each hierarchy.
#[derive(Debug, Default)]
struct OwnCgroups {
    /// The cgroup2 path ("0::/path").
    v2: String,
    /// v1 controller -> path.
    v1: Vec<(String, String)>,
}

impl OwnCgroups {
    fn parse(text: &str) -> OwnCgroups {
        let mut own = OwnCgroups {
            v2: "/".into(),
            v1: Vec::new(),
        };
        for line in parse::proc_cgroups(text) {
            if line.hierarchy == "0" && line.controllers.is_empty() {
                own.v2 = line.path.to_string();
            } else {
                for c in line.controllers.split(',') {
                    own.v1.push((c.to_string(), line.path.to_string()));
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

/// Where jw's cgroups go on a host, decided from the mount table and the
/// server's own cgroups without creating or moving anything (`jwd
/// --check-config` shows it; [`layout`] then prepares it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Pure cgroup2: jw's subtree `<parent>/<name>`, beside the server's
    /// own cgroup `own` (its path in the hierarchy).
    V2 { parent: PathBuf, own: String },
    /// cgroup2 leaves at `subtree`, limits in the four v1 `v1_subtrees`.
    Hybrid {
        subtree: PathBuf,
        v1_subtrees: [PathBuf; 4],
    },
}

impl Plan {
    /// The kind of layout.
    pub fn kind(&self) -> LayoutKind {
        match self {
            Plan::V2 { .. } => LayoutKind::V2,
            Plan::Hybrid { .. } => LayoutKind::Hybrid,
        }
    }

    /// The directories jw's subtrees are made in (each must exist and be
    /// writable by jwd).
    pub fn parents(&self) -> Vec<PathBuf> {
        match self {
            Plan::V2 { parent, .. } => vec![parent.clone()],
            Plan::Hybrid {
                subtree,
                v1_subtrees,
            } => std::iter::once(subtree)
                .chain(v1_subtrees)
                .filter_map(|p| p.parent().map(Path::to_path_buf))
                .collect(),
        }
    }
}

/// Decides the layout from a mountinfo text and the server's
/// /proc/self/cgroup text: v2 when cgroup2 is mounted at
/// `config.mount_root` (it must then offer every limit controller), hybrid
/// when cgroup2 is mounted elsewhere beside the v1 limit controllers.
pub fn plan(
    config: &CgroupConfig,
    mountinfo: &str,
    self_cgroup: &str,
) -> Result<Plan, CgroupError> {
    let mounts = Mounts::parse(mountinfo);
    let own = OwnCgroups::parse(self_cgroup);
    let root_v2 = config.mount_root.as_path();
    if mounts.cgroup2.as_deref() == Some(root_v2) {
        let controllers =
            fs::read_optional(&root_v2.join("cgroup.controllers")).unwrap_or_default();
        let missing: Vec<&str> = controller::V2
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
        return Ok(Plan::V2 {
            parent: under(root_v2, &own.v2),
            own: own.v2,
        });
    }
    let Some(unified) = &mounts.cgroup2 else {
        return Err(CgroupError::Unsupported(
            "no cgroup2 hierarchy is mounted (jw needs cgroup2, alone or beside v1 controllers)"
                .into(),
        ));
    };
    let subtree = under(unified, &own.v2).join(&config.name);
    let mut v1_subtrees: Vec<PathBuf> = Vec::new();
    for controller in controller::V1 {
        let mount = mounts.v1(controller).ok_or_else(|| {
            CgroupError::Unsupported(format!(
                "cgroup2 at {} has no limit controllers and the v1 {controller} controller is not mounted",
                unified.display()
            ))
        })?;
        v1_subtrees.push(under(mount, own.v1(controller)).join(&config.name));
    }
    let v1_subtrees: [PathBuf; 4] = v1_subtrees.try_into().expect("one per controller");
    Ok(Plan::Hybrid {
        subtree,
        v1_subtrees,
    })
}

/// Detects the layout ([`plan`]) and prepares jw's subtrees in it.
pub fn layout(
    config: &CgroupConfig,
    mountinfo: &str,
    self_cgroup: &str,
) -> Result<Box<dyn Layout>, CgroupError> {
    let devices = block_devices(&config.sys_block);
    Ok(match plan(config, mountinfo, self_cgroup)? {
        Plan::V2 { parent, own } => Box::new(V2Layout::new(parent, &own, &config.name, devices)?),
        Plan::Hybrid {
            subtree,
            v1_subtrees,
        } => Box::new(HybridLayout::new(subtree, v1_subtrees, devices)?),
    })
}

/// The directory of each cgroup the process `pid` is in, one per mounted
/// hierarchy (cgroup2 and each v1 hierarchy), from `/proc/PID/cgroup` and
/// this process's `/proc/self/mountinfo`.
pub fn pid_cgroup_dirs(pid: u32) -> Result<Vec<PathBuf>, CgroupError> {
    let own = fs::read(Path::new(&format!("/proc/{pid}/cgroup")))?;
    let mountinfo = fs::read(Path::new("/proc/self/mountinfo"))?;
    Ok(parse::cgroup_dirs(&own, &mountinfo))
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
37 30 0:33 / /sys/fs/cgroup/memory2 rw,relatime - cgroup cgroup rw,memory
38 30 0:34 / /mnt/other2 rw,relatime - cgroup2 cgroup2 rw
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
        assert_eq!(OwnCgroups::parse("").v2, "/");
    }

    #[test]
    fn pid_cgroup_dirs_of_this_process() {
        let dirs = pid_cgroup_dirs(std::process::id()).unwrap();
        let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(!dirs.is_empty() || mine.trim().is_empty());
        for dir in &dirs {
            assert!(dir.is_dir(), "{}", dir.display());
        }
        assert!(pid_cgroup_dirs(u32::MAX).is_err());
    }
}
