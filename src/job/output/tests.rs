//! Tests of the output store, its readers and the serve path.

use super::*;
use std::os::fd::AsFd;

pub(super) type Chunks = Vec<(OutputStream, u64, Vec<u8>)>;

/// The keeper's writer and jwd's view of the same output, kept in step as
/// the keeper's progress messages keep them.
#[derive(Clone)]
pub(super) struct Writer {
    pub(super) store: Arc<Mutex<Store>>,
    pub(super) output: Arc<Output>,
}

impl Writer {
    pub(super) fn append(&self, which: OutputStream, bytes: &[u8]) {
        let mut store = self.store.lock().unwrap();
        store.append(which, bytes);
        self.output.publish(store.progress());
    }

    pub(super) fn close(&self) {
        self.output.close();
    }
}

/// A new job's output in `dir`, kept up to `cap` bytes.
pub(super) fn create(dir: &Path, cap: u64) -> (Arc<Output>, Writer) {
    let output = Output::live(dir);
    let mut store = Store::new(Store::open_dir(dir).unwrap(), cap, u64::MAX);
    store.no_time_steps();
    let writer = Writer {
        store: Arc::new(Mutex::new(store)),
        output: output.clone(),
    };
    (output, writer)
}

/// Everything `serve` yields in spans of at most `max` bytes, as jwd sends
/// it; and how many spans came from the mapping.
pub(super) async fn serve_all(serve: &mut Serve, max: u64) -> (Chunks, usize) {
    let (mut chunks, mut mapped) = (Vec::new(), 0);
    while let Some(span) = serve.next_span(max).await.unwrap() {
        let (read, map) = serve.fill(&span, Vec::new()).await.unwrap();
        let bytes = match map {
            Some(m) => {
                mapped += 1;
                assert!(read.is_empty(), "mapped spans leave the buffer alone");
                m.bytes().to_vec()
            }
            None => read,
        };
        assert_eq!(bytes.len() as u64, span.len);
        chunks.push((span.stream, span.offset, bytes));
    }
    (chunks, mapped)
}

/// Serves a finished output from the given offsets through both of jwd's
/// paths (the mapping for bytes in the page cache, io_uring reads for the
/// rest), checks they agree, and returns what they served.
fn drain(output: &Arc<Output>, stdout: Option<u64>, stderr: Option<u64>) -> Chunks {
    crate::uring::start(async {
        let mut main = Serve::new(output, stdout, stderr, false).unwrap();
        let (chunks, _) = serve_all(&mut main, 3).await;
        let mut read = Serve::new(output, stdout, stderr, false).unwrap();
        read.always_read();
        let (read_chunks, mapped) = serve_all(&mut read, 3).await;
        assert_eq!(mapped, 0, "always_read serves nothing from the mapping");
        assert_eq!(chunks, read_chunks);
        chunks
    })
}

pub(super) fn concat(chunks: &[(OutputStream, u64, Vec<u8>)], which: OutputStream) -> Vec<u8> {
    chunks
        .iter()
        .filter(|c| c.0 == which)
        .flat_map(|c| c.2.clone())
        .collect()
}

#[test]
fn both_streams_come_back_in_capture_order() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    writer.append(OutputStream::Stdout, b"out1\n");
    writer.append(OutputStream::Stdout, b"out2\n");
    writer.append(OutputStream::Stderr, b"err1\n");
    writer.append(OutputStream::Stdout, b"out3\n");
    writer.close();
    let chunks = drain(&output, Some(0), Some(0));
    // Merge consecutive chunks of one stream: the runs must alternate
    // exactly as they were written.
    let mut runs: Vec<(OutputStream, Vec<u8>)> = Vec::new();
    for (s, _, b) in chunks {
        match runs.last_mut() {
            Some((ls, lb)) if *ls == s => lb.extend(b),
            _ => runs.push((s, b)),
        }
    }
    assert_eq!(
        runs,
        vec![
            (OutputStream::Stdout, b"out1\nout2\n".to_vec()),
            (OutputStream::Stderr, b"err1\n".to_vec()),
            (OutputStream::Stdout, b"out3\n".to_vec()),
        ]
    );
    // Index: stdout run 10, stderr 5, stdout 5.
    assert_eq!(
        std::fs::metadata(dir.path().join(INDEX_FILE))
            .unwrap()
            .len(),
        12
    );
}

#[test]
fn offsets_skip_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    writer.append(OutputStream::Stdout, b"abcdef");
    writer.append(OutputStream::Stderr, b"ABCDEF");
    writer.append(OutputStream::Stdout, b"ghi");
    writer.close();
    let chunks = drain(&output, Some(4), Some(5));
    assert_eq!(concat(&chunks, OutputStream::Stdout), b"efghi");
    assert_eq!(concat(&chunks, OutputStream::Stderr), b"F");
    assert_eq!(chunks[0].1, 4);
    let only_err = drain(&output, None, Some(2));
    assert_eq!(concat(&only_err, OutputStream::Stderr), b"CDEF");
    let past_end = drain(&output, Some(100), None);
    assert!(past_end.is_empty());
}

