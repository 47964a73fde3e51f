//! What `jwd --check-config` asks of the engine: would it start with this
//! configuration on this host? Each check reads and never changes: no
//! directory or cgroup is made, no process moved, no lock kept, so it may
//! run beside a serving jwd (then its locks are reported, not failed).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{access, AccessFlags};

use super::cgroup::{Cgroups, Plan};
use super::config::EngineConfig;
use super::lock;
use super::manager::open_init_program;
use super::uids::Identities;

/// How a finding bears on starting jwd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Ok,
    /// jwd would start, but the operator should know.
    Warn,
    /// jwd would not start, or would fail its jobs.
    Fail,
}

/// One thing checked: its subject (`data-dir`, `cgroups`...) and what was
/// found, in words.
#[derive(Debug, Clone)]
pub struct Finding {
    pub verdict: Verdict,
    pub subject: &'static str,
    pub text: String,
}

impl Finding {
    fn new(verdict: Verdict, subject: &'static str, text: impl Into<String>) -> Self {
        Finding {
            verdict,
            subject,
            text: text.into(),
        }
    }
}

/// Checks the engine's part of a configuration: the accounts jobs run as,
/// the system call filter, the init program, the data directory and the
/// cgroup layout.
pub fn check(config: &EngineConfig) -> Vec<Finding> {
    let mut found = Vec::new();
    found.push(identities(config));
    if config.seccomp {
        found.push(match super::sandbox::default_filter() {
            Ok(bpf) => Finding::new(
                Verdict::Ok,
                "seccomp",
                format!(
                    "the default filter compiles ({} instructions)",
                    bpf.len() / 8
                ),
            ),
            Err(e) => Finding::new(Verdict::Fail, "seccomp", e),
        });
    } else if config.job_user.is_none() {
        found.push(Finding::new(Verdict::Fail, "seccomp", "--no-seccomp needs a fixed --job-user (jobs could keep kernel keys in their uid's keyring for the next tenant given that uid)"));
    } else {
        found.push(Finding::new(
            Verdict::Warn,
            "seccomp",
            "off (--no-seccomp): jobs reach all of the kernel's system calls",
        ));
    }
    found.push(match open_init_program(config.init_program.as_deref()) {
        Ok(_) => Finding::new(
            Verdict::Ok,
            "init",
            match &config.init_program {
                Some(path) => format!("{} is an executable file", path.display()),
                None => "jw-init beside jwd is an executable file".into(),
            },
        ),
        Err(e) => Finding::new(Verdict::Fail, "init", e.to_string()),
    });
    found.extend(data_dir(&config.data_dir));
    found.extend(cgroups(config));
    found
}

fn identities(config: &EngineConfig) -> Finding {
    match &config.job_user {
        Some(user) => match Identities::fixed(user) {
            Ok(_) if user == "root" => Finding::new(Verdict::Warn, "job-user", "every job runs as root (no capabilities, but owner of every root-owned file it can see)"),
            Ok(_) => Finding::new(Verdict::Ok, "job-user", format!("every job runs as {user}")),
            Err(e) => Finding::new(Verdict::Fail, "job-user", e.to_string()),
        },
        None => match config.job_uids.check_host() {
            Ok(()) => Finding::new(
                Verdict::Ok,
                "job-uids",
                format!(
                    "{}: {} uids, none of them an account, group or subordinate id of this host",
                    config.job_uids,
                    config.job_uids.len()
                ),
            ),
            Err(e) => Finding::new(Verdict::Fail, "job-uids", e.to_string()),
        },
    }
}

