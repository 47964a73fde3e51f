//! `jw`: the jw command-line client. See README.md.
//!
//! Exit codes: `run` and `wait` exit with the job's code (128+N when it died
//! of signal N); every other command exits 0 on success; 1 on any error;
//! 2 on a usage error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, CommandFactory, Parser, Subcommand};
use jw::client::{Client, ClientError, ConnectOptions, Stream};
use jw::protocol::{
    EnvVar, Event, JobId, JobInfo, JobState, Limits, LogsRequest, Network, OutputStream,
    StartRequest,
};
use jw::text::{printable, shell_word, shorten};
use jw::units::{format_bytes, parse_bytes, parse_duration};

/// Run commands on a jw server, in their own cgroups and namespaces.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// jwd's address.
    #[arg(long, env = "JW_ADDR", default_value = "127.0.0.1:7443", global = true)]
    addr: String,
    /// The CA certificate that signed jwd's certificate.
    #[arg(long, env = "JW_CA", global = true)]
    ca: Option<PathBuf>,
    /// Your certificate (its CN is your user name).
    #[arg(long, env = "JW_CERT", global = true)]
    cert: Option<PathBuf>,
    /// Your private key.
    #[arg(long, env = "JW_KEY", global = true)]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a job and print its id.
    Start(JobArgs),
    /// Start a job, stream its output, exit with its exit code.
    Run(JobArgs),
    /// Print a job's output from byte 0 (or --from).
    Logs {
        /// Follow the output until the job ends.
        #[arg(short, long)]
        follow: bool,
        /// Only stdout.
        #[arg(long, conflicts_with = "stderr")]
        stdout: bool,
        /// Only stderr.
        #[arg(long)]
        stderr: bool,
        /// Start at this byte offset (of each selected stream).
        #[arg(long, default_value_t = 0)]
        from: u64,
        id: JobId,
    },
    /// Show a job's status.
    Status {
        #[arg(long)]
        json: bool,
        id: JobId,
    },
    /// List your jobs (admins: --all for everyone's).
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stop a job: SIGTERM, then SIGKILL to all its processes after the grace period.
    Stop {
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        grace: Duration,
        id: JobId,
    },
    /// Wait for a job to end; exit with its exit code.
    Wait { id: JobId },
    /// Remove an ended job and its output.
    Rm { id: JobId },
    /// Certificates for a deployment.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make a server CA, a client CA, a server certificate and user certificates.
    Init {
        /// Directory to write into (created; existing files are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// DNS name or IP address of the server (repeatable).
        #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        server_names: Vec<String>,
        /// A user to issue a certificate for (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// An admin to issue a certificate for (repeatable): O=admin.
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
        /// Also write rogue.crt (untrusted CA) and expired.crt, for tests.
        #[arg(long, hide = true)]
        test_extras: bool,
    },
}

#[derive(ClapArgs)]
struct JobArgs {
    /// CPU limit in cores (e.g. 0.5).
    #[arg(long)]
    cpu: Option<f64>,
    /// Memory limit (e.g. 256M).
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Read bandwidth per block device, bytes/s (e.g. 10M).
    #[arg(long, value_parser = parse_bytes)]
    io_read: Option<u64>,
    /// Write bandwidth per block device, bytes/s (e.g. 10M).
    #[arg(long, value_parser = parse_bytes)]
    io_write: Option<u64>,
    /// Most processes and threads at once.
    #[arg(long)]
    pids: Option<u32>,
    /// Most output bytes kept (e.g. 100M).
    #[arg(long, value_parser = parse_bytes)]
    max_output: Option<u64>,
    /// Environment variable for the job (repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory inside the job.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Network: none (own namespace with lo) or host.
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    net: String,
    /// Grace period when Ctrl-C stops a `jw run` job.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace: Duration,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// A failure for the user: the message, already saying what to do.
struct Failure(String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jw: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message)) => {
            eprintln!("jw: {message}");
            ExitCode::FAILURE
        }
    }
}

