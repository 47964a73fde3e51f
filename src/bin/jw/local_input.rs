//! jw's own stdin, read in a thread of its own: a blocking read that may
//! never return (a terminal nobody types into) must not keep jw from
//! ending when the job does. Chunks go through a channel of one, so at
//! most a few chunks are in memory whatever the pace of the job. The
//! thread also spots the detach keys, as soon as they are typed.

use std::io::Read as _;

use tokio::sync::{mpsc, oneshot};

use crate::detach::{DetachKeys, Matcher};
use crate::failure::Failure;

/// The most bytes read at once.
const CHUNK: usize = 64 * 1024;

/// What the thread read.
pub(crate) enum Read {
    /// Bytes for the job.
    Data(Vec<u8>),
    /// The end of stdin.
    End,
    /// stdin could not be read.
    Failed(std::io::Error),
}

/// The thread's two outputs: what it read, and a message when the user
/// typed the detach keys (after which it sends nothing more).
pub(crate) struct LocalInput {
    pub(crate) chunks: mpsc::Receiver<Read>,
    pub(crate) detach: oneshot::Receiver<()>,
}

/// Starts reading stdin; `keys`: the detach keys to spot (`None`: stdin
/// is not a raw terminal, nothing to spot).
pub(crate) fn read_stdin(keys: Option<DetachKeys>) -> Result<LocalInput, Failure> {
    let (chunks_tx, chunks) = mpsc::channel(1);
    let (detach_tx, detach) = oneshot::channel();
    std::thread::Builder::new()
        .name("jw-stdin".into())
        .spawn(move || read_loop(keys.map(|k| Matcher::new(&k)), chunks_tx, detach_tx))
        .map_err(|e| Failure::new(format!("cannot start reading stdin: {e}")))?;
    Ok(LocalInput { chunks, detach })
}

fn read_loop(
    mut matcher: Option<Matcher>,
    chunks: mpsc::Sender<Read>,
    detach: oneshot::Sender<()>,
) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; CHUNK];
    // Once nobody takes the chunks (the input is closed), the thread goes
    // on only to spot the detach keys.
    let mut forwarding = true;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = chunks.blocking_send(Read::Failed(e));
                return;
            }
        };
        if n == 0 {
            let mut rest = Vec::new();
            if let Some(m) = matcher.as_mut() {
                m.flush(&mut rest);
            }
            if !rest.is_empty() {
                let _ = chunks.blocking_send(Read::Data(rest));
            }
            let _ = chunks.blocking_send(Read::End);
            return;
        }
        let mut out = Vec::with_capacity(n);
        let detached = match matcher.as_mut() {
            Some(m) => m.feed(&buf[..n], &mut out),
            None => {
                out.extend_from_slice(&buf[..n]);
                false
            }
        };
        if forwarding && !out.is_empty() && chunks.blocking_send(Read::Data(out)).is_err() {
            forwarding = false;
            if matcher.is_none() {
                return;
            }
        }
        if detached {
            let _ = detach.send(());
            return;
        }
    }
}
