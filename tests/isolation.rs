//! Tenant isolation, tried as a hostile tenant would (root; run on the
//! hybrid host and in the pure cgroup v2 guest): no job holds a capability
//! or reaches root through the init, bob's jobs cannot read, list, change or
//! signal anything of alice's, jobs write only their own places, jwd's data
//! is owner-only, unlimited jobs get the default limits, and bad identity
//! settings are clear errors.

mod common;

use std::collections::HashMap;
use std::ffi::c_long;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{engine, engine_with, run_to_end, start_req, Engine};
use jw::job::uids::UidRange;
use jw::job::JobError;
use jw::protocol::{EnvVar, JobId, OutputStream, StartRequest};

/// What jobs of these tests run for the system calls a shell cannot make:
/// this test binary itself, with `JW_PROBE` naming the actions (see the
/// `probe` test). Each prints `ACTION=ok` or `ACTION=<errno name>`:
///   keyctl, add_key        the kernel keyrings
///   unshare_user           unshare(CLONE_NEWUSER)
///   clone_user             clone(CLONE_NEWUSER)
///   clone3                 clone3 (ENOSYS under the filter: libc falls back)
///   mount, bpf, io_uring, perf, vsock
///   shm_create:KEY         create a System V shared memory segment
///   shm_find:KEY           look one up
///   fork_count:N           fork up to N children that wait; print how many
///   nest                   20,000 nested directories in the working directory
///   setxattr, getxattr     the user.jw attribute of the working directory
fn probe_job(actions: &[&str]) -> StartRequest {
    let exe = std::env::current_exe().unwrap().display().to_string();
    let mut req = start_req(
        &exe,
        &["--exact", "probe", "--nocapture", "--test-threads=1"],
    );
    req.env = vec![EnvVar {
        name: "JW_PROBE".into(),
        value: actions.join(" "),
    }];
    req
}

/// Runs the actions `JW_PROBE` names and exits (inside a job); without it,
/// checks the probe itself against the host, where nothing filters it.
#[test]
fn probe() {
    if let Ok(actions) = std::env::var("JW_PROBE") {
        for action in actions.split_whitespace() {
            println!("{action}={}", probe_action(action));
        }
        std::process::exit(0);
    }
    if !common::require_root("probe") {
        return;
    }
    assert_eq!(probe_action("keyctl"), "ok");
    assert_eq!(probe_action("fork_count:3"), "3");
    assert_eq!(probe_action("shm_find:4870"), "ENOENT");
}

fn fork_count(n: usize) -> String {
    let mut children = Vec::new();
    for _ in 0..n {
        // SAFETY: fork in a probe; the child only pauses until killed.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: the child waits for its SIGKILL (pause has no
            // preconditions).
            unsafe { libc::pause() };
            // SAFETY: ends the child without running the parent's exit
            // handlers.
            unsafe { libc::_exit(0) }
        }
        if pid < 0 {
            break;
        }
        children.push(pid);
    }
    for &pid in &children {
        // SAFETY: kill takes integers; `pid` is this process's own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // SAFETY: reaps that child; a null status pointer is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    children.len().to_string()
}

fn result(rc: c_long) -> String {
    if rc >= 0 {
        return "ok".into();
    }
    let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    match err {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EFAULT => "EFAULT".into(),
        other => format!("errno{other}"),
    }
}

