//! A real full file system for tests: a small tmpfs mounted by the test
//! (root only; skipped with a printed reason otherwise), unmounted by path
//! when dropped, and a filler that leaves a chosen amount of space. Shared
//! by the log crate's `no_space` test and the host's `disk_full` test
//! (included there by path).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes the filler writes at a time.
const FILL_CHUNK_BYTES: usize = 64 << 10;

/// A mounted tmpfs; unmounted (by path) when dropped, even if the test
/// fails.
pub struct Mounted {
    path: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.path).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("could not unmount {}: {status:?}", self.path.display());
        }
    }
}

/// Mounts a tmpfs of `size_bytes` at `at`, or says why `test` is skipped.
pub fn mount_tmpfs(at: &Path, size_bytes: u64, test: &str) -> Option<Mounted> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED {test}: mounting a tmpfs needs root");
        return None;
    }
    let output = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}")])
        .arg("tmpfs")
        .arg(at)
        .output();
    match output {
        Ok(output) if output.status.success() => Some(Mounted {
            path: at.to_path_buf(),
        }),
        Ok(output) => {
            eprintln!(
                "SKIPPED {test}: mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            None
        }
        Err(error) => {
            eprintln!("SKIPPED {test}: cannot run mount: {error}");
            None
        }
    }
}

/// Bytes an unprivileged writer may still use on `path`'s file system.
pub fn free_bytes(path: &Path) -> u64 {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs writes into the zeroed struct we own.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) }, 0);
    stat.f_bavail * stat.f_frsize
}

/// Writes zeros to `path` until its file system (of `size_bytes`) has
/// `leave_bytes` left.
pub fn fill(path: &Path, leave_bytes: u64, size_bytes: u64) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; FILL_CHUNK_BYTES];
    // Bounded: the file system holds at most this many chunks.
    for _ in 0..(size_bytes / chunk.len() as u64) {
        if free_bytes(path.parent().unwrap()) <= leave_bytes + chunk.len() as u64 {
            break;
        }
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
}
