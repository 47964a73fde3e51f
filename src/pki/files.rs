//! The files of a PKI directory: new files (never overwritten), atomic
//! replacements (a temporary file in the directory, then a rename), and
//! the directory's lock.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{PkiError, LOCK_FILE};

/// The largest PKI file read (certificates, keys, the CRL, the record).
const MAX_FILE: u64 = 16 << 20;
/// How long a run waits for another's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// A file's mode: keys are the owner's only.
fn mode(secret: bool) -> u32 {
    if secret {
        0o600
    } else {
        0o644
    }
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a PKI file as text (at most 16 MiB).
pub(super) fn read_text(path: &Path) -> Result<String, PkiError> {
    let bytes = crate::settings_file::read_regular(path, MAX_FILE).map_err(|source| {
        if source.kind() == ErrorKind::InvalidData {
            PkiError::Invalid {
                path: path.to_path_buf(),
                reason: format!("larger than {} MiB", MAX_FILE >> 20),
            }
        } else {
            PkiError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    String::from_utf8(bytes).map_err(|_| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })
}

/// Writes a new file `dir/name`; keys get mode 0600. An existing file is
/// never overwritten.
pub(super) fn write_new(
    dir: &Path,
    name: &str,
    content: &str,
    secret: bool,
) -> Result<PathBuf, PkiError> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode(secret))
        .open(&path)
        .map_err(|source| {
            if source.kind() == ErrorKind::AlreadyExists {
                PkiError::Exists { path: path.clone() }
            } else {
                PkiError::Write {
                    path: path.clone(),
                    source,
                }
            }
        })?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error(&path))?;
    Ok(path)
}

/// Replaces (or makes) `dir/name` with `content` at once: readers see the
/// old file or the new, never a part. A key is 0600 from its creation.
pub(super) fn write_atomic(
    dir: &Path,
    name: &str,
    content: &str,
    secret: bool,
) -> Result<PathBuf, PkiError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.new"));
    // A temporary file a crashed run left could have another mode: a new one.
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(write_error(&temp)(e)),
        _ => {}
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode(secret))
            .open(&temp)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(write_error(&temp)(source));
    }
    std::fs::rename(&temp, &path).map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        write_error(&path)(source)
    })?;
    sync_dir(dir)?;
    Ok(path)
}

/// Appends `line` (and a newline) to `dir/name`, made 0644 if new.
pub(super) fn append_line(dir: &Path, name: &str, line: &str) -> Result<PathBuf, PkiError> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .open(&path)
        .map_err(write_error(&path))?;
    // A file whose last line has no newline (edited by hand, or an append
    // cut short) would get this line glued to it: both unreadable, and
    // every later revocation refused.
    let len = file.metadata().map_err(write_error(&path))?.len();
    let mut last = [b'\n'];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1)
            .map_err(write_error(&path))?;
    }
    let start = if last[0] == b'\n' { "" } else { "\n" };
    file.write_all(format!("{start}{line}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(write_error(&path))?;
    Ok(path)
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error(dir))
}

/// The exclusive lock of a PKI directory, held while it lives.
pub(super) struct DirLock {
    _file: File,
}

/// Takes the lock of the PKI directory `dir`, waiting up to a minute for
/// another `jw certs` run to finish.
pub(super) fn lock(dir: &Path) -> Result<DirLock, PkiError> {
    use rustix::fs::{flock, FlockOperation};
    let path = dir.join(LOCK_FILE);
    let lock_error = |source| PkiError::Lock {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(lock_error)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(DirLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(lock_error(e.into())),
        }
        if Instant::now() >= deadline {
            return Err(lock_error(std::io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "another jw certs run has held it for over {} s; wait for it or end it",
                    LOCK_WAIT.as_secs()
                ),
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
