//! The few file-system operations durability rests on, in one place so that
//! each is done the same careful way everywhere: fdatasync with failure
//! injection for tests, directory fsync after every create/rename/delete,
//! atomic file replacement, the directory lock, and `.broken` side copies.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use crate::LogError;

/// Fault injection for fdatasync. In production nothing ever sets it, and
/// the check costs one relaxed atomic load per sync.
///
/// An injected failure models what Linux does with a writeback error
/// (since 4.13, `errseq_t`): the error is recorded once for the file, and
/// the next fdatasync through *every* open file description reports it,
/// once per description. That matters because the log syncs through
/// several descriptors at once (see `writer`): a fault that failed only
/// one of two overlapping syncs would let the other acknowledge data the
/// failure covered, which a real kernel would not.
#[derive(Debug, Default)]
pub(crate) struct SyncFaults {
    failures_left: AtomicU32,
    errno: AtomicI32,
    /// Failures raised so far.
    raised: AtomicU32,
    /// Per descriptor: the failures it has already reported.
    reported: Mutex<Vec<(RawFd, u32)>>,
    /// Segment writes still to fail with ENOSPC after writing half their
    /// bytes for real (see `take_write_no_space`).
    write_no_space_left: AtomicU32,
}

impl SyncFaults {
    /// Makes the next `count` fdatasync calls raise `errno`, each of which
    /// every descriptor then reports once.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn arm(&self, count: u32, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
        self.failures_left.store(count, Ordering::SeqCst);
    }

    /// Makes the next `count` segment writes land half their bytes and
    /// then fail with ENOSPC, as a file system that fills up mid-write does.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn arm_write_no_space(&self, count: u32) {
        self.write_no_space_left.store(count, Ordering::SeqCst);
    }

    /// True if this segment write is to fail with ENOSPC (see
    /// `arm_write_no_space`). One relaxed load when nothing is armed.
    pub(crate) fn take_write_no_space(&self) -> bool {
        self.write_no_space_left.load(Ordering::Relaxed) > 0
            && self
                .write_no_space_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
    }

    fn take_failure(&self, file: &File) -> Option<std::io::Error> {
        if self.failures_left.load(Ordering::Relaxed) == 0
            && self.raised.load(Ordering::Relaxed) == 0
        {
            return None;
        }
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let taken = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
        if taken.is_ok() {
            self.raised.fetch_add(1, Ordering::SeqCst);
        }
        let raised = self.raised.load(Ordering::SeqCst);
        let fd = file.as_raw_fd();
        let position = match reported.iter().position(|&(known, _)| known == fd) {
            Some(position) => position,
            None => {
                reported.push((fd, 0));
                reported.len() - 1
            }
        };
        if reported[position].1 == raised {
            return None;
        }
        reported[position].1 = raised;
        Some(std::io::Error::from_raw_os_error(
            self.errno.load(Ordering::SeqCst),
        ))
    }
}

