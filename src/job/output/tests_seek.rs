//! Tests of the time index and of where readers begin: the last lines,
//! a time, and dated spans.

use super::tests::{concat, create, serve_all, Chunks, Writer};
use super::times::{RunTime, TIME_RECORD, TIME_STEP_US};
use super::*;

const OUT: OutputStream = OutputStream::Stdout;
const ERR: OutputStream = OutputStream::Stderr;

/// The time records of a job directory.
fn times_of(dir: &Path) -> Vec<RunTime> {
    let bytes = std::fs::read(dir.join(TIMES_FILE)).unwrap();
    bytes
        .chunks_exact(TIME_RECORD as usize)
        .map(RunTime::decode)
        .collect()
}

/// What a reader of `stdout`/`stderr` serves after `seek` placed it.
fn served<F>(output: &Arc<Output>, both: bool, follow: bool, seek: F) -> std::io::Result<Chunks>
where
    F: AsyncFnOnce(&mut Serve) -> std::io::Result<Begin>,
{
    crate::uring::start(async {
        let mut serve = Serve::new(output, Some(0), both.then_some(0), follow)?;
        let begin = seek(&mut serve).await?;
        serve.begin(&begin);
        Ok(serve_all(&mut serve, 3).await.0)
    })
}

/// The bytes served, both streams, in the order served.
fn text(chunks: &Chunks) -> String {
    chunks
        .iter()
        .map(|c| String::from_utf8_lossy(&c.2).into_owned())
        .collect()
}

/// Four lines over both streams, in runs that alternate.
fn interleaved(dir: &Path) -> (Arc<Output>, Writer) {
    let (output, writer) = create(dir, 1 << 20);
    writer.append(OUT, b"1-out\n2-out\n");
    writer.append(ERR, b"3-err\n");
    writer.append(OUT, b"4-out\n5-");
    writer.append(ERR, b"6-err\n");
    writer.append(OUT, b"out\n");
    (output, writer)
}

#[test]
fn every_run_has_its_time_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let (_, writer) = interleaved(dir.path());
    let times = times_of(dir.path());
    let bases: Vec<[u64; 2]> = times.iter().map(|t| t.base).collect();
    assert_eq!(bases, [[0, 0], [12, 0], [12, 6], [20, 6], [20, 12]]);
    assert!(times.windows(2).all(|w| w[0].time_us <= w[1].time_us));
    let index = std::fs::metadata(dir.path().join(INDEX_FILE))
        .unwrap()
        .len();
    assert_eq!(index / RECORD, times.len() as u64);
    drop(writer);
}

#[test]
fn a_run_that_goes_on_gets_a_new_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::new(Store::open_dir(dir.path()).unwrap(), 1 << 20, u64::MAX);
    store.append(OUT, b"a");
    store.append(OUT, b"b");
    // Sleeping guarantees at least this long has passed.
    std::thread::sleep(std::time::Duration::from_micros(2 * TIME_STEP_US));
    store.append(OUT, b"c");
    let times = times_of(dir.path());
    let last = times.last().unwrap();
    assert_eq!(last.base, [2, 0], "c begins a run of its own");
    assert!(last.time_us >= times[0].time_us + TIME_STEP_US);
}

#[test]
fn the_tail_is_the_last_lines_in_capture_order() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = interleaved(dir.path());
    writer.close();
    let tail = |n: u64, both: bool| {
        text(&served(&output, both, false, async |s| s.tail(n).await).unwrap())
    };
    // Lines in capture order: the fifth is "5-6-err" (its parts came
    // from the two streams).
    assert_eq!(tail(2, true), "5-6-err\nout\n");
    assert_eq!(tail(3, true), "4-out\n5-6-err\nout\n");
    assert_eq!(tail(1, false), "5-out\n");
    assert_eq!(tail(2, false), "4-out\n5-out\n");
    assert_eq!(tail(0, true), "");
    let all = "1-out\n2-out\n3-err\n4-out\n5-6-err\nout\n";
    assert_eq!(tail(100, true), all);
}

