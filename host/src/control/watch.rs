//! The plugin drop-in directory: copy `<name>.wasm` into `plugin_dir` and
//! levee loads it, through the same validation and atomic swap as an upload.
//!
//! The hard part is never loading a half-copied file. Two defences:
//! 1. **Convention**: write `<name>.wasm.tmp` (or any name not ending in
//!    `.wasm`), then rename it to `<name>.wasm`. A rename within one file
//!    system is atomic, and files not ending in `.wasm` are ignored.
//! 2. **Stability check**, for copies that do not follow the convention
//!    (`cp big.wasm plugin_dir/`): after a file-system event the file is
//!    polled, and only handed over once its size and modification time are
//!    the same at two consecutive polls.
//!
//! Events come from `notify` (inotify on Linux), which is fast but may drop
//! events under overflow or not work on some file systems, so a periodic
//! rescan compares every `*.wasm` file's fingerprint with the one last handed
//! over and catches anything missed. The first scan happens inside [`spawn`],
//! which returns those files directly (marked [`DropIn::initial`]) so
//! start-up can load them before declaring itself ready, and can decide
//! whether a file is newer than what it restored from its store.
//!
//! A file that was handed over is not handed over again until its
//! fingerprint changes, so the caller sees each change once. Removing a file
//! does not unload the plugin (an in-use plugin disappearing because someone
//! cleaned a directory would be an outage); use `DELETE /admin/plugins/{name}`.

use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WASM_SUFFIX: &str = ".wasm";
/// Files being watched for stability at once; further events wait for the
/// next rescan.
const PENDING_MAX: usize = 256;
/// Events buffered between notify's thread and the watcher task; overflow is
/// harmless (the rescan catches up).
const EVENTS_QUEUE_MAX: usize = 1024;

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How often pending files are checked for stability.
    pub poll_interval_ms: u64,
    /// How often the whole directory is rescanned as a backstop.
    pub rescan_interval_ms: u64,
    /// Largest file read; larger ones are reported as errors.
    pub file_bytes_max: u64,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll_interval_ms: 100,
            rescan_interval_ms: 5_000,
            file_bytes_max: crate::control::plugin_store::COMPONENT_BYTES_MAX,
        }
    }
}

/// A stable `<name>.wasm` file, read.
#[derive(Debug)]
pub struct DropIn {
    /// The plugin name (the file name without `.wasm`), already validated.
    pub name: String,
    pub path: PathBuf,
    /// The file's bytes, or why they could not be read.
    pub bytes: Result<Vec<u8>, String>,
    /// The file's modification time, milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Found by the first scan at start-up rather than by a change.
    pub initial: bool,
}