fn connect_options(cli: &Cli) -> Result<ConnectOptions, Failure> {
    let need = |v: &Option<PathBuf>, flag: &str, env: &str| {
        v.clone()
            .ok_or_else(|| Failure(format!("no {flag} given: pass {flag} PATH or set {env}")))
    };
    Ok(ConnectOptions {
        addr: cli.addr.clone(),
        ca: need(&cli.ca, "--ca", "JW_CA")?,
        cert: need(&cli.cert, "--cert", "JW_CERT")?,
        key: need(&cli.key, "--key", "JW_KEY")?,
    })
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect(&connect_options(cli)?).await?)
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::Start(args) => {
            let req = start_request(args)?;
            let client = connect(&cli).await?;
            let id = client.start(req).await?;
            println!("{id}");
            Ok(0)
        }
        Command::Run(args) => {
            let req = start_request(args)?;
            let client = connect(&cli).await?;
            let id = client.start(req).await?;
            run_job(&client, id, args.grace).await
        }
        Command::Logs {
            follow,
            stdout,
            stderr,
            from,
            id,
        } => {
            let client = connect(&cli).await?;
            let (out, err) = match (stdout, stderr) {
                (true, _) => (Some(*from), None),
                (_, true) => (None, Some(*from)),
                _ => (Some(*from), Some(*from)),
            };
            let stream = client
                .logs(LogsRequest {
                    job: *id,
                    stdout: out,
                    stderr: err,
                    follow: *follow,
                    credit: INITIAL_CREDIT,
                })
                .await?;
            copy_output(stream).await?;
            Ok(0)
        }
        Command::Status { json, id } => {
            let client = connect(&cli).await?;
            let info = client.status(*id).await?;
            if *json {
                println!("{}", job_json(&info));
            } else {
                print_status(&info);
            }
            Ok(0)
        }
        Command::List { all, json } => {
            let client = connect(&cli).await?;
            let jobs = client.list(*all).await?;
            if *json {
                let list: Vec<serde_json::Value> = jobs.iter().map(job_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                print_table(&jobs);
            }
            Ok(0)
        }
        Command::Stop { grace, id } => {
            let client = connect(&cli).await?;
            let info = client.stop(*id, grace_ms(*grace)?).await?;
            eprintln!("{}: {}", info.id, describe_end(&info));
            Ok(0)
        }
        Command::Wait { id } => {
            let client = connect(&cli).await?;
            let info = client.wait(*id).await?;
            Ok(exit_code(&info))
        }
        Command::Rm { id } => {
            let client = connect(&cli).await?;
            client.remove(*id).await?;
            Ok(0)
        }
        Command::Certs {
            command:
                CertsCommand::Init {
                    out,
                    server_names,
                    users,
                    admins,
                    days,
                    test_extras,
                },
        } => {
            let written = jw::pki::init(
                out,
                &jw::pki::PkiOptions {
                    server_names: server_names.clone(),
                    users: users.clone(),
                    admins: admins.clone(),
                    days: *days,
                    test_extras: *test_extras,
                },
            )
            .map_err(|e| Failure(e.to_string()))?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "jw", &mut std::io::stdout());
            Ok(0)
        }
    }
}

fn grace_ms(grace: Duration) -> Result<u32, Failure> {
    u32::try_from(grace.as_millis())
        .ok()
        .filter(|ms| *ms <= 3_600_000)
        .ok_or_else(|| Failure("invalid --grace: at most 1h".into()))
}

