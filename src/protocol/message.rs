//! The message catalogue of protocol.md, as postcard-encoded serde types.
//!
//! Field order is wire order: postcard writes struct fields one after the
//! other with no names or tags, and enum variants as a varint index. So the
//! order of fields and variants below is part of the protocol; adding,
//! removing or reordering anything is a protocol version change (see the
//! "Versioning" section of protocol.md). The test vectors in protocol.md pin
//! the exact bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::input::{Attached, Stdin, WindowSize};
use super::job_id::JobId;
use super::MAX_CHUNK;

/// The highest protocol version this code speaks. Sent in `Hello` and
/// `Welcome`. Version 2 added a job's input, terminal and signals
/// ([`ClientMessage::min_version`], [`Request::min_version`]); version 3
/// names, timeouts, tied jobs, tail/since/timestamps, id prefixes and a
/// longer `JobInfo` (`legacy.rs` writes the older one for older peers).
pub const PROTOCOL_VERSION: u32 = 3;
/// The lowest protocol version this code still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Every message a client sends. The first one on a connection is `Hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Opens the session: the highest protocol version the client speaks.
    Hello(Hello),
    /// Opens stream `stream` with one request.
    Request { stream: u32, request: Request },
    /// Grants `bytes` more bytes of `Output` data on `stream`.
    Credit { stream: u32, bytes: u32 },
    /// Asks the server to end `stream` early; it answers `Error(cancelled)`
    /// unless the stream already ended.
    Cancel { stream: u32 },
    /// Version 2. Bytes for the job's input on an `Attach` stream: `offset`
    /// is where `data[0]` falls in everything written to the job's input;
    /// `data` counts against the stream's input credit.
    Input {
        stream: u32,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Version 2. The end of the job's input (EOF), after the bytes sent
    /// before it, on an `Attach` stream.
    InputEnd { stream: u32 },
    /// Version 2. The caller's terminal has a new size, on an `Attach`
    /// stream of a job with a terminal.
    Resize { stream: u32, size: WindowSize },
}

impl ClientMessage {
    /// The first protocol version that defines this message: a peer never
    /// sends one the session's version does not define.
    pub fn min_version(&self) -> u32 {
        match self {
            ClientMessage::Request { request, .. } => request.min_version(),
            ClientMessage::Input { .. }
            | ClientMessage::InputEnd { .. }
            | ClientMessage::Resize { .. } => 2,
            _ => 1,
        }
    }
}

/// Every message a server sends.
// Welcome and Fatal are rare, an Event with a JobInfo common; boxing it
// would cost an allocation per status for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to `Hello`: the version both will use and who the server
    /// thinks the client is.
    Welcome(Welcome),
    /// One event on an open stream.
    Event { stream: u32, event: Event },
    /// A connection-level error; the server closes the connection after it.
    Fatal(ErrorInfo),
}

/// The client's greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The highest protocol version the client speaks.
    pub version: u32,
    /// Free text naming the client software, for the server's log.
    pub client: String,
}

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The version both peers use from now on.
    pub version: u32,
    /// Free text naming the server software.
    pub server: String,
    /// The identity taken from the client certificate.
    pub identity: Identity,
    /// Limits this server enforces on the connection.
    pub limits: ConnectionLimits,
}

/// Who the peer is, as the server read it from the client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Subject common name.
    pub user: String,
    /// Subject organization values, in certificate order.
    pub groups: Vec<String>,
    /// Whether one of the groups is the server's admin group.
    pub admin: bool,
}

/// Limits a server announces in `Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionLimits {
    /// Largest frame payload the server accepts, in bytes.
    pub max_frame: u32,
    /// Most streams that may be open at once on this connection.
    pub max_streams: u32,
    /// Largest `data` in one `Output` event.
    pub max_chunk: u32,
}

