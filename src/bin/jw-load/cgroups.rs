//! The job cgroup directories a jwd left: its cgroup hierarchies read from
//! /proc/PID/cgroup and /proc/self/mountinfo (jw-load's own parser, to be
//! swapped for the engine's in this one place).

/// The job cgroup directories of the jwd `pid` started with `--cgroup-name
/// name`: the directories in `<its cgroup>/<name>` (and in its parent's, for
/// a jwd that moved itself into `<name>.server`) in every cgroup hierarchy
/// it is in. `None` if its cgroups cannot be read.
pub(crate) fn job_cgroups(pid: u32, name: &str) -> Option<usize> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // (mount point, "" for cgroup2 or the sorted v1 controllers)
    let mounts: Vec<(String, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?.to_string();
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or("");
            let key = |opts: &str| {
                let mut c: Vec<&str> = opts
                    .split(',')
                    .filter(|o| *o != "rw" && *o != "ro")
                    .collect();
                c.sort_unstable();
                c.join(",")
            };
            match fstype {
                "cgroup2" => Some((point, String::new())),
                "cgroup" => Some((point, key(options))),
                _ => None,
            }
        })
        .collect();
    let mut total = 0;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let mut wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        wanted.sort_unstable();
        let wanted = wanted.join(",");
        let Some((point, _)) = mounts.iter().find(|(_, k)| {
            if wanted.is_empty() {
                k.is_empty()
            } else {
                // v1 mount options carry more than the controllers.
                wanted.split(',').all(|c| k.split(',').any(|o| o == c))
            }
        }) else {
            continue;
        };
        let dir = std::path::Path::new(point).join(path.trim_start_matches('/'));
        for base in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            let subtree = base.join(name);
            if let Ok(entries) = std::fs::read_dir(&subtree) {
                total += entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .count();
            }
        }
    }
    Some(total)
}