fn start_request(args: &JobArgs) -> Result<StartRequest, Failure> {
    let cpu_millicores = match args.cpu {
        None => None,
        Some(c) if c.is_finite() && c > 0.0 && c * 1000.0 <= u32::MAX as f64 => {
            Some((c * 1000.0).round() as u32)
        }
        Some(c) => {
            return Err(Failure(format!(
                "invalid --cpu {c}: give cores as a positive number, e.g. 0.5"
            )))
        }
    };
    let env = args
        .env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| EnvVar {
                    name: k.to_string(),
                    value: v.to_string(),
                })
                .ok_or_else(|| Failure(format!("invalid -e {kv:?}: use NAME=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (command, rest) = args.command.split_first().expect("clap requires a command");
    Ok(StartRequest {
        command: command.clone(),
        args: rest.to_vec(),
        env,
        workdir: args.workdir.clone(),
        limits: Limits {
            cpu_millicores,
            memory_bytes: args.memory,
            io_read_bps: args.io_read,
            io_write_bps: args.io_write,
            pids: args.pids,
            output_bytes: args.max_output,
        },
        network: if args.net == "host" {
            Network::Host
        } else {
            Network::None
        },
    })
}

/// Credit the CLI grants at first, and returns as it writes chunks out.
const INITIAL_CREDIT: u32 = 4 << 20;
const REGRANT_AT: u32 = 1 << 20;

/// Writes a logs stream to stdout/stderr until its end; returns the status
/// carried by `End`.
async fn copy_output(mut stream: Stream) -> Result<JobInfo, Failure> {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let mut owed: u32 = 0;
    loop {
        match stream.next().await? {
            Some(Event::Output(chunk)) => {
                let result = match chunk.stream {
                    OutputStream::Stdout => {
                        stdout.write_all(&chunk.data).and_then(|()| stdout.flush())
                    }
                    OutputStream::Stderr => stderr.write_all(&chunk.data),
                };
                if let Err(e) = result {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        // `jw logs ID | head`: the reader has what it wanted.
                        let _ = stream.cancel().await;
                        std::process::exit(0);
                    }
                    return Err(Failure(format!("cannot write output: {e}")));
                }
                owed += chunk.data.len() as u32;
                if owed >= REGRANT_AT {
                    stream.grant(owed).await?;
                    owed = 0;
                }
            }
            Some(Event::End(info)) => return Ok(info),
            Some(other) => {
                return Err(Failure(format!(
                    "unexpected reply from the server: {other:?}"
                )))
            }
            None => {
                return Err(Failure(
                    "the server ended the stream without the job's status".into(),
                ))
            }
        }
    }
}

/// `jw run`: follow both outputs; Ctrl-C stops the job with its grace
/// period, a second Ctrl-C kills it at once.
async fn run_job(client: &Client, id: JobId, grace: Duration) -> Result<u8, Failure> {
    let stream = client
        .logs(LogsRequest {
            job: id,
            stdout: Some(0),
            stderr: Some(0),
            follow: true,
            credit: INITIAL_CREDIT,
        })
        .await?;
    let grace = grace_ms(grace)?;
    let interrupts = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut count = 0;
            while tokio::signal::ctrl_c().await.is_ok() {
                count += 1;
                let (what, ms) = if count == 1 {
                    ("stopping", grace)
                } else {
                    ("killing", 0)
                };
                eprintln!("jw: {what} job {id}");
                let client = client.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.stop(id, ms).await {
                        eprintln!("jw: cannot stop job {id}: {e}");
                    }
                });
            }
        })
    };
    let result = copy_output(stream).await;
    interrupts.abort();
    let info = result?;
    if info.oom_killed {
        eprintln!("jw: job {id} was killed: out of memory (its --memory limit)");
    }
    Ok(exit_code(&info))
}

/// The shell convention: the exit code, or 128 + the signal number.
fn exit_code(info: &JobInfo) -> u8 {
    match (info.exit_code, info.signal) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

fn describe_end(info: &JobInfo) -> String {
    let mut s = match (info.state, info.exit_code, info.signal) {
        (JobState::Exited, Some(code), _) => format!("exited with code {code}"),
        (JobState::Exited, None, Some(sig)) => {
            format!("killed by signal {sig} ({})", signal_name(sig))
        }
        (state, _, _) => state.as_str().to_string(),
    };
    if info.oom_killed {
        s.push_str(", out of memory");
    }
    if info.stopped {
        s.push_str(", stopped by a user");
    }
    if let Some(e) = &info.error {
        s.push_str(&format!(": {}", printable(e)));
    }
    s
}

fn signal_name(sig: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str())
        .unwrap_or("?")
}

fn time_text(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn duration_text(info: &JobInfo) -> String {
    let end = info.ended_at_ms.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(info.started_at_ms)
    });
    let secs = end.saturating_sub(info.started_at_ms) as f64 / 1000.0;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            (secs as u64 % 3600) / 60
        )
    }
}

