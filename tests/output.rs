//! The output store with real jobs: many readers, capture order, follow,
//! the output cap, a full disk, and a crashed server's jobs after restart.
//! Needs root (the jobs run in cgroups).

mod common;

use std::time::Duration;

use common::{engine, engine_with, require_root, run_to_end, start_req};
use jw::job::output::Serve;
use jw::job::Manager;
use jw::protocol::{JobState, OutputStream};

/// Serves everything a reader yields the way jwd does (`Serve` on an
/// io_uring runtime: mapped when resident, else io_uring reads), sleeping
/// `pause` between spans.
async fn read_all(
    output: &std::sync::Arc<jw::job::output::Output>,
    stdout: Option<u64>,
    stderr: Option<u64>,
    follow: bool,
    span: u64,
    pause: Duration,
) -> Vec<(OutputStream, u64, Vec<u8>)> {
    let output = output.clone();
    tokio::task::spawn_blocking(move || {
        jw::uring::start(async move {
            let mut serve = Serve::new(&output, stdout, stderr, follow).unwrap();
            let mut chunks = Vec::new();
            while let Some(s) = serve.next_span(span).await.unwrap() {
                let (read, mapped) = serve.fill(&s, Vec::new()).await.unwrap();
                let bytes = mapped.map_or(read, |m| m.bytes().to_vec());
                chunks.push((s.stream, s.offset, bytes));
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            // The end is final: asking again yields nothing, at once.
            assert_eq!(serve.next_span(span).await.unwrap(), None);
            chunks
        })
    })
    .await
    .unwrap()
}

fn bytes_of(chunks: &[(OutputStream, u64, Vec<u8>)], which: OutputStream) -> Vec<u8> {
    let mut next = None;
    let mut out = Vec::new();
    for (s, off, b) in chunks.iter().filter(|c| c.0 == which) {
        if let Some(n) = next {
            assert_eq!(*off, n, "chunks must not skip or overlap");
        }
        next = Some(off + b.len() as u64);
        out.extend_from_slice(b);
        let _ = s;
    }
    out
}

fn seq_text(n: u32) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_followers_at_different_offsets_and_paces_get_exact_bytes() {
    let Some(e) = engine("readers") else { return };
    // About 1.3 MB, written over a second or so, in many small writes.
    let started = e
        .manager
        .start(
            "alice",
            &start_req(
                "sh",
                &[
                    "-c",
                    "seq 1 100000 | while read a; do echo $a; done; seq 100001 200000",
                ],
            ),
        )
        .await
        .unwrap();
    let job = e.manager.get(started.id, None).unwrap();
    let expected = seq_text(200_000);
    let mut readers = Vec::new();
    for (i, from) in [0u64, 0, 1, 7, 1000, 65_536, 500_000, 1_200_000]
        .into_iter()
        .enumerate()
    {
        let output = job.output().clone();
        // Slow readers: small spans, or pauses between big ones.
        let span = [4096u64, 100, 65_536, 1000][i % 4];
        let pause = if i % 4 == 0 {
            Duration::from_millis(1)
        } else {
            Duration::ZERO
        };
        readers.push(tokio::spawn(async move {
            (
                from,
                read_all(&output, Some(from), None, true, span, pause).await,
            )
        }));
    }
    let info = job.wait().await;
    assert_eq!(info.exit_code, Some(0));
    for r in readers {
        let (from, chunks) = r.await.unwrap();
        let got = bytes_of(&chunks, OutputStream::Stdout);
        assert!(
            got == expected[from as usize..],
            "reader from {from}: {} bytes, expected {}",
            got.len(),
            expected.len() - from as usize
        );
    }
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_streams_keep_the_order_the_job_wrote() {
    let Some(e) = engine("order") else { return };
    // The init reads stdout and stderr from two pipes: writes to both that
    // it has not read yet have no order between them (issue 16 makes the
    // order part of each write). The pauses keep the writes apart by far
    // more than a loaded host delays the init.
    let script = "for i in $(seq 1 10); do echo out$i; sleep 0.1; echo err$i >&2; sleep 0.1; done";
    let started = e
        .manager
        .start("alice", &start_req("sh", &["-c", script]))
        .await
        .unwrap();
    let job = e.manager.get(started.id, None).unwrap();
    let follower = {
        let output = job.output().clone();
        tokio::spawn(async move {
            read_all(&output, Some(0), Some(0), true, 1 << 20, Duration::ZERO).await
        })
    };
    job.wait().await;
    let after = read_all(job.output(), Some(0), Some(0), false, 3, Duration::ZERO).await;
    for chunks in [follower.await.unwrap(), after] {
        let mut text = String::new();
        for (_, _, b) in &chunks {
            text.push_str(std::str::from_utf8(b).unwrap());
        }
        let expected: String = (1..=10).map(|i| format!("out{i}\nerr{i}\n")).collect();
        assert_eq!(text, expected);
    }
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ends_once_after_the_last_byte() {
    let Some(e) = engine("followend") else { return };
    let started = e
        .manager
        .start(
            "alice",
            &start_req(
                "sh",
                &["-c", "echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c"],
            ),
        )
        .await
        .unwrap();
    let job = e.manager.get(started.id, None).unwrap();
    let chunks = read_all(job.output(), Some(0), Some(0), true, 1024, Duration::ZERO).await;
    let got: Vec<u8> = chunks.into_iter().flat_map(|c| c.2).collect();
    assert_eq!(got, b"a\nb\nc\n");
    let info = job.wait().await;
    assert_eq!(info.state, JobState::Exited);
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_cap_drops_the_rest_and_the_job_runs_on() {
    let Some(e) = engine("cap") else { return };
    let mut req = start_req(
        "sh",
        &["-c", "head -c 1048576 /dev/zero; echo done >&2; exit 4"],
    );
    req.limits.output_bytes = Some(65_536);
    let info = run_to_end(&e, req).await;
    assert_eq!(info.exit_code, Some(4), "the job kept running past the cap");
    assert_eq!(info.output.stdout_bytes + info.output.stderr_bytes, 65_536);
    assert_eq!(info.output.dropped_bytes, 1_048_576 + 5 - 65_536);
    e.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_drops_output_and_the_server_keeps_serving() {
    if !require_root("full_disk") {
        return;
    }
    let mount = tempfile::tempdir().unwrap();
    let target = mount.path().to_str().unwrap().to_string();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "jwtest-enospc", &target])
        .status()
        .unwrap();
    assert!(status.success(), "cannot mount a tmpfs");
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(target.clone());
    {
        let e = engine_with("enospc", |c| c.data_dir = target.clone().into()).unwrap();
        let info = run_to_end(
            &e,
            start_req("sh", &["-c", "head -c 2097152 /dev/zero; exit 0"]),
        )
        .await;
        assert_eq!(info.exit_code, Some(0));
        assert!(info.output.dropped_bytes > 0, "{:?}", info.output);
        assert!(info.output.stdout_bytes < 2_097_152);
        assert_eq!(
            info.output.stdout_bytes + info.output.dropped_bytes,
            2_097_152
        );
        // What was kept is readable and exact.
        let kept = std::fs::read(e.manager.output_path(info.id, OutputStream::Stdout)).unwrap();
        assert!(kept.len() as u64 >= info.output.stdout_bytes);
        // The engine still serves: status, list, and removing to make room.
        assert_eq!(e.manager.status(info.id, None).unwrap().output, info.output);
        e.manager.remove(info.id, None).await.unwrap();
        let info = run_to_end(&e, start_req("echo", &["fits"])).await;
        assert_eq!(e.read_output(info.id, OutputStream::Stdout), "fits\n");
        e.assert_clean();
    }
}

/// A server that dies (its runtime and tasks gone, as with SIGKILL) and a
/// new one on the same data directory: finished jobs keep status and
/// output; the job that was running is adopted from its keeper, its output
/// so far readable, and it can be stopped.
#[test]
fn restart_keeps_finished_jobs_and_adopts_running_ones() {
    let Some(e) = engine("restart") else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (done, running) = rt.block_on(async {
        let done = run_to_end(
            &e,
            start_req("sh", &["-c", "echo finished; echo oops >&2; exit 5"]),
        )
        .await;
        let running = e
            .manager
            .start(
                "bob",
                &start_req("sh", &["-c", "echo partial; exec sleep 1000"]),
            )
            .await
            .unwrap();
        while e.read_output(running.id, OutputStream::Stdout) != "partial\n" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (done, running.id)
    });
    rt.shutdown_background();

    e.manager.release_as_if_crashed();
    let again = Manager::new(e.config.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let list = again.list(None).await;
        assert_eq!(list.len(), 2);
        let d = again.status(done.id, None).unwrap();
        assert_eq!(
            (d.state, d.exit_code, d.owner.as_str()),
            (JobState::Exited, Some(5), "alice")
        );
        assert_eq!(d.output, done.output);
        let job = again.get(done.id, None).unwrap();
        let chunks = read_all(job.output(), Some(0), Some(0), true, 4096, Duration::ZERO).await;
        assert_eq!(bytes_of(&chunks, OutputStream::Stdout), b"finished\n");
        assert_eq!(bytes_of(&chunks, OutputStream::Stderr), b"oops\n");

        // Its keeper kept it while no engine was there: adopted, its
        // output read from what the keeper wrote, stopped like any job.
        again.resume();
        let r = again.status(running, Some("bob")).unwrap();
        assert_eq!(r.state, JobState::Running, "{r:?}");
        let job = again.get(running, None).unwrap();
        let chunks = read_all(job.output(), Some(0), None, false, 4096, Duration::ZERO).await;
        assert_eq!(bytes_of(&chunks, OutputStream::Stdout), b"partial\n");
        let stopped = again.stop(running, None, Duration::ZERO).await.unwrap();
        assert_eq!(stopped.signal, Some(libc::SIGKILL), "{stopped:?}");
        let chunks = read_all(job.output(), Some(0), None, true, 4096, Duration::ZERO).await;
        assert_eq!(bytes_of(&chunks, OutputStream::Stdout), b"partial\n");
        assert!(
            again.cgroups().job_dirs().is_empty(),
            "the adopted job's cgroups were not removed"
        );
        again.remove(running, None).await.unwrap();
    });
}