/// A request; each opens its own stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Start a job. Answer: `Started`.
    Start(StartRequest),
    /// Stop a job: SIGTERM, then after `grace_ms` kill everything in its
    /// cgroup. Answer: `Status` with the final status once it has ended.
    Stop { job: JobId, grace_ms: u32 },
    /// Answer: `Status`.
    Status { job: JobId },
    /// Answer: zero or more `ListItem`, then `ListEnd`. `all` (every user's
    /// jobs) needs the admin role.
    List { all: bool },
    /// Read output. Answer: `Output` events as credit allows, then `End`.
    Logs(LogsRequest),
    /// Wait for a job to end. Answer: `End`.
    Wait { job: JobId },
    /// Delete an ended job, its status and output. Answer: `Removed`.
    Remove { job: JobId },
    /// Version 2. Become the writer of a job's input (one at a time, the
    /// owner only). Answer: `Attached`, then `InputCredit` as the job takes
    /// the input, then `Detached`.
    Attach { job: JobId },
    /// Version 2. Send `signal` to the job's command (`all`: to every
    /// process of the job). Answer: `Status`.
    Signal { job: JobId, signal: i32, all: bool },
    /// Version 2. `Start` with the job's input open: a pipe or a terminal.
    /// Answer: `Started`.
    StartWith { spec: StartRequest, stdin: Stdin },
    /// Version 3. `StartWith` with options: a name, a timeout, a tie to
    /// its readers. Answer: `Started`. (Boxed: the wire is the same.)
    StartJob(Box<StartJob>),
    /// Version 3. `Logs` that may begin at the last lines or at a time,
    /// and date each run of output. Answer: as `Logs` (with `OutputTime`
    /// events when asked).
    Read(ReadRequest),
    /// Version 3. `Wait`, and while the stream is open, hold a tied job
    /// (`StartOptions::tie_ms`). Answer: `End`.
    Hold { job: JobId },
    /// Version 3. The job a name or an id prefix (at least 4 hex digits)
    /// means, among the jobs the caller may see. Answer: `Resolved`.
    Resolve { name: String },
}

impl Request {
    /// The first protocol version that defines this request.
    pub fn min_version(&self) -> u32 {
        match self {
            Request::StartJob(_)
            | Request::Read(_)
            | Request::Hold { .. }
            | Request::Resolve { .. } => 3,
            Request::Attach { .. } | Request::Signal { .. } | Request::StartWith { .. } => 2,
            _ => 1,
        }
    }
}

/// What to run, and within what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    /// An absolute path, or a name looked up on the job's fixed PATH.
    pub command: String,
    /// Arguments after the command (argv[1..]).
    pub args: Vec<String>,
    /// Variables added to the job's clean environment.
    pub env: Vec<EnvVar>,
    /// Absolute working directory inside the job; `None` means `/`.
    pub workdir: Option<String>,
    /// Resource limits; `None` fields take the server's defaults.
    pub limits: Limits,
    /// Which network the job sees.
    pub network: Network,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Resource limits of a job. `None` means the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU bandwidth in thousandths of a core (500 = half a core).
    pub cpu_millicores: Option<u32>,
    /// Memory in bytes; swap is not allowed on top of it.
    pub memory_bytes: Option<u64>,
    /// Read bandwidth per block device, bytes per second.
    pub io_read_bps: Option<u64>,
    /// Write bandwidth per block device, bytes per second.
    pub io_write_bps: Option<u64>,
    /// Most processes and threads alive in the job at once.
    pub pids: Option<u32>,
    /// Most output bytes (stdout + stderr) kept; the rest is dropped and counted.
    pub output_bytes: Option<u64>,
}

/// A job's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// Its own network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network; the server must allow it.
    Host,
}

/// Which output to read, from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    pub job: JobId,
    /// `Some(offset)` reads stdout from that byte; `None` skips stdout.
    pub stdout: Option<u64>,
    /// `Some(offset)` reads stderr from that byte; `None` skips stderr.
    pub stderr: Option<u64>,
    /// Keep the stream open for new output until the job ends.
    pub follow: bool,
    /// Initial credit: `Output` data bytes the server may send before the
    /// client grants more with `Credit`.
    pub credit: u32,
}

/// Version 3: a start with the job's input and options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartJob {
    pub spec: StartRequest,
    pub stdin: Stdin,
    pub options: StartOptions,
}

