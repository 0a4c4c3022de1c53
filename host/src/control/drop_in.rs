//! One drop-in file: what it looked like when the watcher found it stable
//! ([`Fingerprint`], taken without following links), and reading it
//! ([`DropIn::read`]) off the async workers, refusing what levee must not
//! load. [`super::watch`] decides *when* a file is handed over; this module
//! decides *whether* its bytes may be read. The rules (see `watch` for
//! why): no symbolic links, even one swapped in after the check
//! (`O_NOFOLLOW`); only regular files (`O_NONBLOCK`, so a FIFO cannot hang
//! the reader); at most `file_bytes_max` bytes; and not a file that changed
//! since it was found stable (the watcher hands the new content over once
//! it holds still).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

pub(crate) const WASM_SUFFIX: &str = ".wasm";
/// Directory entries one listing looks at.
pub const SCAN_ENTRIES_MAX: usize = 4096;

/// One directory entry: its file name and fingerprint.
pub(crate) type Listing = Vec<(String, Fingerprint)>;

/// A stable `<name>.wasm` file, not read yet: see [`DropIn::read`].
#[derive(Debug)]
pub struct DropIn {
    /// The plugin name (the file name without `.wasm`), already validated.
    pub name: String,
    pub path: PathBuf,
    /// The file's modification time, milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Found by the first scan at start-up rather than by a change.
    pub initial: bool,
    /// What the file looked like when it was found stable.
    fingerprint: Fingerprint,
    file_bytes_max: u64,
}

/// Why a drop-in was not read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DropInError {
    /// The file changed or vanished since it was found stable: nothing to
    /// report, the watcher sees the change and hands the file over again.
    #[error("{0}")]
    Moved(String),
    /// The file cannot be loaded as it is (a link, too big, unreadable):
    /// the reason is for the operator.
    #[error("{0}")]
    Refused(String),
}

impl DropIn {
    pub(crate) fn new(
        name: String,
        path: PathBuf,
        fingerprint: Fingerprint,
        initial: bool,
        file_bytes_max: u64,
    ) -> DropIn {
        DropIn {
            name,
            path,
            modified_ms: fingerprint.modified_ms(),
            initial,
            fingerprint,
            file_bytes_max,
        }
    }

    /// Reads the file off the async workers, refusing a symbolic link,
    /// anything but a regular file, and a file larger than the limit.
    pub async fn read(&self) -> Result<Vec<u8>, DropInError> {
        let path = self.path.clone();
        let (expected, bytes_max) = (self.fingerprint, self.file_bytes_max);
        tokio::task::spawn_blocking(move || read_checked(&path, expected, bytes_max))
            .await
            .unwrap_or_else(|e| Err(DropInError::Refused(format!("read task: {e}"))))
    }
}

/// Size, modification time and whether it is a link: what "the file
/// changed" means here. Taken without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) len: u64,
    modified: SystemTime,
    symlink: bool,
}

impl Fingerprint {
    /// `None` unless `path` is a regular file or a symbolic link.
    pub(crate) fn of(path: &Path) -> Option<Fingerprint> {
        Fingerprint::from_metadata(&std::fs::symlink_metadata(path).ok()?)
    }

    fn from_metadata(metadata: &std::fs::Metadata) -> Option<Fingerprint> {
        let kind = metadata.file_type();
        if !kind.is_file() && !kind.is_symlink() {
            return None;
        }
        Some(Fingerprint {
            len: metadata.len(),
            modified: metadata.modified().ok()?,
            symlink: kind.is_symlink(),
        })
    }

    fn modified_ms(&self) -> u64 {
        self.modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The regular files and links in `dir` (at most [`SCAN_ENTRIES_MAX`]
/// entries looked at), off the async workers.
pub(crate) async fn list_blocking(dir: &Path) -> Listing {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || list(&dir))
        .await
        .unwrap_or_default()
}

pub(crate) fn list(dir: &Path) -> Listing {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "cannot list plugin directory");
            return Vec::new();
        }
    };
    entries
        .take(SCAN_ENTRIES_MAX)
        .flatten()
        .filter_map(|entry| {
            let file_name = entry.file_name().into_string().ok()?;
            if !file_name.ends_with(WASM_SUFFIX) {
                return None;
            }
            Some((file_name, Fingerprint::of(&entry.path())?))
        })
        .collect()
}

pub(crate) async fn fingerprints_blocking(
    paths: Vec<(String, PathBuf)>,
) -> Vec<(String, Option<Fingerprint>)> {
    if paths.is_empty() {
        return Vec::new();
    }
    tokio::task::spawn_blocking(move || {
        paths
            .into_iter()
            .map(|(name, path)| (name, Fingerprint::of(&path)))
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Reads `path` if it is still the regular file `expected` describes and
/// at most `bytes_max` bytes. **Blocking.**
fn read_checked(
    path: &Path,
    expected: Fingerprint,
    bytes_max: u64,
) -> Result<Vec<u8>, DropInError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let link = || {
        DropInError::Refused(format!(
            "{shown} is a symbolic link; levee does not follow links in the plugin directory \
             (copy the file in, then rename it to .wasm)"
        ))
    };
    if expected.symlink {
        return Err(link());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => link(),
            _ if e.kind() == std::io::ErrorKind::NotFound => {
                DropInError::Moved(format!("{shown} vanished before it was read"))
            }
            _ => DropInError::Refused(format!("cannot read {shown}: {e}")),
        })?;
    let metadata = file
        .metadata()
        .map_err(|e| DropInError::Refused(format!("cannot read {shown}: {e}")))?;
    if !metadata.is_file() {
        return Err(DropInError::Refused(format!(
            "{shown} is not a regular file"
        )));
    }
    if Fingerprint::from_metadata(&metadata) != Some(expected) {
        return Err(DropInError::Moved(format!(
            "{shown} changed before it was read"
        )));
    }
    if metadata.len() > bytes_max {
        return Err(DropInError::Refused(format!(
            "{shown} is larger than the {bytes_max} bytes allowed"
        )));
    }
    let mut bytes = Vec::new();
    file.take(bytes_max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DropInError::Refused(format!("cannot read {shown}: {e}")))?;
    if bytes.len() as u64 > bytes_max {
        return Err(DropInError::Refused(format!(
            "{shown} is larger than the {bytes_max} bytes allowed"
        )));
    }
    Ok(bytes)
}
