//! Parsers for what the kernel writes about cgroups: keyed control files
//! (cpu.stat, memory.events, memory.oom_control), single-value files
//! (pids.current), the lines of `/proc/PID/cgroup` and the cgroup mounts in
//! `/proc/self/mountinfo`. Pure functions on text, so they are tested on
//! fixtures and shared with jw-load.

use std::path::{Path, PathBuf};

/// The value of `key` in a flat keyed file ("key value" per line), such as
/// cpu.stat, memory.events or memory.oom_control.
pub fn keyed(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then(|| parts.next()?.parse().ok())?
    })
}

/// The one value of a single-value file ("123\n"), such as pids.current.
pub fn single<T: std::str::FromStr>(content: &str) -> Option<T> {
    content.trim().parse().ok()
}

/// One line of `/proc/PID/cgroup`: "hierarchy-id:controllers:path".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcCgroup<'a> {
    /// The hierarchy id; "0" for cgroup2.
    pub hierarchy: &'a str,
    /// The comma-separated controllers (v1: "cpu,cpuacct", "name=systemd");
    /// empty for cgroup2.
    pub controllers: &'a str,
    /// The cgroup's path from the hierarchy's root ("/a/b").
    pub path: &'a str,
}

impl<'a> ProcCgroup<'a> {
    /// The controllers, one by one (none for cgroup2).
    pub fn controllers(&self) -> impl Iterator<Item = &'a str> {
        self.controllers.split(',').filter(|c| !c.is_empty())
    }
}

/// The lines of a `/proc/PID/cgroup` file; malformed lines are skipped.
pub fn proc_cgroups(text: &str) -> Vec<ProcCgroup<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            Some(ProcCgroup {
                hierarchy: parts.next()?,
                controllers: parts.next()?,
                path: parts.next()?,
            })
        })
        .collect()
}

/// One cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupMount<'a> {
    /// Where it is mounted.
    pub point: &'a str,
    /// cgroup2 (else a v1 hierarchy).
    pub v2: bool,
    /// The super options ("rw,cpu,cpuacct"): for v1, they name the
    /// hierarchy's controllers.
    pub options: &'a str,
}

impl CgroupMount<'_> {
    /// Whether this v1 mount carries `controller` (or `name=...`).
    pub fn has(&self, controller: &str) -> bool {
        !self.v2 && self.options.split(',').any(|o| o == controller)
    }
}

/// The cgroup and cgroup2 mounts in a mountinfo text, in its order.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount<'_>> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent maj:min root mount-point options [optional...] - fstype source super-options
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or("");
            let options = right.nth(1).unwrap_or("");
            match fstype {
                "cgroup2" => Some(CgroupMount {
                    point,
                    v2: true,
                    options,
                }),
                "cgroup" => Some(CgroupMount {
                    point,
                    v2: false,
                    options,
                }),
                _ => None,
            }
        })
        .collect()
}

/// `mount` joined with a cgroup path from /proc/PID/cgroup ("/a/b").
pub fn under(mount: &Path, cgroup_path: &str) -> PathBuf {
    mount.join(cgroup_path.trim_start_matches('/'))
}

/// The directory of each cgroup a process is in, one per hierarchy listed
/// in its `/proc/PID/cgroup` text whose filesystem `mountinfo` shows
/// mounted: the cgroup2 line goes with the first cgroup2 mount, a v1 line
/// with the first v1 mount carrying all its controllers.
pub fn cgroup_dirs(proc_cgroup: &str, mountinfo: &str) -> Vec<PathBuf> {
    let mounts = cgroup_mounts(mountinfo);
    proc_cgroups(proc_cgroup)
        .iter()
        .filter_map(|line| {
            let wanted: Vec<&str> = line.controllers().collect();
            let mount = mounts.iter().find(|m| {
                if wanted.is_empty() {
                    m.v2
                } else {
                    wanted.iter().all(|c| m.has(c))
                }
            })?;
            Some(under(Path::new(mount.point), line.path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/blkio rw,relatime shared:9 - cgroup cgroup rw,blkio
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
36 30 0:32 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
37 25 0:33 / /proc rw - proc proc rw
";

    #[test]
    fn keyed_files_parse() {
        let s = "usage_usec 120\nuser_usec 100\nsystem_usec 20\n";
        assert_eq!(keyed(s, "user_usec"), Some(100));
        assert_eq!(keyed(s, "system_usec"), Some(20));
        assert_eq!(keyed(s, "usec"), None);
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        assert_eq!(keyed("oom_kill many\n", "oom_kill"), None);
        assert_eq!(keyed("oom_kill\n", "oom_kill"), None);
    }

    #[test]
    fn single_values_parse() {
        assert_eq!(single::<u32>("17\n"), Some(17));
        assert_eq!(single::<u64>("max\n"), None);
        assert_eq!(single::<u64>(""), None);
    }

    #[test]
    fn proc_cgroup_lines_parse() {
        let text = "4:memory:/process_api/f8\n1:cpu,cpuacct:/\nbroken\n0::/user.slice/a:b\n";
        let lines = proc_cgroups(text);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].controllers().collect::<Vec<_>>(), ["memory"]);
        assert_eq!(
            lines[1].controllers().collect::<Vec<_>>(),
            ["cpu", "cpuacct"]
        );
        assert_eq!(lines[2].hierarchy, "0");
        assert_eq!(lines[2].controllers().count(), 0);
        assert_eq!(lines[2].path, "/user.slice/a:b");
    }

    #[test]
    fn cgroup_mounts_parse() {
        let mounts = cgroup_mounts(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert!(mounts[0].has("cpuacct") && !mounts[0].has("memory"));
        assert_eq!(mounts[3].point, "/sys/fs/cgroup/unified");
        assert!(mounts[3].v2 && !mounts[3].has("rw"));
        assert!(mounts[4].has("name=systemd"));
    }

    #[test]
    fn cgroup_dirs_resolve_each_hierarchy() {
        let own = "\
12:pids:/jwd
5:cpu,cpuacct:/jwd
4:memory:/
1:name=systemd:/system.slice/jwd.service
0::/system.slice/jwd.service
";
        assert_eq!(
            cgroup_dirs(own, HYBRID_MOUNTINFO),
            [
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/jwd"),
                PathBuf::from("/sys/fs/cgroup/memory/"),
                PathBuf::from("/sys/fs/cgroup/systemd/system.slice/jwd.service"),
                PathBuf::from("/sys/fs/cgroup/unified/system.slice/jwd.service"),
            ]
        );
        assert_eq!(
            under(Path::new("/sys/fs/cgroup/memory"), "/process_api/f8"),
            Path::new("/sys/fs/cgroup/memory/process_api/f8")
        );
    }
}