#[test]
fn a_last_line_without_newline_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    writer.append(OUT, b"a\nb\nc");
    writer.close();
    let chunks = served(&output, true, false, async |s| s.tail(2).await).unwrap();
    assert_eq!(text(&chunks), "b\nc");
}

#[test]
fn the_tail_of_long_lines_spans_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 30);
    let long = vec![b'x'; 150_000];
    for _ in 0..3 {
        writer.append(OUT, &long);
        writer.append(ERR, b"\n");
    }
    writer.close();
    let chunks = served(&output, true, false, async |s| s.tail(2).await).unwrap();
    assert_eq!(concat(&chunks, OUT).len(), 300_000);
    assert_eq!(concat(&chunks, ERR), b"\n\n");
    assert_eq!(chunks[0].1, 150_000, "begins at the second long line");
}

#[test]
fn a_tail_stops_at_the_snapshot_though_the_last_run_grew() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    writer.append(ERR, b"e\n");
    writer.append(OUT, b"a\nb\n");
    let chunks = crate::uring::start(async {
        let mut serve = Serve::new(&output, Some(0), Some(0), false).unwrap();
        // The last run grows after the reader took its snapshot.
        writer.append(OUT, b"c\nd\n");
        let begin = serve.tail(2).await.unwrap();
        serve.begin(&begin);
        serve_all(&mut serve, 64).await.0
    });
    assert_eq!(text(&chunks), "a\nb\n");
}

#[test]
fn a_follower_from_the_tail_gets_what_comes_next() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    writer.append(OUT, b"a\nb\nc\n");
    let chunks = crate::uring::start(async {
        let mut serve = Serve::new(&output, Some(0), Some(0), true).unwrap();
        let begin = serve.tail(1).await.unwrap();
        serve.begin(&begin);
        writer.append(OUT, b"d\n");
        writer.append(ERR, b"e\n");
        writer.close();
        serve_all(&mut serve, 64).await.0
    });
    assert_eq!(text(&chunks), "c\nd\ne\n");
}

#[test]
fn since_begins_at_the_first_run_at_or_after_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = interleaved(dir.path());
    writer.close();
    let times = times_of(dir.path());
    let runs = ["1-out\n2-out\n", "3-err\n", "4-out\n5-", "6-err\n", "out\n"];
    for (k, t) in times.iter().enumerate() {
        let since = t.time_us;
        let first = times.iter().position(|t| t.time_us >= since).unwrap();
        assert!(first <= k);
        let chunks = served(&output, true, false, async |s| s.since(since).await).unwrap();
        assert_eq!(text(&chunks), runs[first..].concat(), "since run {k}");
    }
    let after = times.last().unwrap().time_us + 1;
    let chunks = served(&output, true, false, async |s| s.since(after).await).unwrap();
    assert!(chunks.is_empty(), "nothing since");
    // With the tail: the later beginning.
    let chunks = served(&output, true, false, async |s| {
        let tail = s.tail(100).await?;
        Ok(tail.later(s.since(times[3].time_us).await?))
    })
    .unwrap();
    assert!(text(&chunks).ends_with("6-err\nout\n"));
}

#[test]
fn a_follower_since_a_later_time_skips_what_comes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 20);
    writer.append(OUT, b"before\n");
    let chunks = crate::uring::start(async {
        let mut serve = Serve::new(&output, Some(0), Some(0), true).unwrap();
        // A day from now: nothing written in this test is captured at or
        // after it.
        let since = super::times::now_us() + 86_400_000_000;
        let begin = serve.since(since).await.unwrap();
        serve.begin(&begin);
        writer.append(OUT, b"later\n");
        writer.append(ERR, b"still before\n");
        writer.close();
        serve_all(&mut serve, 64).await.0
    });
    assert_eq!(text(&chunks), "", "all of it was captured before the time");
}

