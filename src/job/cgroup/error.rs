//! The one error type of the cgroup code: every failure names the file and
//! the operation, which is what an operator needs to fix a broken setup.

use std::path::{Path, PathBuf};

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {op} {path}: {source}{hint}")]
    Io {
        op: String,
        path: PathBuf,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("unsupported cgroup layout: {0}")]
    Unsupported(String),
}

impl CgroupError {
    pub(super) fn io(op: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        let hint = match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                " (jwd must run as root with a writable cgroup filesystem)"
            }
            _ => "",
        };
        CgroupError::Io {
            op: op.into(),
            path: path.to_path_buf(),
            source,
            hint,
        }
    }
}
