//! The engine's shared state (`Inner`) and its handle (`Manager`, cheap to
//! clone). `Manager::new` is in `manager.rs`; its requests live beside
//! their concepts: `start.rs`, `supervise.rs` (stop), `manager.rs` (the
//! registry's requests, drain, retention).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::cgroup::Cgroups;
use super::config::EngineConfig;
use super::lock::InstanceLock;
use super::pool::Pool;
use super::registry::Registry;
use super::restore::Adopted;
use super::spec::SpecPolicy;
use super::uids::Identities;

pub(super) struct Inner {
    pub(super) config: EngineConfig,
    /// This engine's hold on its data directory and cgroup subtree.
    pub(super) lock: Mutex<Option<InstanceLock>>,
    pub(super) cgroups: Cgroups,
    pub(super) policy: SpecPolicy,
    pub(super) identities: Identities,
    /// Paths every job's view covers: the data directory and `hidden`.
    pub(super) hidden: Vec<String>,
    /// The jobs' seccomp filter (BPF), compiled once; empty: none.
    pub(super) filter: Vec<u8>,
    /// Set by `drain`: no new starts, and a start that was already under
    /// way when it began stops its job as soon as the job is registered.
    pub(super) draining: AtomicBool,
    pub(super) registry: Registry,
    /// False once the kernel refused CLONE_INTO_CGROUP: clone, then the
    /// init joins its cgroups itself.
    pub(super) clone_into_cgroup: AtomicBool,
    /// Clone with CLONE_VM | CLONE_VFORK (false: fork-style, for tests).
    pub(super) share_memory: AtomicBool,
    /// The job init program, opened O_PATH once: a jw-init replaced on
    /// disk later does not change what runs.
    pub(super) init_program: OwnedFd,
    /// /dev/null, every job's stdin.
    pub(super) devnull: OwnedFd,
    /// How many jobs are supervised now.
    pub(super) active: watch::Sender<usize>,
    /// Turns to start a job, per owner (`max_starts_per_user` each).
    pub(super) turns: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Where blocking work runs.
    pub(super) pool: Pool,
    /// Running jobs a previous jwd left, adopted and waiting for their
    /// supervisors (`Manager::resume`).
    pub(super) adopted: Mutex<Vec<Adopted>>,
}

/// The engine: cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Manager {
    pub(super) inner: Arc<Inner>,
}