/// fdatasync: flushes the file's data and the metadata needed to read it
/// back (its size), not its timestamps. An injected fault still performs
/// the real sync first, so the test exercises the real path and only the
/// verdict is forged, exactly like a kernel that lost a page behind our back.
pub(crate) fn sync_data(file: &File, faults: &SyncFaults) -> std::io::Result<()> {
    file.sync_data()?;
    match faults.take_failure(file) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// fsync of a directory, which makes creates, renames and deletes of its
/// entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let handle = File::open(dir).map_err(|e| LogError::io("open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Writes `bytes` to `path` so that after a crash the file is either absent
/// (or its previous version) or complete: temp file, fdatasync, rename,
/// directory fsync.
pub(crate) fn write_file_atomically(
    path: &Path,
    bytes: &[u8],
    faults: &SyncFaults,
) -> Result<(), LogError> {
    let temp = temp_path_for(path);
    let written = write_synced(&temp, bytes, faults).and_then(|()| {
        fs::rename(&temp, path).map_err(|e| LogError::io("rename into place", path, e))
    });
    if let Err(error) = written {
        // A full disk must not keep a half-written temp file's space.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir)
}

fn write_synced(temp: &Path, bytes: &[u8], faults: &SyncFaults) -> Result<(), LogError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(|e| LogError::io("create", temp, e))?;
    file.write_all(bytes)
        .map_err(|e| LogError::io("write", temp, e))?;
    sync_data(&file, faults).map_err(|e| LogError::io("fdatasync", temp, e))
}

/// Suffix of files that are written and then renamed into place; any left
/// over at open time are crash debris and are deleted.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

pub(crate) fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// Picks a free name `<path>.broken`, `<path>.broken.1`, ... for a side copy
/// of damaged bytes. Bounded: gives up after 1000 names.
pub(crate) fn broken_path_for(path: &Path) -> Result<PathBuf, LogError> {
    const BROKEN_NAMES_MAX: u32 = 1000;
    for attempt in 0..BROKEN_NAMES_MAX {
        let mut name = path.as_os_str().to_owned();
        name.push(".broken");
        if attempt > 0 {
            name.push(format!(".{attempt}"));
        }
        let candidate = PathBuf::from(name);
        if !candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(LogError::io(
        "find a free .broken name for",
        path,
        std::io::Error::other("1000 .broken copies already exist; clean them up"),
    ))
}

/// Durably copies `path[from..to]` (`to`: the end of the file if `None`)
/// into a fresh `.broken` file beside it (streamed, not loaded into memory)
/// and returns the copy's name and size.
pub(crate) fn save_broken_tail(
    path: &Path,
    from: u64,
    to: Option<u64>,
    faults: &SyncFaults,
) -> Result<(PathBuf, u64), LogError> {
    let broken = broken_path_for(path)?;
    let mut source = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    source
        .seek(SeekFrom::Start(from))
        .map_err(|e| LogError::io("seek", path, e))?;
    let mut copy = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&broken)
        .map_err(|e| LogError::io("create", &broken, e))?;
    let copied = match to {
        Some(to) => std::io::copy(&mut (&mut source).take(to.saturating_sub(from)), &mut copy),
        None => std::io::copy(&mut source, &mut copy),
    }
    .map_err(|e| LogError::io("copy damaged bytes to", &broken, e))
    .and_then(|copied| {
        sync_data(&copy, faults).map_err(|e| LogError::io("fdatasync", &broken, e))?;
        Ok(copied)
    });
    match copied {
        Ok(copied) => Ok((broken, copied)),
        Err(error) => {
            // A half copy is no evidence, and on a full disk it holds space.
            let _ = fs::remove_file(&broken);
            Err(error)
        }
    }
}

/// Renames a whole file to a `.broken` name (used by repair for segments
/// and checkpoints that must no longer be read). Caller syncs the directory.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, LogError> {
    let broken = broken_path_for(path)?;
    fs::rename(path, &broken).map_err(|e| LogError::io("rename aside", path, e))?;
    Ok(broken)
}

/// An exclusive advisory lock on `<dir>/LOCK`, held for the life of a `Log`
/// so that two writers never interleave appends in one directory.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, LogError> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LogError::io("open lock file", &path, e))?;
        // SAFETY: flock on a valid, owned file descriptor; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LogError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            return Err(LogError::io("lock", &path, error));
        }
        Ok(DirLock { _file: file })
    }
}

/// True for "the file system is full" (ENOSPC) and "the quota is used up"
/// (EDQUOT): the kernel declined to allocate, nothing was lost.
pub(crate) fn is_no_space(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Describes an I/O error for the poison message: the errno name matters to
/// an operator (EIO = device, ENOSPC = disk full).
pub(crate) fn describe_io_error(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(errno) => format!("{error} (errno {errno})"),
        None => error.to_string(),
    }
}
