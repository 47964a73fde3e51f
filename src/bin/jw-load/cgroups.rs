//! The job cgroup directories a jwd left, for the leak checks: found with
//! the engine's own reading of /proc/PID/cgroup and the mount table.

/// The job cgroup directories of the jwd `pid` started with `--cgroup-name
/// name`: the directories in `<its cgroup>/<name>` (and in its parent's, for
/// a jwd that moved itself into `<name>.server`) in every cgroup hierarchy
/// it is in. `None` if its cgroups cannot be read.
pub(crate) fn job_cgroups(pid: u32, name: &str) -> Option<usize> {
    let dirs = jw::job::cgroup::pid_cgroup_dirs(pid).ok()?;
    let mut total = 0;
    for dir in dirs {
        for base in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            if let Ok(entries) = std::fs::read_dir(base.join(name)) {
                total += entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .count();
            }
        }
    }
    Some(total)
}