#[test]
fn cap_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 8);
    writer.append(OutputStream::Stdout, b"12345");
    writer.append(OutputStream::Stderr, b"67890");
    writer.append(OutputStream::Stdout, b"xyz");
    writer.close();
    let info = output.info();
    assert_eq!(
        (info.stdout_bytes, info.stderr_bytes, info.dropped_bytes),
        (5, 3, 5)
    );
    let chunks = drain(&output, Some(0), Some(0));
    assert_eq!(concat(&chunks, OutputStream::Stderr), b"678");
}

/// A job that switches streams at every byte costs 28 bytes of index per
/// byte: the index stops at the cap too (its files stay within twice it).
#[test]
fn the_index_counts_toward_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 128 * 1024;
    let (output, writer) = create(dir.path(), cap);
    for i in 0..20_000 {
        let which = [OutputStream::Stdout, OutputStream::Stderr][i % 2];
        writer.append(which, b"x");
    }
    writer.close();
    let info = output.info();
    let kept = info.stdout_bytes + info.stderr_bytes;
    assert_eq!(kept + info.dropped_bytes, 20_000);
    assert!(info.dropped_bytes > 0, "the index's allowance ran out");
    let on_disk: u64 = [STDOUT_FILE, STDERR_FILE, INDEX_FILE, TIMES_FILE]
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
        .sum();
    assert!(
        on_disk <= 2 * cap + 28,
        "{on_disk} bytes on disk for a cap of {cap}"
    );
    assert!(kept > 100, "kept {kept}");
}

#[test]
fn the_keeper_keeps_what_it_was_granted_and_more_once_topped_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(Store::open_dir(dir.path()).unwrap(), 1 << 20, 6);
    store.append(OutputStream::Stdout, b"1234567890");
    let p = store.progress();
    assert_eq!((p.lens, p.dropped), ([6, 0], 4));
    store.grant(12);
    store.append(OutputStream::Stderr, b"abcdefghij");
    let p = store.progress();
    assert_eq!((p.lens, p.dropped), ([6, 6], 8));
    assert_eq!(
        std::fs::read(dir.path().join(STDOUT_FILE)).unwrap(),
        b"123456"
    );
    assert_eq!(
        std::fs::read(dir.path().join(STDERR_FILE)).unwrap(),
        b"abcdef"
    );
}

#[test]
fn files_exist_from_the_first_byte_and_readers_reopen_after_release() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    crate::uring::start(async {
        let mut serve = Serve::new(&output, Some(0), Some(0), true).unwrap();
        writer.append(OutputStream::Stderr, b"e");
        assert!(dir.path().join(STDERR_FILE).exists());
        assert!(dir.path().join(INDEX_FILE).exists());
        assert!(!dir.path().join(STDOUT_FILE).exists());
        let next = async |serve: &mut Serve| {
            let span = serve.next_span(16).await.unwrap().unwrap();
            let (read, mapped) = serve.fill(&span, Vec::new()).await.unwrap();
            (span.stream, mapped.map_or(read, |m| m.bytes().to_vec()))
        };
        assert_eq!(
            next(&mut serve).await,
            (OutputStream::Stderr, b"e".to_vec())
        );
        // What an idle follower does: let go of every mapping and file.
        serve.release();
        writer.append(OutputStream::Stdout, b"o");
        assert_eq!(
            next(&mut serve).await,
            (OutputStream::Stdout, b"o".to_vec())
        );
    });
}

#[test]
fn non_follow_reader_stops_at_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    writer.append(OutputStream::Stdout, b"before");
    crate::uring::start(async {
        let mut serve = Serve::new(&output, Some(0), None, false).unwrap();
        writer.append(OutputStream::Stdout, b"after");
        let (chunks, _) = serve_all(&mut serve, 3).await;
        assert_eq!(concat(&chunks, OutputStream::Stdout), b"before");
    });
}

#[test]
fn reopened_output_indexes_unindexed_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (_, writer) = create(dir.path(), 1 << 20);
    writer.append(OutputStream::Stdout, b"indexed");
    drop(writer);
    // As if the server died between a data write and its index write.
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.path().join(STDERR_FILE))
        .unwrap();
    f.write_all_at(b"tail", 0).unwrap();
    let output = Output::open_closed(dir.path(), 0).unwrap();
    let p = output.progress();
    assert!(p.closed);
    assert_eq!(p.lens, [7, 4]);
    let chunks = drain(&output, Some(0), Some(0));
    assert_eq!(concat(&chunks, OutputStream::Stdout), b"indexed");
    assert_eq!(concat(&chunks, OutputStream::Stderr), b"tail");
}