fn probe_action(action: &str) -> String {
    if let Some(key) = action.strip_prefix("shm_create:") {
        let key: i32 = key.parse().expect("a numeric key");
        // SAFETY: shmget takes integers only.
        return result(unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | 0o666) } as c_long);
    }
    if let Some(key) = action.strip_prefix("shm_find:") {
        let key: i32 = key.parse().expect("a numeric key");
        // SAFETY: shmget takes integers only.
        return result(unsafe { libc::shmget(key, 0, 0) } as c_long);
    }
    match action {
        // SAFETY: keyctl with integer arguments only.
        "keyctl" => result(unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                0,  /* GET_KEYRING_ID */
                -4, /* USER */
                1,
            )
        }),
        // SAFETY: add_key with pointers to static C strings and a length
        // that fits the payload.
        "add_key" => result(unsafe {
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"jw-probe".as_ptr(),
                c"secret".as_ptr(),
                6,
                -3, /* SESSION */
            )
        }),
        // SAFETY: unshare takes flags only.
        "unshare_user" => result(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as c_long),
        "clone_user" => {
            // SAFETY: a fork-like clone; the child only calls _exit.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_NEWUSER | libc::SIGCHLD) as c_long,
                    0,
                    0,
                    0,
                    0,
                )
            };
            if pid == 0 {
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(0) };
            }
            if pid > 0 {
                // SAFETY: reaps the child.
                unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
            }
            result(pid)
        }
        "clone3" => {
            let mut args = [0u64; 11];
            args[4] = libc::SIGCHLD as u64;
            // SAFETY: a fork-like clone3; the child only calls _exit.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    args.as_mut_ptr(),
                    std::mem::size_of_val(&args),
                )
            };
            if pid == 0 {
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(0) };
            }
            if pid > 0 {
                // SAFETY: reaps the child.
                unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
            }
            result(pid)
        }
        // SAFETY: mount with pointers to static C strings and no data.
        "mount" => result(unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        } as c_long),
        "bpf" => {
            let attr = [0u8; 128];
            // SAFETY: bpf reads at most 128 bytes from the live `attr`.
            result(unsafe {
                libc::syscall(libc::SYS_bpf, 5 /* PROG_LOAD */, attr.as_ptr(), 128)
            })
        }
        "io_uring" => {
            let params = [0u8; 120];
            // SAFETY: io_uring_setup reads and writes the live 120-byte
            // `params`.
            result(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_ptr()) })
        }
        "nest" => {
            // 20,000 nested directories from the working directory: deeper
            // than a recursive removal survives.
            let mut dir = rustix::fs::open(
                ".",
                rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .expect("cwd");
            for _ in 0..20_000 {
                if rustix::fs::mkdirat(&dir, "d", rustix::fs::Mode::from_raw_mode(0o700)).is_err() {
                    return "mkdir-failed".into();
                }
                dir = rustix::fs::openat(
                    &dir,
                    "d",
                    rustix::fs::OFlags::DIRECTORY,
                    rustix::fs::Mode::empty(),
                )
                .expect("the new directory");
            }
            "ok".into()
        }
        "setxattr" => match rustix::fs::setxattr(
            ".",
            "user.jw",
            b"alice-was-here",
            rustix::fs::XattrFlags::empty(),
        ) {
            Ok(()) => "ok".into(),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => "unsupported".into(),
            Err(e) => format!("errno{}", e.raw_os_error()),
        },
        "getxattr" => {
            let mut buf = [0u8; 64];
            match rustix::fs::getxattr(".", "user.jw", &mut buf[..]) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(e) if e == rustix::io::Errno::NODATA => "none".into(),
                Err(e) if e == rustix::io::Errno::OPNOTSUPP => "unsupported".into(),
                Err(e) => format!("errno{}", e.raw_os_error()),
            }
        }
        "vsock" => {
            // SAFETY: socket takes integers; the descriptor is closed.
            let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
            if fd >= 0 {
                // SAFETY: closes the descriptor just opened.
                unsafe { libc::close(fd) };
            }
            result(fd as c_long)
        }
        "perf" => {
            let mut attr = [0u8; 128];
            attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size
                                                               // SAFETY: perf_event_open reads the live 128-byte `attr`.
            result(unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) })
        }
        other => {
            if let Some(n) = other.strip_prefix("fork_count:") {
                return fork_count(n.parse().expect("a count"));
            }
            panic!("probe: unknown action {other:?}")
        }
    }
}