/// The command line for a terminal: another user chose it, so control
/// characters are escaped and arguments quoted as a shell reads them
/// (`jw::text`).
fn command_text(info: &JobInfo) -> String {
    std::iter::once(info.command.as_str())
        .chain(info.args.iter().map(String::as_str))
        .map(shell_word)
        .collect::<Vec<_>>()
        .join(" ")
}

fn exit_text(info: &JobInfo) -> String {
    match (info.exit_code, info.signal) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => signal_name(s).to_string(),
        _ => "-".into(),
    }
}

fn print_table(jobs: &[JobInfo]) {
    println!(
        "{:<36}  {:<10}  {:<8}  {:<8}  {:<20}  {:>9}  COMMAND",
        "ID", "OWNER", "STATE", "EXIT", "STARTED", "DURATION"
    );
    for j in jobs {
        let mut started = time_text(j.started_at_ms);
        started.truncate(19);
        let command = command_text(j);
        let command = shorten(&command, 60);
        println!(
            "{:<36}  {:<10}  {:<8}  {:<8}  {:<20}  {:>9}  {}",
            j.id,
            printable(&j.owner),
            j.state.as_str(),
            exit_text(j),
            started.replace('T', " "),
            duration_text(j),
            command
        );
    }
}

fn print_status(info: &JobInfo) {
    let u = &info.usage;
    println!("id:        {}", info.id);
    println!("owner:     {}", printable(&info.owner));
    println!("command:   {}", command_text(info));
    println!("state:     {}", describe_end(info));
    println!("started:   {}", time_text(info.started_at_ms));
    if let Some(end) = info.ended_at_ms {
        println!("ended:     {}", time_text(end));
    }
    println!("duration:  {}", duration_text(info));
    println!(
        "cpu:       {:.3}s user, {:.3}s system",
        u.cpu_user_us as f64 / 1e6,
        u.cpu_system_us as f64 / 1e6
    );
    println!("memory:    {} peak", format_bytes(u.memory_peak_bytes));
    println!(
        "io:        {} read, {} written",
        format_bytes(u.io_read_bytes),
        format_bytes(u.io_write_bytes)
    );
    if info.state.is_active() {
        println!("pids:      {}", u.pids_current);
    }
    let o = &info.output;
    println!(
        "output:    {} stdout, {} stderr",
        format_bytes(o.stdout_bytes),
        format_bytes(o.stderr_bytes)
    );
    if o.dropped_bytes > 0 {
        println!(
            "           incomplete: {} dropped (output cap or full disk)",
            format_bytes(o.dropped_bytes)
        );
    }
}

fn job_json(info: &JobInfo) -> serde_json::Value {
    let u = &info.usage;
    serde_json::json!({
        "id": info.id.to_string(),
        "owner": info.owner,
        "command": info.command,
        "args": info.args,
        "state": info.state.as_str(),
        "exit_code": info.exit_code,
        "signal": info.signal,
        "oom_killed": info.oom_killed,
        "stopped": info.stopped,
        "started_at": time_text(info.started_at_ms),
        "ended_at": info.ended_at_ms.map(time_text),
        "started_at_ms": info.started_at_ms,
        "ended_at_ms": info.ended_at_ms,
        "usage": {
            "cpu_user_us": u.cpu_user_us,
            "cpu_system_us": u.cpu_system_us,
            "memory_peak_bytes": u.memory_peak_bytes,
            "io_read_bytes": u.io_read_bytes,
            "io_write_bytes": u.io_write_bytes,
            "pids_current": u.pids_current,
        },
        "output": {
            "stdout_bytes": info.output.stdout_bytes,
            "stderr_bytes": info.output.stderr_bytes,
            "dropped_bytes": info.output.dropped_bytes,
        },
        "error": info.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let mut info = JobInfo {
            id: JobId([0; 16]),
            owner: String::new(),
            command: String::new(),
            args: vec![],
            state: JobState::Exited,
            exit_code: Some(3),
            signal: None,
            oom_killed: false,
            stopped: false,
            started_at_ms: 0,
            ended_at_ms: None,
            usage: Default::default(),
            output: Default::default(),
            error: None,
        };
        assert_eq!(exit_code(&info), 3);
        info.exit_code = None;
        info.signal = Some(9);
        assert_eq!(exit_code(&info), 137);
    }
}