#[test]
fn follower_wakes_on_commit_and_ends_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    crate::uring::start(async {
        let mut serve = Serve::new(&output, Some(0), Some(0), true).unwrap();
        let w = writer.clone();
        let feeder = tokio::spawn(async move {
            for i in 0..50u8 {
                w.append(
                    if i % 2 == 0 {
                        OutputStream::Stdout
                    } else {
                        OutputStream::Stderr
                    },
                    &[i],
                );
                tokio::task::yield_now().await;
            }
            w.close();
        });
        let (chunks, _) = serve_all(&mut serve, 1024).await;
        let got: Vec<u8> = chunks.into_iter().flat_map(|c| c.2).collect();
        feeder.await.unwrap();
        assert_eq!(got, (0..50u8).collect::<Vec<_>>());
    });
}

#[test]
fn bytes_in_the_page_cache_are_served_from_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    writer.append(OutputStream::Stdout, &data);
    writer.close();
    crate::uring::start(async {
        // Just written: every page is in the page cache.
        let mut serve = Serve::new(&output, Some(0), None, false).unwrap();
        let (chunks, mapped) = serve_all(&mut serve, 64 * 1024).await;
        assert_eq!(mapped, chunks.len(), "every span from the mapping");
        assert_eq!(concat(&chunks, OutputStream::Stdout), data);
        // Evicted from the page cache (unmapped first: mapped pages stay):
        // read with io_uring instead.
        drop(serve);
        let file = std::fs::File::open(output.path(OutputStream::Stdout)).unwrap();
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let mut serve = Serve::new(&output, Some(0), None, false).unwrap();
        let (chunks, mapped) = serve_all(&mut serve, 64 * 1024).await;
        assert!(
            mapped < chunks.len(),
            "evicted pages are read, not faulted in"
        );
        assert_eq!(concat(&chunks, OutputStream::Stdout), data);
    });
}

/// Everything `data` (written into a pipe in pieces) becomes through the
/// keeper's move from the pipe, with the store's cap `cap`; `copy` forces
/// the read-and-pwrite path.
fn through_a_pipe(data: &[u8], cap: u64, copy: bool) -> (tempfile::TempDir, Progress) {
    let (dir, progress, copied) = through_a_pipe_with(data, cap, copy);
    assert_eq!(copied, copy, "the path taken");
    (dir, progress)
}

fn through_a_pipe_with(data: &[u8], cap: u64, copy: bool) -> (tempfile::TempDir, Progress, bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(Store::open_dir(dir.path()).unwrap(), cap, u64::MAX);
    if copy {
        store.copy_only();
    }
    let (read, write) = rustix::pipe::pipe().unwrap();
    rustix::io::ioctl_fionbio(&read, true).unwrap();
    let mut scratch = [0u8; 1000];
    for piece in data.chunks(48 * 1024) {
        let mut left = piece;
        while !left.is_empty() {
            let n = rustix::io::write(&write, left).unwrap();
            left = &left[n..];
            while let Moved::Bytes(_) = store
                .take_from(OutputStream::Stdout, read.as_fd(), &mut scratch)
                .unwrap()
            {}
        }
    }
    drop(write);
    while store
        .take_from(OutputStream::Stdout, read.as_fd(), &mut scratch)
        .unwrap()
        != Moved::End
    {}
    let copied = store.copies();
    (dir, store.progress(), copied)
}

#[test]
fn the_keeper_splices_and_copies_the_same_bytes() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    for copy in [false, true] {
        let (dir, p) = through_a_pipe(&data, 1 << 30, copy);
        assert_eq!(p.lens, [data.len() as u64, 0], "copy {copy}");
        assert_eq!(p.dropped, 0);
        assert_eq!(std::fs::read(dir.path().join(STDOUT_FILE)).unwrap(), data);
        let output = Output::open_closed(dir.path(), 0).unwrap();
        let chunks = drain(&output, Some(0), Some(0));
        assert_eq!(concat(&chunks, OutputStream::Stdout), data, "copy {copy}");
    }
}

#[test]
fn past_its_cap_the_keeper_drains_the_pipe_and_counts() {
    let data = vec![7u8; 200_000];
    for copy in [false, true] {
        let (dir, p) = through_a_pipe(&data, 70_000, copy);
        assert_eq!(p.lens, [70_000, 0], "copy {copy}");
        assert_eq!(p.dropped, 130_000, "copy {copy}");
        assert_eq!(
            std::fs::read(dir.path().join(STDOUT_FILE)).unwrap().len(),
            70_000
        );
    }
}
