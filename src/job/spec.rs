//! A validated job request: what the engine is willing to run.
//!
//! Everything a user sends is checked here once, with a message that names
//! the field, so the rest of the engine can trust its input (no NUL bytes in
//! strings bound for the kernel, limits the cgroup files will accept).

use std::time::Duration;

use super::sandbox::JOB_HOME;
use crate::protocol::{
    Limits, Network, StartRequest, Stdin, MAX_ARGS, MAX_ARGV_ENV_BYTES, MAX_COMMAND_LEN, MAX_ENV,
};

mod options;
pub use options::{check_name, format_duration, Terms, DEFAULT_GRACE, MAX_NAME, MAX_TIMEOUT};

/// The job's fixed, safe PATH: a name without `/` is looked up here inside
/// the job, never on the server's own PATH.
pub const JOB_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The clean environment every job starts from; the user's variables are
/// added on top (and may replace these).
pub const BASE_ENV: [(&str, &str); 4] = [
    ("PATH", JOB_PATH),
    ("HOME", JOB_HOME),
    ("TERM", "dumb"),
    ("LANG", "C.UTF-8"),
];

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const TIB: u64 = 1024 * 1024 * MIB;

/// Server-side policy a spec is validated against.
#[derive(Debug, Clone)]
pub struct SpecPolicy {
    /// CPUs on the host: a CPU limit may not exceed 1000 * this.
    pub host_cpus: u32,
    /// Memory on the host, in bytes.
    pub host_memory: u64,
    /// Whether `Network::Host` is allowed (`jwd --allow-host-network`).
    pub allow_host_network: bool,
    /// The largest and default output cap per job.
    pub max_output_bytes: u64,
    /// The memory and pids limits of a job that gives none.
    pub default_memory_bytes: Option<u64>,
    pub default_pids: Option<u32>,
    /// The longest timeout a job may have, and the timeout of a job that
    /// gives none (`jwd --max-timeout`).
    pub max_timeout: Option<Duration>,
}

impl SpecPolicy {
    /// The policy for this host, read from the kernel.
    pub fn for_host(allow_host_network: bool, max_output_bytes: u64) -> Self {
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let host_memory = nix::sys::sysinfo::sysinfo()
            .map(|s| s.ram_total())
            .unwrap_or(u64::MAX);
        SpecPolicy {
            host_cpus,
            host_memory,
            allow_host_network,
            max_output_bytes,
            default_memory_bytes: None,
            default_pids: None,
            max_timeout: None,
        }
    }
}

/// A request the engine accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// The command as the user gave it (for status and listings).
    pub command: String,
    pub args: Vec<String>,
    /// `NAME=value` entries: the base environment merged with the user's.
    pub env: Vec<String>,
    /// Absolute working directory inside the job (its own work directory
    /// unless the user chose another).
    pub workdir: String,
    pub limits: Limits,
    pub network: Network,
    /// The output cap in force for this job.
    pub output_cap: u64,
    /// Its input: /dev/null (`Start`), a pipe or a terminal (`StartWith`).
    pub stdin: Stdin,
}

/// A request the engine refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct SpecError {
    pub field: &'static str,
    pub reason: String,
    /// True when the request is well formed but the policy forbids it.
    pub forbidden: bool,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field,
        reason: reason.into(),
        forbidden: false,
    }
}