/// Version 3: how a job started with `StartJob` lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartOptions {
    /// A name unique among the owner's jobs (until removed): 1 to 64 of
    /// `A-Z a-z 0-9 _ . -`, starting with a letter or digit.
    pub name: Option<String>,
    /// Stop the job (with `grace_ms`) this long after it started; it ends
    /// `timed_out`. The server may cap it (`--max-timeout`).
    pub timeout_ms: Option<u64>,
    /// Tie the job to its clients: once no `Hold` has been open on it for
    /// `tie_ms`, the server stops it (with `grace_ms`). Counted from the
    /// start too: a client gone before its first `Hold` does not leave the
    /// job behind. `None`: the job lives on its own.
    pub tie_ms: Option<u32>,
    /// The grace of those stops: SIGTERM, then after this, SIGKILL to
    /// every process. `None`: the server's default.
    pub grace_ms: Option<u32>,
}

/// Version 3: a `Logs` request, where to begin, and whether to date it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// As `Logs`: which outputs, from which offsets, follow, credit.
    pub logs: LogsRequest,
    /// Begin at the start of the last `tail_lines` lines of the chosen
    /// outputs taken together, in capture order (a last line without a
    /// newline counts). Overrides the offsets.
    pub tail_lines: Option<u64>,
    /// Begin at the first output captured at or after this Unix time in
    /// microseconds. Overrides the offsets; with `tail_lines`, the later
    /// of the two beginnings wins.
    pub since_us: Option<u64>,
    /// Send an `OutputTime` before the output of each capture run.
    pub timestamps: bool,
}

/// Which of a job's two outputs a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    /// Both outputs, in index order.
    pub const ALL: [OutputStream; 2] = [OutputStream::Stdout, OutputStream::Stderr];

    /// The output's number everywhere one is needed (the output store's
    /// arrays, the wire's output header): stdout 0, stderr 1.
    pub fn index(self) -> usize {
        match self {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        }
    }

    /// The output numbered `index`, if there is one.
    pub fn from_index(index: usize) -> Option<OutputStream> {
        OutputStream::ALL.get(index).copied()
    }
}

/// Something that happened on a stream. Terminal events end the stream:
/// `Started`, `Status`, `ListEnd`, `End`, `Removed`, `Error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The job was started (its command was executed).
    Started { job: JobId },
    /// A job's status (answer to `Status` and `Stop`).
    Status(JobInfo),
    /// One job of a `List` answer. Not terminal.
    ListItem(JobInfo),
    /// The end of a `List` answer: how many `ListItem` were sent.
    ListEnd { count: u32 },
    /// A piece of output. Not terminal. Counts against the stream's credit.
    Output(OutputChunk),
    /// The end of `Logs` or `Wait`: the job's status at that moment (final
    /// when the job has ended).
    End(JobInfo),
    /// The job and its output are gone.
    Removed,
    /// The request failed; the stream is over.
    Error(ErrorInfo),
    /// Version 2. The stream is the job's input writer. Not terminal.
    Attached(Attached),
    /// Version 2. The job took `bytes` more of the input: the client may
    /// send that many more. Not terminal.
    InputCredit { bytes: u32 },
    /// Version 2. The end of an `Attach` stream: after `InputEnd` (the
    /// input is closed), or because the job ended. `input_offset`: the
    /// bytes of input the job was given in all.
    Detached { input_offset: u64 },
    /// Version 3. On a `Read` with `timestamps`, before the `Output` it
    /// dates: the bytes of `stream` from `offset` on were captured at
    /// `time_us` (Unix microseconds), up to the next `OutputTime` of that
    /// stream. Not terminal.
    OutputTime {
        stream: OutputStream,
        offset: u64,
        time_us: u64,
    },
    /// Version 3. The answer to `Resolve`.
    Resolved { job: JobId },
}

impl Event {
    /// Whether the event ends its stream: every event but `Output`,
    /// `ListItem`, `Attached`, `InputCredit` and `OutputTime`.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Event::Output(_)
                | Event::ListItem(_)
                | Event::Attached(_)
                | Event::InputCredit { .. }
                | Event::OutputTime { .. }
        )
    }
}

/// Bytes a job wrote to one of its outputs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    pub stream: OutputStream,
    /// Byte offset of `data[0]` within that output.
    pub offset: u64,
    /// At most `max_chunk` bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl fmt::Debug for OutputChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputChunk")
            .field("stream", &self.stream)
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .finish()
    }
}