fn data_dir(dir: &Path) -> Vec<Finding> {
    const S: &str = "data-dir";
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().unwrap_or(Path::new("/"));
            return vec![if access(parent, AccessFlags::W_OK).is_ok() {
                Finding::new(
                    Verdict::Ok,
                    S,
                    format!("{shown} does not exist yet; jwd will make it (owner-only)"),
                )
            } else {
                Finding::new(
                    Verdict::Fail,
                    S,
                    format!("{shown} does not exist and {} is not writable: make it, or choose another --data-dir", parent.display()),
                )
            }];
        }
        Err(e) => {
            return vec![Finding::new(
                Verdict::Fail,
                S,
                format!("cannot read {shown}: {e}"),
            )]
        }
    };
    if !meta.is_dir() {
        return vec![Finding::new(
            Verdict::Fail,
            S,
            format!("{shown} is not a directory"),
        )];
    }
    let mut found = Vec::new();
    let mode = meta.permissions().mode() & 0o7777;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        found.push(Finding::new(
            Verdict::Fail,
            S,
            format!(
                "{shown} belongs to uid {}, not to jwd's uid {euid}: chown it",
                meta.uid()
            ),
        ));
    } else if mode & 0o022 != 0 {
        found.push(Finding::new(
            Verdict::Fail,
            S,
            format!("{shown} is writable by others (mode {mode:04o}): chmod 700 {shown}"),
        ));
    } else if mode & 0o055 != 0 {
        found.push(Finding::new(Verdict::Warn, S, format!("{shown} can be listed by others (mode {mode:04o}; jwd makes it 0700): chmod 700 {shown}")));
    } else if access(dir, AccessFlags::W_OK).is_err() {
        found.push(Finding::new(
            Verdict::Fail,
            S,
            format!("{shown} is not writable (a read-only file system?)"),
        ));
    } else {
        let free = nix::sys::statvfs::statvfs(dir)
            .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
            .unwrap_or(0);
        found.push(Finding::new(
            Verdict::Ok,
            S,
            format!(
                "{shown}: owner-only, writable, {} free",
                crate::units::format_bytes(free)
            ),
        ));
    }
    if let Some(holder) = lock::data_dir_holder(dir) {
        found.push(Finding::new(
            Verdict::Warn,
            S,
            format!("in use by {holder}: a second jwd on it would refuse to start"),
        ));
    }
    found
}

fn cgroups(config: &EngineConfig) -> Vec<Finding> {
    const S: &str = "cgroups";
    let plan = match Cgroups::plan(&config.cgroup) {
        Ok(plan) => plan,
        Err(e) => return vec![Finding::new(Verdict::Fail, S, e.to_string())],
    };
    let mut found = Vec::new();
    let mut fine = true;
    for parent in plan.parents() {
        if access(&parent, AccessFlags::W_OK).is_err() {
            fine = false;
            found.push(Finding::new(Verdict::Fail, S, format!("cannot make cgroups in {}: not writable by jwd (a read-only /sys/fs/cgroup, or a unit without Delegate=yes?)", parent.display())));
        }
    }
    let subtree = match &plan {
        Plan::V2 { parent, own } => {
            if own != "/" {
                let have =
                    std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
                let missing: Vec<&str> = super::cgroup::V2_CONTROLLERS
                    .iter()
                    .copied()
                    .filter(|c| !have.split_whitespace().any(|h| h == *c))
                    .collect();
                if !missing.is_empty() {
                    fine = false;
                    found.push(Finding::new(Verdict::Fail, S, format!("jwd's cgroup {} is not given the controllers {} (run jwd in a unit with Delegate=yes, or in a cgroup they are delegated to)", parent.display(), missing.join(", "))));
                }
            }
            parent.join(&config.cgroup.name)
        }
        Plan::Hybrid { subtree, .. } => subtree.clone(),
    };
    if fine {
        found.push(Finding::new(
            Verdict::Ok,
            S,
            format!(
                "{} layout; job cgroups under {}",
                plan.kind(),
                subtree.display()
            ),
        ));
    }
    if lock::subtree_held(&subtree) {
        found.push(Finding::new(Verdict::Warn, S, format!("{} is in use by a running jwd with --cgroup-name {}: a second one would refuse to start", subtree.display(), config.cgroup.name)));
    }
    found
}