/// Why the watcher could not start.
#[derive(Debug, Error)]
pub enum WatchError {
    #[error("cannot create plugin directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch plugin directory {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// Size and modification time: what "the file changed" means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: SystemTime,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Fingerprint> {
        let metadata = std::fs::metadata(path).ok()?;
        if !metadata.is_file() {
            return None;
        }
        Some(Fingerprint {
            len: metadata.len(),
            modified: metadata.modified().ok()?,
        })
    }

    fn modified_ms(&self) -> u64 {
        self.modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A file seen changing, waiting to hold still.
#[derive(Debug)]
struct Pending {
    last_seen: Option<Fingerprint>,
}

/// Starts watching `dir` (created if missing) and returns the `*.wasm`
/// files already there (read now, without the stability wait: at start-up
/// nothing is expected to be mid-copy, and a torn file fails to compile and
/// is reloaded by the watcher once its copy completes). Later changes are
/// sent to `sink` once stable; the task ends when `stop` resolves or `sink`
/// is closed.
pub fn spawn(
    dir: PathBuf,
    options: WatchOptions,
    sink: mpsc::Sender<DropIn>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(Vec<DropIn>, JoinHandle<()>), WatchError> {
    std::fs::create_dir_all(&dir).map_err(|source| WatchError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let (events_tx, events_rx) = mpsc::channel::<PathBuf>(EVENTS_QUEUE_MAX);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        forward_event(event, &events_tx);
    })
    .map_err(|source| WatchError::Watch {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Watch {
            path: dir.clone(),
            source,
        })?;
    // Watching starts before the scan, so a file added in between is seen
    // by one or the other (or both, and then handed over once).
    let mut state = DirWatch {
        dir,
        options,
        pending: BTreeMap::new(),
        handed_over: BTreeMap::new(),
    };
    let initial = state.scan_initial();
    let task = tokio::spawn(async move {
        // The watcher stops when dropped: keep it alive as long as the task.
        let _watcher = watcher;
        state.run(events_rx, sink, stop).await;
    });
    Ok((initial, task))
}

/// Runs on notify's thread: forwards paths of creations, modifications and
/// renames; never blocks.
fn forward_event(event: notify::Result<notify::Event>, events: &mpsc::Sender<PathBuf>) {
    match event {
        Ok(event)
            if matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any
            ) =>
        {
            for path in event.paths {
                // A full queue only delays the file until the next rescan.
                let _ = events.try_send(path);
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "plugin directory watch error; relying on rescans"),
    }
}

struct DirWatch {
    dir: PathBuf,
    options: WatchOptions,
    /// By plugin name.
    pending: BTreeMap<String, Pending>,
    /// Fingerprint of what was last handed over, by plugin name.
    handed_over: BTreeMap<String, Fingerprint>,
}

impl DirWatch {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<PathBuf>,
        sink: mpsc::Sender<DropIn>,
        stop: impl Future<Output = ()> + Send,
    ) {
        let mut poll = tokio::time::interval(Duration::from_millis(self.options.poll_interval_ms));
        let mut rescan =
            tokio::time::interval(Duration::from_millis(self.options.rescan_interval_ms));
        rescan.tick().await; // The first tick is immediate; we just scanned.
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                Some(path) = events.recv() => self.note_path(&path),
                _ = rescan.tick() => self.rescan(),
                _ = poll.tick() => {
                    for drop_in in self.take_stable() {
                        if sink.send(drop_in).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Reads every `*.wasm` file now, marking each as handed over.
    fn scan_initial(&mut self) -> Vec<DropIn> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, PathBuf, Fingerprint)> = entries
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let name = self.plugin_name_of(&path)?;
                let fingerprint = Fingerprint::of(&path)?;
                Some((name, path, fingerprint))
            })
            .take(PENDING_MAX)
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
            .into_iter()
            .map(|(name, path, fingerprint)| self.hand_over(name, path, fingerprint, true))
            .collect()
    }

    /// Queues every `*.wasm` file whose fingerprint differs from what was
    /// handed over.
    fn rescan(&mut self) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, dir = %self.dir.display(), "cannot list plugin directory");
                return;
            }
        };
        for entry in entries.flatten() {
            self.note_path(&entry.path());
        }
    }

    fn note_path(&mut self, path: &Path) {
        let Some(name) = self.plugin_name_of(path) else {
            return;
        };
        let changed =
            Fingerprint::of(path).is_some_and(|now| self.handed_over.get(&name) != Some(&now));
        if !changed || self.pending.contains_key(&name) {
            return;
        }
        if self.pending.len() >= PENDING_MAX {
            return;
        }
        self.pending.insert(name, Pending { last_seen: None });
    }

    /// The plugin name of a top-level `<name>.wasm` in the watched directory.
    fn plugin_name_of(&self, path: &Path) -> Option<String> {
        if path.parent() != Some(self.dir.as_path()) {
            return None;
        }
        let file_name = path.file_name()?.to_str()?;
        let name = file_name.strip_suffix(WASM_SUFFIX)?;
        match crate::config::validate_plugin_name(name) {
            Ok(()) => Some(name.to_string()),
            Err(reason) => {
                tracing::warn!(file = file_name, %reason, "ignoring drop-in with an invalid plugin name");
                None
            }
        }
    }

    /// Files whose fingerprint held still since the previous poll, read.
    fn take_stable(&mut self) -> Vec<DropIn> {
        let mut stable = Vec::new();
        let mut forget = Vec::new();
        for (name, pending) in &mut self.pending {
            let path = self.dir.join(format!("{name}{WASM_SUFFIX}"));
            let Some(now) = Fingerprint::of(&path) else {
                forget.push(name.clone()); // Deleted or renamed away meanwhile.
                continue;
            };
            if pending.last_seen != Some(now) {
                pending.last_seen = Some(now);
                continue;
            }
            forget.push(name.clone());
            stable.push((name.clone(), path, now));
        }
        for name in forget {
            self.pending.remove(&name);
        }
        stable
            .into_iter()
            .map(|(name, path, fingerprint)| self.hand_over(name, path, fingerprint, false))
            .collect()
    }

    fn hand_over(
        &mut self,
        name: String,
        path: PathBuf,
        fingerprint: Fingerprint,
        initial: bool,
    ) -> DropIn {
        self.handed_over.insert(name.clone(), fingerprint);
        let bytes = read_bounded(&path, self.options.file_bytes_max);
        DropIn {
            name,
            path,
            bytes,
            modified_ms: fingerprint.modified_ms(),
            initial,
        }
    }
}