impl OutputChunk {
    /// Whether the chunk respects the protocol's chunk size limit.
    pub fn within_limit(&self) -> bool {
        self.data.len() <= MAX_CHUNK
    }
}

/// The shell's convention for a process's end, which `jw run`/`jw wait`
/// exit with and a job's init exits with: the exit code, or 128 + the
/// number of the signal that killed it; 1 when neither is known.
pub fn shell_code(exit_code: Option<i32>, signal: Option<i32>) -> u8 {
    match (exit_code, signal) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Its cgroup exists; its command has not been executed yet.
    Starting,
    /// Its command runs.
    Running,
    /// It ended: see `exit_code` or `signal`.
    Exited,
    /// It could not be started, or its supervision failed: see `error`.
    Failed,
    /// The server lost track of it (for example it was running when the
    /// server crashed and could not be re-adopted).
    Lost,
}

impl JobState {
    /// Whether the job can still change (Starting or Running).
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Starting | JobState::Running)
    }

    /// The lower-case name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Exited => "exited",
            JobState::Failed => "failed",
            JobState::Lost => "lost",
        }
    }
}

/// Everything known about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    /// The user who started it.
    pub owner: String,
    pub command: String,
    pub args: Vec<String>,
    pub state: JobState,
    /// Exit code, when the command exited on its own.
    pub exit_code: Option<i32>,
    /// Signal number, when the command was killed by a signal.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the job.
    pub oom_killed: bool,
    /// A user asked to stop it.
    pub stopped: bool,
    /// Unix time in milliseconds.
    pub started_at_ms: u64,
    /// Unix time in milliseconds, once it has ended.
    pub ended_at_ms: Option<u64>,
    pub usage: Usage,
    pub output: OutputInfo,
    /// Why it failed or was lost, in words.
    pub error: Option<String>,
    /// Version 3 (older sessions get the fields above only): its name.
    pub name: Option<String>,
    /// Version 3. The limits it runs with, the server's defaults filled in
    /// (`None`: unlimited).
    pub limits: Limits,
    /// Version 3. Its timeout, if it has one.
    pub timeout_ms: Option<u64>,
    /// Version 3. The server stopped it at its timeout.
    pub timed_out: bool,
}

impl JobInfo {
    /// A job that has just started running: no end, no usage, no output,
    /// no options. Its other fields are set by whoever knows them.
    pub fn running(id: JobId, owner: &str, command: &str, args: Vec<String>) -> JobInfo {
        JobInfo {
            id,
            owner: owner.into(),
            command: command.into(),
            args,
            state: JobState::Running,
            exit_code: None,
            signal: None,
            oom_killed: false,
            stopped: false,
            started_at_ms: 0,
            ended_at_ms: None,
            usage: Usage::default(),
            output: OutputInfo::default(),
            error: None,
            name: None,
            limits: Limits::default(),
            timeout_ms: None,
            timed_out: false,
        }
    }

    /// The job's end by the shell's convention (`shell_code`): what `jw
    /// run` and `jw wait` exit with.
    pub fn shell_code(&self) -> u8 {
        shell_code(self.exit_code, self.signal)
    }
}

/// Resource use read from the job's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_user_us: u64,
    pub cpu_system_us: u64,
    pub memory_peak_bytes: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// Processes in the job now (0 once it has ended).
    pub pids_current: u32,
}

/// How much output a job has, and whether any was lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Bytes the job wrote that were not kept (output cap or full disk).
    pub dropped_bytes: u64,
}

