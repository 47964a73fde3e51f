//! The one place tokio-uring is named. jwd's runtimes are tokio-uring
//! runtimes (a tokio current-thread runtime driving an io_uring); the
//! server's sockets and the engine's output reads go through here. The
//! owned-buffer I/O, which is tokio-uring's own API, is only called here;
//! elsewhere the crate uses the socket types' std-like methods (accept,
//! shutdown, set_nodelay). tokio-uring is little maintained: replacing it
//! starts in this file.

use std::future::Future;
use std::path::Path;

use tokio_uring::buf::BoundedBuf;

pub use tokio_uring::net::{TcpListener, TcpStream};

/// Runs `future` on a new io_uring runtime on this thread until it
/// completes.
pub fn start<F: Future>(future: F) -> F::Output {
    tokio_uring::start(future)
}

/// Spawns a task on the current io_uring runtime (the task may hold `!Send`
/// state; it runs on this thread).
pub fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio_uring::spawn(task)
}

/// One read from `tcp` into `buf` (from its start, up to its length): how
/// many bytes came (0 at the end of the stream), and the buffer back.
pub async fn read_some(tcp: &TcpStream, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    tcp.read(buf).await
}

/// One write of `buf[from..]` to `tcp`: how many bytes went, and the
/// buffer back.
pub async fn write_some(
    tcp: &TcpStream,
    buf: Vec<u8>,
    from: usize,
) -> (std::io::Result<usize>, Vec<u8>) {
    let (result, slice) = tcp.write(buf.slice(from..)).submit().await;
    (result, slice.into_inner())
}

/// A file read with io_uring.
pub struct File(tokio_uring::fs::File);

impl File {
    /// Opens `path` read-only.
    pub async fn open(path: &Path) -> std::io::Result<File> {
        tokio_uring::fs::File::open(path).await.map(File)
    }

    /// Appends `len` bytes of the file from `offset` to `buf`, reading
    /// straight into its spare capacity (short reads are continued). A
    /// file that ends first is an error.
    pub async fn read_exact_at(
        &self,
        offset: u64,
        len: usize,
        mut buf: Vec<u8>,
    ) -> std::io::Result<Vec<u8>> {
        let end = buf.len() + len;
        buf.reserve_exact(len);
        let mut pos = offset;
        while buf.len() < end {
            let before = buf.len();
            // tokio-uring reads into the vector's spare capacity, up to its
            // capacity: cap it at the span's end.
            let (result, slice) = self.0.read_at(buf.slice(before..end), pos).await;
            buf = slice.into_inner();
            let n = result?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than the bytes asked for",
                ));
            }
            pos += n as u64;
        }
        Ok(buf)
    }
}
