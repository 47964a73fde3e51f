//! Where a job's set-up failed: every step the clone's child and the init
//! take, numbered for the failure report, and the words the user sees.

/// Where set-up failed, for the message the user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Fds = 1,
    Init = 2,
    Args = 3,
    Join = 4,
    Unshare = 5,
    MountPrivate = 6,
    MountProc = 7,
    Hostname = 8,
    Loopback = 9,
    Signals = 10,
    Fork = 11,
    Session = 12,
    Chdir = 13,
    Groups = 14,
    Gid = 15,
    Uid = 16,
    NoNewPrivs = 17,
    Exec = 18,
    Pipes = 19,
    Setup = 20,
    OomScore = 21,
    Hide = 22,
    ReadOnly = 23,
    PrivateTmp = 24,
    Home = 25,
    Capabilities = 26,
    Seccomp = 27,
    Dev = 28,
    Terminal = 29,
    Input = 30,
    /// The command exists, but its interpreter (`#!`) or dynamic loader
    /// does not.
    Interpreter = 31,
}

impl Stage {
    pub(super) const ALL: [Stage; 31] = [
        Stage::Fds,
        Stage::Init,
        Stage::Args,
        Stage::Join,
        Stage::Unshare,
        Stage::MountPrivate,
        Stage::MountProc,
        Stage::Hostname,
        Stage::Loopback,
        Stage::Signals,
        Stage::Fork,
        Stage::Session,
        Stage::Chdir,
        Stage::Groups,
        Stage::Gid,
        Stage::Uid,
        Stage::NoNewPrivs,
        Stage::Exec,
        Stage::Pipes,
        Stage::Setup,
        Stage::OomScore,
        Stage::Hide,
        Stage::ReadOnly,
        Stage::PrivateTmp,
        Stage::Home,
        Stage::Capabilities,
        Stage::Seccomp,
        Stage::Dev,
        Stage::Terminal,
        Stage::Input,
        Stage::Interpreter,
    ];

    pub fn from_u32(n: u32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as u32 == n)
    }

    /// What the init was doing, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Fds => "set up the job's file descriptors",
            Stage::Init => "execute the job init program jw-init (jwd --init)",
            Stage::Args => {
                "read the job init's arguments (are jwd and jw-init from the same build?)"
            }
            Stage::Join => "join the job's cgroups",
            Stage::Unshare => "create the job's namespaces",
            Stage::MountPrivate => "make the job's mounts private",
            Stage::MountProc => "mount /proc for the job",
            Stage::Hostname => "set the job's hostname",
            Stage::Loopback => "bring up lo in the job's network namespace",
            Stage::Signals => "set up signal handling",
            Stage::Fork => "fork the command",
            Stage::Session => "start a new session",
            Stage::Chdir => "change to the working directory",
            Stage::Groups => "drop supplementary groups",
            Stage::Gid => "switch to the job group",
            Stage::Uid => "switch to the job user",
            Stage::NoNewPrivs => "set no_new_privs",
            Stage::Exec => "execute the command",
            Stage::Pipes => "create the job's output pipes",
            Stage::Setup => "receive the job's set-up from jwd",
            Stage::OomScore => "reset the job's OOM score",
            Stage::Hide => "hide jwd's files from the job",
            Stage::ReadOnly => "make the host's filesystem read-only for the job",
            Stage::PrivateTmp => "mount the job's private /tmp and /var/tmp",
            Stage::Dev => "make the job's /dev",
            Stage::Terminal => "make the job's terminal (a pseudo-terminal in its own /dev/pts)",
            Stage::Input => "make the job's input pipe",
            Stage::Interpreter => "execute the command's interpreter or dynamic loader",
            Stage::Home => {
                "mount the job's work directory at /home/job (does the host have /home?)"
            }
            Stage::Capabilities => "drop the job's capabilities",
            Stage::Seccomp => "install the job's system call filter",
        }
    }
}