/// An error: a machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorInfo {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorInfo {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// An error code. A plain number on the wire (not an enum) so that a peer
/// that meets a code newer than itself can still decode the frame; it treats
/// unknown codes like `internal`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The request or frame is malformed or breaks a protocol rule.
    pub const BAD_REQUEST: ErrorCode = ErrorCode(1);
    /// The peer's identity is missing or unusable.
    pub const UNAUTHENTICATED: ErrorCode = ErrorCode(2);
    /// The identity is known but may not do this.
    pub const PERMISSION_DENIED: ErrorCode = ErrorCode(3);
    /// No such job, or not one this user may see.
    pub const NOT_FOUND: ErrorCode = ErrorCode(4);
    /// A limit was reached: streams, jobs per user, disk, processes.
    pub const RESOURCE_EXHAUSTED: ErrorCode = ErrorCode(5);
    /// The job is not in a state that allows this (e.g. removing a running job).
    pub const FAILED_PRECONDITION: ErrorCode = ErrorCode(6);
    /// The server does not support this version or feature.
    pub const UNSUPPORTED: ErrorCode = ErrorCode(7);
    /// The client cancelled the stream.
    pub const CANCELLED: ErrorCode = ErrorCode(8);
    /// The command could not be executed (missing, not executable, ...).
    pub const EXEC_FAILED: ErrorCode = ErrorCode(9);
    /// A bug or an unexpected system failure on the server.
    pub const INTERNAL: ErrorCode = ErrorCode(10);
    /// Version 3. The command does not exist (a shell's 127); `EXEC_FAILED`
    /// stays for one that exists but cannot be executed (126).
    pub const COMMAND_NOT_FOUND: ErrorCode = ErrorCode(11);
    /// Version 3. The name is taken (by another of the owner's jobs).
    pub const ALREADY_EXISTS: ErrorCode = ErrorCode(12);
    /// Version 3. An id prefix matches more than one job; the message lists them.
    pub const AMBIGUOUS: ErrorCode = ErrorCode(13);

    const NAMES: [(ErrorCode, &'static str); 13] = [
        (Self::BAD_REQUEST, "bad_request"),
        (Self::UNAUTHENTICATED, "unauthenticated"),
        (Self::PERMISSION_DENIED, "permission_denied"),
        (Self::NOT_FOUND, "not_found"),
        (Self::RESOURCE_EXHAUSTED, "resource_exhausted"),
        (Self::FAILED_PRECONDITION, "failed_precondition"),
        (Self::UNSUPPORTED, "unsupported"),
        (Self::CANCELLED, "cancelled"),
        (Self::EXEC_FAILED, "exec_failed"),
        (Self::INTERNAL, "internal"),
        (Self::COMMAND_NOT_FOUND, "command_not_found"),
        (Self::ALREADY_EXISTS, "already_exists"),
        (Self::AMBIGUOUS, "ambiguous"),
    ];

    /// The snake_case name of a known code, `None` for a code from a newer peer.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
    }

    /// Every code this version knows.
    pub fn known() -> impl Iterator<Item = ErrorCode> {
        Self::NAMES.iter().map(|(c, _)| *c)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown_{}", self.0),
        }
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_streams_are_numbered_stdout_0_stderr_1() {
        assert_eq!(OutputStream::Stdout.index(), 0);
        assert_eq!(OutputStream::Stderr.index(), 1);
        for which in OutputStream::ALL {
            assert_eq!(OutputStream::from_index(which.index()), Some(which));
        }
        assert_eq!(OutputStream::from_index(2), None);
    }

    #[test]
    fn only_output_and_list_items_leave_a_stream_open() {
        let chunk = OutputChunk {
            stream: OutputStream::Stdout,
            offset: 0,
            data: vec![],
        };
        assert!(!Event::Output(chunk).is_terminal());
        let info = JobInfo::running(JobId([0; 16]), "alice", "true", vec![]);
        assert!(!Event::ListItem(info.clone()).is_terminal());
        assert!(Event::ListEnd { count: 0 }.is_terminal());
        assert!(Event::End(info).is_terminal());
        assert!(Event::Removed.is_terminal());
        assert!(Event::Error(ErrorInfo::new(ErrorCode::NOT_FOUND, "x")).is_terminal());
    }

    #[test]
    fn shell_codes_follow_the_shell() {
        assert_eq!(shell_code(Some(3), None), 3);
        assert_eq!(shell_code(None, Some(9)), 137);
        assert_eq!(shell_code(Some(300), None), 255);
        assert_eq!(shell_code(None, None), 1);
    }

    #[test]
    fn unknown_error_codes_display() {
        assert_eq!(ErrorCode::NOT_FOUND.to_string(), "not_found");
        assert_eq!(ErrorCode(999).to_string(), "unknown_999");
        assert_eq!(ErrorCode::known().count(), 13);
    }
}