/// `key=value` lines of a job's stdout (the probe's first one follows the
/// test harness's `test probe ... `).
fn fields(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.rsplit("... ").next().unwrap_or(l).split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn wait_for_output(e: &Engine, id: JobId, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.read_output(id, OutputStream::Stdout).contains(want) {
        assert!(
            Instant::now() < deadline,
            "job never printed {want:?}; stdout {:?} stderr {:?}",
            e.read_output(id, OutputStream::Stdout),
            e.read_output(id, OutputStream::Stderr)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host pids of a running job's processes, with their pid inside the
/// job (from NSpid).
fn job_processes(e: &Engine, id: JobId) -> Vec<(i32, i32)> {
    let procs = e
        .manager
        .cgroups()
        .v2_subtree()
        .join(id.to_string())
        .join("cgroup.procs");
    std::fs::read_to_string(&procs)
        .unwrap()
        .lines()
        .filter_map(|l| l.parse::<i32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let inner = status
                .lines()
                .find(|l| l.starts_with("NSpid:"))?
                .split_whitespace()
                .last()?
                .parse()
                .ok()?;
            Some((pid, inner))
        })
        .collect()
}

const CAPS: &str =
    "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status | tr -d '\\t' | tr ':' '='";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_processes_hold_no_capabilities_even_as_root() {
    for user in [None, Some("root")] {
        let Some(e) = engine_with("caps", |c| c.job_user = user.map(String::from)) else {
            return;
        };
        let info = run_to_end(&e, start_req("sh", &["-c", &format!("{CAPS}; id -u")])).await;
        let out = e.read_output(info.id, OutputStream::Stdout);
        println!("[{}] job user {user:?}:\n{out}", e.layout());
        let f = fields(&out);
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(
                f[set], "0000000000000000",
                "{set} with job user {user:?}: {out}"
            );
        }
        assert_eq!(f["NoNewPrivs"], "1");
        assert_eq!(f["Seccomp"], "2", "no seccomp filter: {out}");
        let uid: u32 = out.lines().last().unwrap().parse().unwrap();
        match user {
            Some(_) => assert_eq!(uid, 0),
            None => assert!(e.config.job_uids.contains(uid), "uid {uid}"),
        }
        // A root job user without capabilities cannot mount or change
        // what the host's root owns.
        let info = run_to_end(
            &e,
            start_req(
                "sh",
                &[
                    "-c",
                    "mount -t tmpfs x /mnt 2>&1 || echo mount-refused; \
                         touch /etc/jw-test 2>&1 || echo etc-refused; \
                         (echo jw > /proc/sys/kernel/hostname) 2>/dev/null || echo sysctl-refused; \
                         echo disks=$(ls /dev | grep -cE '^(sd|vd|nvme|xvd|mem|kmem|kmsg|port)')",
                ],
            ),
        )
        .await;
        let out = e.read_output(info.id, OutputStream::Stdout);
        for refused in ["mount-refused", "etc-refused", "sysctl-refused"] {
            assert!(out.contains(refused), "{refused}: {out}");
        }
        assert_eq!(
            fields(&out)["disks"],
            "0",
            "host devices in the job's /dev: {out}"
        );
        assert!(!Path::new("/etc/jw-test").exists());
        e.assert_clean();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_init_ignores_loader_variables_from_the_request() {
    let Some(e) = engine("ldenv") else { return };
    let witness = tempfile::tempdir().unwrap();
    let debug_out = witness.path().join("ld-debug");
    let mut req = start_req("sleep", &["1000"]);
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: value.into(),
    };
    req.env = vec![
        var("LD_PRELOAD", "/nonexistent/jw-preload.so"),
        var("LD_LIBRARY_PATH", &witness.path().display().to_string()),
        var("LD_AUDIT", "/nonexistent/jw-audit.so"),
        var("LD_DEBUG", "all"),
        var("LD_DEBUG_OUTPUT", &debug_out.display().to_string()),
        var("JW_MARK", "user-env"),
    ];
    let started = e.manager.start("alice", &req).await.unwrap();
    let procs = job_processes(&e, started.id);
    let environ = |pid: i32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
            .replace('\0', "\n")
    };
    let init = procs
        .iter()
        .find(|(_, inner)| *inner == 1)
        .expect("the init")
        .0;
    let command = procs
        .iter()
        .find(|(_, inner)| *inner == 2)
        .expect("the command")
        .0;
    let init_env = environ(init);
    println!("init environment: {init_env:?}");
    assert!(
        !init_env.contains("LD_") && !init_env.contains("JW_MARK"),
        "{init_env}"
    );
    // The user's environment reaches the user's program, and only it.
    let command_env = environ(command);
    assert!(command_env.contains("JW_MARK=user-env"), "{command_env}");
    assert!(command_env.contains("LD_PRELOAD="), "{command_env}");
    // Root never wrote the loader's debug output.
    let written: Vec<_> = std::fs::read_dir(witness.path()).unwrap().collect();
    assert!(
        written.is_empty(),
        "the loader ran with the request's LD_DEBUG_OUTPUT as root: {written:?}"
    );
    e.manager
        .stop(started.id, None, Duration::ZERO)
        .await
        .unwrap();
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_filter_refuses_kernel_surface_and_can_be_turned_off() {
    let actions = [
        "keyctl",
        "add_key",
        "unshare_user",
        "clone_user",
        "mount",
        "bpf",
        "io_uring",
        "perf",
        "vsock",
        "clone3",
    ];
    let Some(e) = engine("seccomp") else { return };
    let info = run_to_end(&e, probe_job(&actions)).await;
    let out = e.read_output(info.id, OutputStream::Stdout);
    println!("[{}] with the filter:\n{out}", e.layout());
    assert_eq!(
        info.exit_code,
        Some(0),
        "{}",
        e.read_output(info.id, OutputStream::Stderr)
    );
    let f = fields(&out);
    for action in &actions[..9] {
        assert_eq!(f[*action], "EPERM", "{action}: {out}");
    }
    assert_eq!(f["clone3"], "ENOSYS", "{out}");
    // Threads (glibc tries clone3 first, then clone) still work.
    let info = run_to_end(
        &e,
        start_req("sh", &["-c", "sleep 0.1 & sleep 0.1 & wait; echo forked"]),
    )
    .await;
    assert_eq!(e.read_output(info.id, OutputStream::Stdout), "forked\n");
    e.assert_clean();
    drop(e);

    // Without the filter a job could leave keys in its uid's keyring for
    // the next tenant of that uid: only a fixed job user may go without.
    let data = tempfile::tempdir().unwrap();
    let err = jw::job::Manager::new(jw::job::EngineConfig {
        data_dir: data.path().to_path_buf(),
        seccomp: false,
        init_program: Some(env!("CARGO_BIN_EXE_jw-init").into()),
        ..jw::job::EngineConfig::default()
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("--no-seccomp") && err.contains("--job-user"),
        "{err}"
    );
    let Some(e) = engine_with("noseccomp", |c| {
        c.seccomp = false;
        c.job_user = Some("nobody".into());
    }) else {
        return;
    };
    let info = run_to_end(&e, probe_job(&["keyctl", "clone3"])).await;
    let out = e.read_output(info.id, OutputStream::Stdout);
    println!("[{}] without the filter:\n{out}", e.layout());
    let f = fields(&out);
    assert_eq!(f["keyctl"], "ok", "{out}");
    assert_eq!(f["clone3"], "ok", "{out}");
    e.assert_clean();
}

/// What bob's job tries against alice's: her secrets in every place a job
/// can write, her output and record in the data directory, her work
/// directory by its host path, her IPC, her processes.
fn attack_script(data_dir: &Path, subtree: &Path, alice: JobId, alice_work: &Path) -> String {
    let work = alice_work;
    let job_dir = data_dir.join("jobs").join(alice.to_string());
    format!(
        "for f in /tmp/secret /var/tmp/secret /dev/shm/secret /home/job/secret {work}/secret {jobs}/stdout {jobs}/status; do \
           if cat $f >/dev/null 2>&1; then echo \"read=$f\"; fi; \
         done; \
         ls -A /home/job /tmp /var/tmp /dev/shm {data} {work} 2>/dev/null | grep -q secret && echo listed=secret; \
         for l in {data}/jwd.lock {subtree} {jobs}/keeper.sock {jobs}/keeper {jobs}/exit; do test -e $l && echo sees=$l; done; \
         ls /proc/1/fd >/dev/null 2>&1 && echo sees=/proc/1/fd; \
         echo home=$(ls -A /home | tr '\\n' ,); \
         echo procs=$(ls /proc | grep -c '^[0-9]'); \
         echo uid=$(id -u); \
         kill -KILL -1 2>/dev/null; \
         JW_PROBE=shm_find:4871 {probe}",
        work = work.display(),
        jobs = job_dir.display(),
        data = data_dir.display(),
        subtree = subtree.display(),
        probe = probe_command(),
    )
}

/// The probe as a shell command (its actions in `JW_PROBE`).
fn probe_command() -> String {
    probe_job(&[]).args.iter().fold(
        std::env::current_exe().unwrap().display().to_string(),
        |cmd, arg| cmd + " " + arg,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_reach_anything_of_alices_running_or_ended_job() {
    let Some(e) = engine("tenants") else { return };
    let alice_script = format!(
        "for d in /tmp /var/tmp /dev/shm /home/job; do echo alice-secret > $d/secret; done; \
         JW_PROBE=shm_create:4871 {}; echo uid=$(id -u); echo ready; \
         while :; do sleep 0.05; done",
        probe_command()
    );
    let alice = e
        .manager
        .start("alice", &start_req("sh", &["-c", &alice_script]))
        .await
        .unwrap();
    wait_for_output(&e, alice.id, "ready").await;
    let alice_out = e.read_output(alice.id, OutputStream::Stdout);
    assert!(alice_out.contains("shm_create:4871=ok"), "{alice_out}");
    let alice_uid = fields(&alice_out)["uid"].clone();

    let alice_work = e.manager.work_path(alice.id).unwrap();
    assert!(alice_work.join("secret").exists());
    let attack = attack_script(
        &e.config.data_dir,
        e.manager.cgroups().v2_subtree(),
        alice.id,
        &alice_work,
    );
    let bob = e
        .manager
        .start("bob", &start_req("sh", &["-c", &attack]))
        .await
        .unwrap();
    let info = tokio::time::timeout(Duration::from_secs(60), e.manager.wait(bob.id, None))
        .await
        .unwrap()
        .unwrap();
    let out = e.read_output(bob.id, OutputStream::Stdout);
    println!("[{}] bob while alice runs:\n{out}", e.layout());
    let f = fields(&out);
    assert!(!out.contains("read=") && !out.contains("listed="), "{out}");
    // Nor what jwd locks to stay the only jwd on them (a job holding one
    // would keep the next jwd from starting), nor alice's keeper's socket
    // and records, nor its own keeper's descriptors.
    assert!(!out.contains("sees="), "{out}");
    assert_eq!(f["home"], "job,", "{out}");
    assert_ne!(f["uid"], alice_uid, "bob and alice share a uid");
    assert!(
        f["procs"].parse::<u32>().unwrap() <= 6,
        "bob sees other processes: {out}"
    );
    assert_eq!(
        f["shm_find:4871"], "ENOENT",
        "bob found alice's shared memory: {out}"
    );
    assert!(info.exit_code == Some(0) || info.signal.is_some());
    // Alice's job lived through bob's kill -KILL -1.
    let status = e.manager.status(alice.id, None).unwrap();
    assert!(status.state.is_active(), "alice's job died: {status:?}");

    // Ended: her work directory is gone with her job; the data directory
    // stays out of reach.
    e.manager
        .stop(alice.id, None, Duration::ZERO)
        .await
        .unwrap();
    let work = e.config.data_dir.join("work").join(alice.id.to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    while work.exists() {
        assert!(Instant::now() < deadline, "alice's work directory stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = run_to_end(&e, start_req("sh", &["-c", &attack])).await;
    let out = e.read_output(info.id, OutputStream::Stdout);
    println!("[{}] bob after alice ended:\n{out}", e.layout());
    assert!(!out.contains("read=") && !out.contains("listed="), "{out}");
    // Nor what jwd locks to stay the only jwd on them (a job holding one
    // would keep the next jwd from starting), nor alice's keeper's socket
    // and records, nor its own keeper's descriptors.
    assert!(!out.contains("sees="), "{out}");
    assert_eq!(fields(&out)["shm_find:4871"], "ENOENT", "{out}");
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_write_only_their_own_places() {
    let Some(e) = engine("writes") else { return };
    let marker = format!("jw-host-marker-{}", std::process::id());
    let host_marker = Path::new("/var/tmp").join(&marker);
    std::fs::write(&host_marker, "host").unwrap();
    let leak = format!("jw-job-leak-{}", std::process::id());
    let script = format!(
        "cd; pwd; \
         for f in $HOME/a /tmp/a /var/tmp/{leak} /dev/shm/a; do touch $f && echo wrote=$f; done; \
         for f in /a /usr/a /etc/a /var/a /home/a; do touch $f 2>/dev/null || echo refused=$f; done; \
         test -e /var/tmp/{marker} && echo saw-host-var-tmp; \
         echo dev=$(ls /dev | tr '\\n' ,); echo run=$(ls -A /run | wc -l); \
         (echo x > /proc/self/comm) 2>/dev/null || echo proc-read-only; true"
    );
    let info = run_to_end(&e, start_req("sh", &["-c", &script])).await;
    let out = e.read_output(info.id, OutputStream::Stdout);
    println!("[{}] writes:\n{out}", e.layout());
    std::fs::remove_file(&host_marker).unwrap();
    assert!(out.starts_with("/home/job\n"), "{out}");
    for f in [
        "/home/job/a",
        "/tmp/a",
        &format!("/var/tmp/{leak}"),
        "/dev/shm/a",
    ] {
        assert!(out.contains(&format!("wrote={f}\n")), "{f}: {out}");
    }
    for f in ["/a", "/usr/a", "/etc/a", "/var/a", "/home/a"] {
        assert!(out.contains(&format!("refused={f}\n")), "{f}: {out}");
        assert!(!Path::new(f).exists());
    }
    assert!(!out.contains("saw-host-var-tmp"), "{out}");
    let f = fields(&out);
    assert_eq!(
        f["dev"], "fd,full,null,random,shm,stderr,stdin,stdout,tty,urandom,zero,",
        "{out}"
    );
    assert_eq!(f["run"], "0", "the host's /run is visible: {out}");
    assert!(out.contains("proc-read-only"), "{out}");
    assert!(
        !Path::new("/var/tmp").join(&leak).exists(),
        "the job wrote the host's /var/tmp"
    );
    e.assert_clean();
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        }
        out.push(path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_owner_only() {
    let Some(e) = engine("modes") else { return };
    let info = run_to_end(&e, start_req("sh", &["-c", "echo out; echo err >&2"])).await;
    assert_eq!(e.read_output(info.id, OutputStream::Stdout), "out\n");
    let mut paths = vec![e.config.data_dir.clone()];
    walk(&e.config.data_dir, &mut paths);
    let files = paths.iter().filter(|p| p.is_file()).count();
    assert!(files >= 3, "stdout, stderr, status: {paths:?}");
    let work = e.config.data_dir.join("work");
    for path in paths {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
        if path.parent() == Some(work.as_path()) {
            // A job's work directory (until its clean-up): the job's own.
            assert!(e.config.job_uids.contains(meta.uid()), "{}", path.display());
        } else {
            assert_eq!(meta.uid(), 0, "{}", path.display());
        }
    }
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_without_limits_get_the_defaults_and_a_memory_bomb_is_contained() {
    let Some(e) = engine_with("defaults", |c| {
        c.default_memory_bytes = Some(64 << 20);
        c.default_pids = Some(32);
    }) else {
        return;
    };
    // Private /dev/shm is charged to the job: filling it past the default
    // limit gets the job OOM-killed.
    let info = run_to_end(
        &e,
        start_req(
            "sh",
            &["-c", "dd if=/dev/zero of=/dev/shm/bomb bs=1M count=512"],
        ),
    )
    .await;
    println!("[{}] memory bomb: {info:?}", e.layout());
    let stderr = e.read_output(info.id, OutputStream::Stderr);
    assert!(info.oom_killed, "{info:?}: {stderr}");
    // The pids default holds too.
    let info = run_to_end(&e, probe_job(&["fork_count:60"])).await;
    let out = e.read_output(info.id, OutputStream::Stdout);
    let forked: u32 = fields(&out)["fork_count:60"].parse().unwrap();
    // The init and the probe count against the 32.
    assert!(
        (20..=30).contains(&forked),
        "{forked} forks under a default of 32: {out}"
    );
    // And the engine goes on serving.
    let info = run_to_end(&e, start_req("echo", &["still", "serving"])).await;
    assert_eq!(
        e.read_output(info.id, OutputStream::Stdout),
        "still serving\n"
    );
    e.assert_clean();
}

#[test]
fn a_uid_range_that_overlaps_the_hosts_accounts_is_refused() {
    if !common::require_root("uidrange") {
        return;
    }
    let err = "0-100".parse::<UidRange>().unwrap_err().to_string();
    assert!(err.contains("below 1000"), "{err}");
    // nobody (65534) is an account on every host these tests run on.
    let data = tempfile::tempdir().unwrap();
    let config = jw::job::EngineConfig {
        data_dir: data.path().to_path_buf(),
        job_uids: "65530-65534".parse().unwrap(),
        init_program: Some(env!("CARGO_BIN_EXE_jw-init").into()),
        ..jw::job::EngineConfig::default()
    };
    let err = jw::job::Manager::new(config)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("overlaps") && err.contains("65534") && err.contains("--job-uids"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_uid_range_is_a_clear_error_until_a_job_has_gone() {
    let Some(e) = engine_with("exhausted", |c| {
        c.job_uids = "690000-690000".parse().unwrap()
    }) else {
        return;
    };
    let first = e
        .manager
        .start(
            "alice",
            &start_req("sh", &["-c", "touch ~/left-behind; echo ready; sleep 1000"]),
        )
        .await
        .unwrap();
    wait_for_output(&e, first.id, "ready").await;
    let work = e.manager.work_path(first.id).unwrap();
    assert!(work.join("left-behind").exists());
    match e.manager.start("bob", &start_req("true", &[])).await {
        Err(err @ JobError::NoIdentity { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains("690000-690000") && text.contains("in use"),
                "{text}"
            );
        }
        other => panic!("expected the range to be exhausted, got {other:?}"),
    }
    e.manager
        .stop(first.id, None, Duration::ZERO)
        .await
        .unwrap();
    // The uid comes back once the job's processes and work directory are
    // gone (clean-up runs just after the end is published).
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        match e.manager.start("bob", &start_req("id", &["-u"])).await {
            Ok(started) => break started,
            Err(JobError::NoIdentity { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => panic!("the uid never came back: {err}"),
        }
    };
    assert!(!e
        .config
        .data_dir
        .join("work")
        .join(first.id.to_string())
        .exists());
    let info = e.manager.wait(second.id, None).await.unwrap();
    assert_eq!(e.read_output(info.id, OutputStream::Stdout), "690000\n");
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_job_leaves_in_its_home_neither_crashes_jwd_nor_reaches_the_next_tenant() {
    let Some(e) = engine_with("leftovers", |c| {
        c.job_uids = "690100-690100".parse().unwrap()
    }) else {
        return;
    };
    // Alice leaves a tree deeper than a recursive removal survives, marks
    // her home with an extended attribute and opens it to everyone.
    let mut alice = probe_job(&["nest", "setxattr"]);
    alice.command = "sh".into();
    alice.args = vec!["-c".into(), format!("chmod 777 ~ && {}", probe_command())];
    alice.env[0].value = "nest setxattr".into();
    let info = run_to_end(&e, alice).await;
    let out = e.read_output(info.id, OutputStream::Stdout);
    println!("[{}] alice: {out}", e.layout());
    let f = fields(&out);
    assert_eq!(f["nest"], "ok", "{out}");
    // "unsupported" where the filesystem keeps no user attributes (the
    // VM's RAM root): then there is nothing to leak.
    let marked = f["setxattr"].clone();
    assert!(marked == "ok" || marked == "unsupported", "{out}");
    // Bob gets the same uid (the range has one) once her leftovers are gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    let bob = loop {
        let mut req = probe_job(&["getxattr"]);
        req.command = "sh".into();
        req.args = vec![
            "-c".into(),
            format!(
                "echo mode=$(stat -c %a ~); echo entries=$(ls -A ~ | wc -l); {}",
                probe_command()
            ),
        ];
        match e.manager.start("bob", &req).await {
            Ok(started) => break started,
            Err(JobError::NoIdentity { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(err) => panic!("bob's job: {err}"),
        }
    };
    let info = e.manager.wait(bob.id, None).await.unwrap();
    let out = e.read_output(info.id, OutputStream::Stdout);
    println!("[{}] bob: {out}", e.layout());
    let f = fields(&out);
    assert_eq!(f["mode"], "700", "{out}");
    assert_eq!(f["entries"], "0", "{out}");
    let expected = if marked == "ok" {
        "none"
    } else {
        "unsupported"
    };
    assert_eq!(f["getxattr"], expected, "bob read alice's mark: {out}");
    e.assert_clean();
}
