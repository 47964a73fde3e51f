//! Build script: the commit the binaries were built from, for `--version`
//! (`jw 0.1.0 (abc1234)`); "unknown" outside a git checkout.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!(
        "cargo:rustc-env=JW_VERSION={} ({commit})",
        env!("CARGO_PKG_VERSION")
    );
    // A new commit or a checkout of another branch changes HEAD or the ref
    // it points to; a worktree's HEAD lives in its own git directory.
    if let Some(git_dir) = git_path("--git-dir") {
        watch(&git_dir.join("HEAD"));
        if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
            if let Some(reference) = head.trim().strip_prefix("ref: ") {
                let common = git_path("--git-common-dir").unwrap_or(git_dir.clone());
                watch(&common.join(reference));
                watch(&common.join("packed-refs"));
            }
        }
    }
}

/// A directory git reports with `git rev-parse FLAG`.
fn git_path(flag: &str) -> Option<std::path::PathBuf> {
    let out = Command::new("git")
        .args(["rev-parse", flag])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let path = String::from_utf8(out.stdout).ok()?;
    Some(Path::new(path.trim()).to_path_buf())
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