#[test]
fn dated_spans_carry_the_time_of_their_run() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = interleaved(dir.path());
    writer.close();
    let times = times_of(dir.path());
    for both in [true, false] {
        let dated: Vec<(OutputStream, u64, u64)> = crate::uring::start(async {
            let mut serve = Serve::new(&output, Some(0), both.then_some(0), false).unwrap();
            serve.timestamps();
            let mut dated = Vec::new();
            while let Some(span) = serve.next_span(3).await.unwrap() {
                if let Some(t) = span.time_us {
                    dated.push((span.stream, span.offset, t));
                }
            }
            dated
        });
        let runs = [(OUT, 0), (ERR, 0), (OUT, 12), (ERR, 6), (OUT, 20)];
        let want: Vec<(OutputStream, u64, u64)> = runs
            .iter()
            .zip(&times)
            .filter(|((s, _), _)| both || *s == OUT)
            .map(|((s, o), t)| (*s, *o, t.time_us))
            .collect();
        assert_eq!(dated, want, "both {both}");
    }
}

#[test]
fn output_without_times_is_read_but_not_searched_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = interleaved(dir.path());
    writer.close();
    // As a keeper older than the time index leaves it.
    std::fs::remove_file(dir.path().join(TIMES_FILE)).unwrap();
    let output = Output::open_closed(output.dir(), 0).unwrap();
    let err = served(&output, true, false, async |s| s.since(0).await).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("--since"), "{err}");
    let checked = crate::uring::start(async {
        let mut serve = Serve::new(&output, Some(0), Some(0), false).unwrap();
        serve.check_times().await
    });
    assert!(checked.is_err());
    let chunks = served(&output, true, false, async |s| s.tail(2).await).unwrap();
    assert_eq!(text(&chunks), "5-6-err\nout\n");
}

#[test]
fn runs_a_crash_left_without_times_are_read_from_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let (_, writer) = create(dir.path(), 1 << 20);
    writer.append(OUT, b"a\n");
    writer.append(ERR, b"b\n");
    drop(writer);
    // Bytes written, not indexed (a crash): indexed at reopening, undated.
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(STDOUT_FILE))
        .unwrap();
    f.write_all_at(b"c\nd\n", 0).unwrap();
    let output = Output::open_closed(dir.path(), 0).unwrap();
    let chunks = served(&output, true, false, async |s| s.tail(1).await).unwrap();
    assert_eq!(text(&chunks), "d\n");
    let late = times_of(dir.path()).last().unwrap().time_us + 1;
    let chunks = served(&output, true, false, async |s| s.since(late).await).unwrap();
    assert_eq!(text(&chunks), "c\nd\n", "undated runs may be later: read");
}

/// A reader of one stream of an output in many tiny runs walks the index
/// a bounded stretch at a time, giving its thread back in between, and
/// still serves every byte of its stream in order.
#[test]
fn a_long_walk_of_the_index_gives_the_thread_back() {
    let dir = tempfile::tempdir().unwrap();
    let (output, writer) = create(dir.path(), 1 << 30);
    // 40,000 runs: stdout and stderr in turn, then a last stderr run.
    for _ in 0..20_000 {
        writer.append(OUT, b"o");
        writer.append(ERR, b"e");
    }
    writer.append(OUT, b"o");
    writer.append(ERR, b"END");
    writer.close();
    // stderr from its last run: 40,000 records to walk before it.
    let mut reader = output.reader(None, Some(20_000), false).unwrap();
    reader.timestamps();
    let p = *reader.rx.borrow();
    let mut stretches = 0;
    let span = loop {
        if let Some(span) = reader.try_span(&p, 1 << 20).unwrap() {
            break span;
        }
        assert!(
            std::mem::take(&mut reader.walked_far),
            "not caught up, so the walk stopped at its bound"
        );
        stretches += 1;
    };
    assert!(stretches >= 2, "40,000 records in stretches: {stretches}");
    assert_eq!((span.stream, span.offset, span.len), (ERR, 20_000, 3));
    // And through the async path, which yields between stretches.
    let all = crate::uring::start(async {
        let mut serve = Serve::new(&output, None, Some(19_990), false).unwrap();
        serve.timestamps();
        serve_all(&mut serve, 64).await.0
    });
    assert_eq!(text(&all), "eeeeeeeeeeEND");
}