fn no_nul(field: &'static str, s: &str) -> Result<(), SpecError> {
    if s.contains('\0') {
        return Err(invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    value: Option<T>,
    min: T,
    max: T,
    unit: &str,
) -> Result<(), SpecError> {
    match value {
        Some(v) if v < min || v > max => Err(invalid(
            field,
            format!("{v}{unit} is outside the accepted range {min}{unit} to {max}{unit}"),
        )),
        _ => Ok(()),
    }
}

impl JobSpec {
    /// Checks a request against the protocol's limits and the server's
    /// policy.
    pub fn validate(req: &StartRequest, policy: &SpecPolicy) -> Result<JobSpec, SpecError> {
        let command = req.command.as_str();
        if command.is_empty() {
            return Err(invalid("command", "is empty; give a program to run"));
        }
        if command.len() > MAX_COMMAND_LEN {
            return Err(invalid(
                "command",
                format!("is longer than {MAX_COMMAND_LEN} bytes"),
            ));
        }
        no_nul("command", command)?;
        if command.contains('/') && !command.starts_with('/') {
            return Err(invalid(
                "command",
                format!("{command:?} is a relative path; give an absolute path or a bare name looked up on {JOB_PATH}"),
            ));
        }
        if req.args.len() > MAX_ARGS {
            return Err(invalid("args", format!("more than {MAX_ARGS} arguments")));
        }
        for arg in &req.args {
            no_nul("args", arg)?;
        }
        if req.env.len() > MAX_ENV {
            return Err(invalid("env", format!("more than {MAX_ENV} variables")));
        }
        let mut env: Vec<String> = BASE_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for var in &req.env {
            if var.name.is_empty() || var.name.contains('=') {
                return Err(invalid(
                    "env",
                    format!(
                        "{:?} is not a variable name (empty or contains '=')",
                        var.name
                    ),
                ));
            }
            no_nul("env", &var.name)?;
            no_nul("env", &var.value)?;
            let prefix = format!("{}=", var.name);
            env.retain(|e| !e.starts_with(&prefix));
            env.push(format!("{}={}", var.name, var.value));
        }
        let total: usize = command.len()
            + req.args.iter().map(String::len).sum::<usize>()
            + req
                .env
                .iter()
                .map(|v| v.name.len() + v.value.len())
                .sum::<usize>();
        if total > MAX_ARGV_ENV_BYTES {
            return Err(invalid(
                "args",
                format!(
                    "command, arguments and environment exceed {MAX_ARGV_ENV_BYTES} bytes together"
                ),
            ));
        }
        let workdir = match &req.workdir {
            None => JOB_HOME.to_string(),
            Some(w) => {
                no_nul("workdir", w)?;
                if !w.starts_with('/') {
                    return Err(invalid(
                        "workdir",
                        format!("{w:?} is relative; give an absolute directory"),
                    ));
                }
                w.clone()
            }
        };

        let l = &req.limits;
        let max_millicores = policy.host_cpus.saturating_mul(1000);
        in_range("cpu", l.cpu_millicores, 10, max_millicores, " millicores")?;
        in_range("memory", l.memory_bytes, MIB, policy.host_memory, " bytes")?;
        in_range("io_read", l.io_read_bps, 4 * KIB, TIB, " bytes/s")?;
        in_range("io_write", l.io_write_bps, 4 * KIB, TIB, " bytes/s")?;
        in_range("pids", l.pids, 2, 4_194_304, "")?;
        in_range(
            "output",
            l.output_bytes,
            1,
            policy.max_output_bytes,
            " bytes",
        )?;

        if req.network == Network::Host && !policy.allow_host_network {
            return Err(SpecError {
                field: "network",
                reason: "host networking is not allowed on this server (jwd --allow-host-network)"
                    .into(),
                forbidden: true,
            });
        }

        let mut limits = *l;
        limits.memory_bytes = limits.memory_bytes.or(policy.default_memory_bytes);
        limits.pids = limits.pids.or(policy.default_pids);
        Ok(JobSpec {
            command: req.command.clone(),
            args: req.args.clone(),
            env,
            workdir,
            limits,
            network: req.network,
            output_cap: l.output_bytes.unwrap_or(policy.max_output_bytes),
            stdin: Stdin::Null,
        })
    }

    /// The paths to try `execve` on, in order: the command itself if it is a
    /// path, else each directory of the job's PATH joined with it.
    pub fn exec_candidates(&self) -> Vec<String> {
        if self.command.starts_with('/') {
            vec![self.command.clone()]
        } else {
            JOB_PATH
                .split(':')
                .map(|dir| format!("{dir}/{}", self.command))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EnvVar;

    pub(super) fn policy() -> SpecPolicy {
        SpecPolicy {
            host_cpus: 2,
            host_memory: 8 << 30,
            allow_host_network: false,
            max_output_bytes: 1 << 30,
            default_memory_bytes: None,
            default_pids: None,
            max_timeout: None,
        }
    }

    fn req(command: &str) -> StartRequest {
        StartRequest {
            command: command.into(),
            args: vec![],
            env: vec![],
            workdir: None,
            limits: Limits::default(),
            network: Network::None,
        }
    }

    fn field_of(r: StartRequest) -> &'static str {
        JobSpec::validate(&r, &policy()).unwrap_err().field
    }

    #[test]
    fn accepts_a_plain_command_with_defaults() {
        let spec = JobSpec::validate(&req("echo"), &policy()).unwrap();
        assert_eq!(spec.workdir, JOB_HOME);
        assert!(spec.env.contains(&format!("HOME={JOB_HOME}")));
        assert_eq!(spec.limits, Limits::default(), "no server defaults here");
        assert_eq!(spec.output_cap, 1 << 30);
        assert!(spec.env.contains(&format!("PATH={JOB_PATH}")));
        assert_eq!(spec.exec_candidates().len(), JOB_PATH.split(':').count());
        assert_eq!(spec.exec_candidates()[0], "/usr/local/sbin/echo");
    }

    #[test]
    fn user_env_replaces_base_env() {
        let mut r = req("/bin/true");
        r.env = vec![EnvVar {
            name: "HOME".into(),
            value: "/tmp".into(),
        }];
        let spec = JobSpec::validate(&r, &policy()).unwrap();
        assert!(spec.env.contains(&"HOME=/tmp".to_string()));
        assert!(!spec.env.contains(&"HOME=/".to_string()));
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        assert_eq!(field_of(req("")), "command");
        assert_eq!(field_of(req("bin/true")), "command");
        assert_eq!(field_of(req("/bin/\0true")), "command");
        let mut r = req("/bin/true");
        r.args = vec!["a\0b".into()];
        assert_eq!(field_of(r), "args");
        let mut r = req("/bin/true");
        r.workdir = Some("tmp".into());
        assert_eq!(field_of(r), "workdir");
        let mut r = req("/bin/true");
        r.env = vec![EnvVar {
            name: "A=B".into(),
            value: String::new(),
        }];
        assert_eq!(field_of(r), "env");
    }

    #[test]
    fn rejects_zero_and_absurd_limits() {
        let cases: Vec<(Limits, &str)> = vec![
            (
                Limits {
                    cpu_millicores: Some(0),
                    ..Default::default()
                },
                "cpu",
            ),
            (
                Limits {
                    cpu_millicores: Some(2001),
                    ..Default::default()
                },
                "cpu",
            ),
            (
                Limits {
                    memory_bytes: Some(0),
                    ..Default::default()
                },
                "memory",
            ),
            (
                Limits {
                    memory_bytes: Some(u64::MAX),
                    ..Default::default()
                },
                "memory",
            ),
            (
                Limits {
                    io_read_bps: Some(1),
                    ..Default::default()
                },
                "io_read",
            ),
            (
                Limits {
                    io_write_bps: Some(0),
                    ..Default::default()
                },
                "io_write",
            ),
            (
                Limits {
                    pids: Some(1),
                    ..Default::default()
                },
                "pids",
            ),
            (
                Limits {
                    output_bytes: Some(0),
                    ..Default::default()
                },
                "output",
            ),
            (
                Limits {
                    output_bytes: Some(2 << 30),
                    ..Default::default()
                },
                "output",
            ),
        ];
        for (limits, field) in cases {
            let mut r = req("/bin/true");
            r.limits = limits;
            assert_eq!(field_of(r), field, "{limits:?}");
        }
    }

    #[test]
    fn server_defaults_fill_only_missing_limits() {
        let mut p = policy();
        p.default_memory_bytes = Some(1 << 30);
        p.default_pids = Some(1024);
        let spec = JobSpec::validate(&req("/bin/true"), &p).unwrap();
        assert_eq!(spec.limits.memory_bytes, Some(1 << 30));
        assert_eq!(spec.limits.pids, Some(1024));
        let mut r = req("/bin/true");
        r.limits.memory_bytes = Some(64 << 20);
        r.limits.pids = Some(5);
        let spec = JobSpec::validate(&r, &p).unwrap();
        assert_eq!(spec.limits.memory_bytes, Some(64 << 20));
        assert_eq!(spec.limits.pids, Some(5));
    }

    #[test]
    fn host_network_needs_the_policy() {
        let mut r = req("/bin/true");
        r.network = Network::Host;
        let err = JobSpec::validate(&r, &policy()).unwrap_err();
        assert!(err.forbidden);
        let mut p = policy();
        p.allow_host_network = true;
        assert!(JobSpec::validate(&r, &p).is_ok());
    }
}