fn read_bounded(path: &Path, bytes_max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(bytes_max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > bytes_max {
        return Err(format!(
            "{} is larger than the {bytes_max} bytes allowed",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> WatchOptions {
        WatchOptions {
            poll_interval_ms: 20,
            rescan_interval_ms: 200,
            file_bytes_max: 1024,
        }
    }

    /// Receives the next drop-in, with a generous bound so a slow machine
    /// cannot fail the test, only make it wait.
    async fn next(receiver: &mut mpsc::Receiver<DropIn>) -> DropIn {
        tokio::time::timeout(Duration::from_secs(30), receiver.recv())
            .await
            .expect("no drop-in within 30 s")
            .unwrap()
    }

    #[tokio::test]
    async fn initial_files_and_renamed_files_are_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("first.wasm"), b"one").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("Bad Name.wasm"), b"x").unwrap();
        let (sink, mut drop_ins) = mpsc::channel(8);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (initial, task) = spawn(dir.path().to_path_buf(), fast(), sink, async {
            drop(stopped.await)
        })
        .unwrap();

        assert_eq!(initial.len(), 1, "only the valid .wasm file: {initial:?}");
        let first = &initial[0];
        assert_eq!(
            (
                first.name.as_str(),
                first.bytes.as_deref().unwrap(),
                first.initial
            ),
            ("first", &b"one"[..], true)
        );

        // The write-then-rename convention: the .tmp file is never handed over.
        std::fs::write(dir.path().join("second.wasm.tmp"), b"two").unwrap();
        std::fs::rename(
            dir.path().join("second.wasm.tmp"),
            dir.path().join("second.wasm"),
        )
        .unwrap();
        let second = next(&mut drop_ins).await;
        assert_eq!(
            (
                second.name.as_str(),
                second.bytes.as_deref().unwrap(),
                second.initial
            ),
            ("second", &b"two"[..], false)
        );

        // Nothing else arrives: neither file is handed over twice, across rescans.
        let quiet = tokio::time::timeout(Duration::from_millis(600), drop_ins.recv()).await;
        assert!(quiet.is_err(), "unexpected drop-in {quiet:?}");

        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn a_file_is_handed_over_only_after_two_identical_polls() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch {
            dir: dir.path().to_path_buf(),
            options: fast(),
            pending: BTreeMap::new(),
            handed_over: BTreeMap::new(),
        };
        let path = dir.path().join("slow.wasm");
        std::fs::write(&path, [7u8; 100]).unwrap();
        watch.note_path(&path);
        assert!(
            watch.take_stable().is_empty(),
            "first poll only records the fingerprint"
        );
        // The copy goes on between polls: size and mtime change.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, &[7u8; 100]).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(1))
            .unwrap();
        assert!(
            watch.take_stable().is_empty(),
            "changed since the last poll: not stable"
        );
        let stable = watch.take_stable();
        assert_eq!(stable.len(), 1);
        assert_eq!(
            stable[0].bytes.as_ref().unwrap().len(),
            200,
            "handed over complete"
        );
        watch.note_path(&path);
        assert!(
            watch.pending.is_empty(),
            "an unchanged file is not queued again"
        );
    }

    #[tokio::test]
    async fn oversized_files_are_reported_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("huge.wasm"), vec![0u8; 2048]).unwrap();
        let (sink, mut drop_ins) = mpsc::channel(8);
        let (initial, task) = spawn(
            dir.path().to_path_buf(),
            fast(),
            sink,
            std::future::pending(),
        )
        .unwrap();
        assert!(
            initial[0]
                .bytes
                .as_ref()
                .unwrap_err()
                .contains("larger than")
        );
        std::fs::write(dir.path().join("huge.wasm"), vec![1u8; 4096]).unwrap();
        let huge = next(&mut drop_ins).await;
        assert!(huge.bytes.unwrap_err().contains("larger than"));
        task.abort();
    }
}
