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
//! The directory is input levee does not control, so:
//! - **No file-system work on the async workers.** Listing, `stat` and
//!   reading run in `spawn_blocking`.
//! - **Nothing is read until it is loaded.** A [`DropIn`] names a file;
//!   its loader reads it ([`DropIn::read`]), one at a time, so memory holds
//!   one component (at most `file_bytes_max`), not a directory's worth.
//! - **Bounded work per poll.** At most `poll_bytes_max` (default
//!   [`POLL_HAND_OVER_BYTES_MAX`]) of files, by size, are handed over per
//!   poll; the rest stay pending for
//!   the next one. A listing looks at most
//!   [`crate::control::drop_in::SCAN_ENTRIES_MAX`] entries.
//! - **No symbolic links.** A link could make levee load, or report the
//!   size of, a file outside the directory: a `<name>.wasm` link is refused
//!   with a reason (shown as the plugin's `last_error`), and the read opens
//!   with `O_NOFOLLOW` so a file swapped for a link after the check is
//!   refused too. Only regular files are read (`O_NONBLOCK`, so a FIFO
//!   cannot hang the reader).
//!
//! A file that was handed over is not handed over again until its
//! fingerprint changes, so the caller sees each change once (a file that
//! disappears is forgotten, so copying it back loads it again). Removing a
//! file does not unload the plugin (an in-use plugin disappearing because
//! someone cleaned a directory would be an outage); use `DELETE
//! /admin/plugins/{name}`, which also removes the file.

use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::control::drop_in::{DropIn, DropInError};
use crate::control::drop_in::{Fingerprint, Listing, WASM_SUFFIX, list_blocking};
/// Files being watched for stability at once; further events wait for the
/// next rescan.
const PENDING_MAX: usize = 256;
/// Events buffered between notify's thread and the watcher task; overflow is
/// harmless (the rescan catches up).
const EVENTS_QUEUE_MAX: usize = 1024;
/// Default bytes of files (by size) handed over per poll: two of the
/// largest components.
pub const POLL_HAND_OVER_BYTES_MAX: u64 = 2 * crate::control::plugin_store::COMPONENT_BYTES_MAX;
/// Invalid file names remembered so each is warned about once.
const WARNED_NAMES_MAX: usize = 256;

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How often pending files are checked for stability.
    pub poll_interval_ms: u64,
    /// How often the whole directory is rescanned as a backstop.
    pub rescan_interval_ms: u64,
    /// Largest file read; larger ones are reported as errors.
    pub file_bytes_max: u64,
    /// Bytes of files (by size) handed over per poll; the first stable
    /// file always goes, the rest wait for the next poll.
    pub poll_bytes_max: u64,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll_interval_ms: 100,
            rescan_interval_ms: 5_000,
            file_bytes_max: crate::control::plugin_store::COMPONENT_BYTES_MAX,
            poll_bytes_max: POLL_HAND_OVER_BYTES_MAX,
        }
    }
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

/// A file seen changing, waiting to hold still.
#[derive(Debug)]
struct Pending {
    last_seen: Option<Fingerprint>,
}

/// Starts watching `dir` (created if missing) and returns the `*.wasm`
/// files already there (without the stability wait: at start-up nothing is
/// expected to be mid-copy, and a torn file fails to compile and is
/// reloaded by the watcher once its copy completes). Later changes are
/// sent to `sink` once stable; the task ends when `stop` resolves or `sink`
/// is closed.
pub async fn spawn(
    dir: PathBuf,
    options: WatchOptions,
    sink: mpsc::Sender<DropIn>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(Vec<DropIn>, JoinHandle<()>), WatchError> {
    let created = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    created.map_err(|source| WatchError::CreateDir {
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
    let mut state = DirWatch::new(dir, options);
    let listing = list_blocking(&state.dir).await;
    let initial = state.scan_initial(listing);
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
    /// `*.wasm` file names already warned about as invalid plugin names.
    warned: BTreeSet<String>,
}

impl DirWatch {
    fn new(dir: PathBuf, options: WatchOptions) -> DirWatch {
        DirWatch {
            dir,
            options,
            pending: BTreeMap::new(),
            handed_over: BTreeMap::new(),
            warned: BTreeSet::new(),
        }
    }

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
                _ = rescan.tick() => {
                    let listing = list_blocking(&self.dir).await;
                    self.note_listing(listing);
                }
                _ = poll.tick() => {
                    let seen = crate::control::drop_in::fingerprints_blocking(self.pending_paths()).await;
                    for drop_in in self.take_stable(seen) {
                        if sink.send(drop_in).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Hands over every `*.wasm` file of the first listing.
    fn scan_initial(&mut self, listing: Listing) -> Vec<DropIn> {
        let mut found: Vec<(String, Fingerprint)> = listing
            .into_iter()
            .filter_map(|(file_name, fingerprint)| {
                Some((self.plugin_name_of(&file_name)?, fingerprint))
            })
            .take(PENDING_MAX)
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
            .into_iter()
            .map(|(name, fingerprint)| self.hand_over(name, fingerprint, true))
            .collect()
    }

    /// Queues every `*.wasm` file whose fingerprint differs from what was
    /// handed over, and forgets files that are gone.
    fn note_listing(&mut self, listing: Listing) {
        let mut present = BTreeSet::new();
        for (file_name, fingerprint) in listing {
            let Some(name) = self.plugin_name_of(&file_name) else {
                continue;
            };
            if self.handed_over.get(&name) != Some(&fingerprint) {
                self.mark_pending(name.clone());
            }
            present.insert(name);
        }
        self.handed_over.retain(|name, _| present.contains(name));
    }

    /// A file-system event: the file is checked at the next poll.
    fn note_path(&mut self, path: &Path) {
        if path.parent() != Some(self.dir.as_path()) {
            return;
        }
        let Some(file_name) = path.file_name().and_then(|f| f.to_str()) else {
            return;
        };
        if let Some(name) = self.plugin_name_of(file_name) {
            self.mark_pending(name);
        }
    }

    fn mark_pending(&mut self, name: String) {
        if self.pending.len() < PENDING_MAX || self.pending.contains_key(&name) {
            self.pending
                .entry(name)
                .or_insert(Pending { last_seen: None });
        }
    }

    /// The plugin name of a `<name>.wasm` file name; an invalid name is
    /// warned about once.
    fn plugin_name_of(&mut self, file_name: &str) -> Option<String> {
        let name = file_name.strip_suffix(WASM_SUFFIX)?;
        match crate::config::validate_plugin_name(name) {
            Ok(()) => Some(name.to_string()),
            Err(reason) => {
                if self.warned.len() < WARNED_NAMES_MAX && self.warned.insert(file_name.into()) {
                    tracing::warn!(file = file_name, %reason, "ignoring drop-in with an invalid plugin name");
                }
                None
            }
        }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{WASM_SUFFIX}"))
    }

    fn pending_paths(&self) -> Vec<(String, PathBuf)> {
        self.pending
            .keys()
            .map(|name| (name.clone(), self.path_of(name)))
            .collect()
    }

    /// Given each pending file's fingerprint now, hands over those that
    /// held still since the previous poll, up to the poll's byte budget.
    fn take_stable(&mut self, seen: Vec<(String, Option<Fingerprint>)>) -> Vec<DropIn> {
        let mut stable = Vec::new();
        let mut budget = self.options.poll_bytes_max;
        for (name, now) in seen {
            let Some(pending) = self.pending.get_mut(&name) else {
                continue;
            };
            let Some(now) = now.filter(|now| self.handed_over.get(&name) != Some(now)) else {
                self.pending.remove(&name); // Gone, or back to what was handed over.
                continue;
            };
            if pending.last_seen != Some(now) {
                pending.last_seen = Some(now);
                continue;
            }
            let cost = now.len.min(self.options.file_bytes_max.saturating_add(1));
            if !stable.is_empty() && cost > budget {
                continue; // Stays pending and stable: handed over next poll.
            }
            budget = budget.saturating_sub(cost);
            self.pending.remove(&name);
            stable.push((name, now));
        }
        stable
            .into_iter()
            .map(|(name, fingerprint)| self.hand_over(name, fingerprint, false))
            .collect()
    }

    fn hand_over(&mut self, name: String, fingerprint: Fingerprint, initial: bool) -> DropIn {
        self.handed_over.insert(name.clone(), fingerprint);
        let path = self.path_of(&name);
        DropIn::new(
            name,
            path,
            fingerprint,
            initial,
            self.options.file_bytes_max,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::drop_in::list;
    use std::time::SystemTime;

    fn fast() -> WatchOptions {
        WatchOptions {
            poll_interval_ms: 20,
            rescan_interval_ms: 200,
            file_bytes_max: 1024,
            poll_bytes_max: 4096,
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

    /// One poll of `watch`, synchronously.
    fn poll(watch: &mut DirWatch) -> Vec<DropIn> {
        let seen = watch
            .pending_paths()
            .into_iter()
            .map(|(name, path)| (name, Fingerprint::of(&path)))
            .collect();
        watch.take_stable(seen)
    }

    fn refusal(result: Result<Vec<u8>, DropInError>) -> String {
        match result {
            Err(DropInError::Refused(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
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
        .await
        .unwrap();

        assert_eq!(initial.len(), 1, "only the valid .wasm file: {initial:?}");
        let first = &initial[0];
        assert_eq!((first.name.as_str(), first.initial), ("first", true));
        assert_eq!(first.read().await.unwrap(), b"one");

        // The write-then-rename convention: the .tmp file is never handed over.
        std::fs::write(dir.path().join("second.wasm.tmp"), b"two").unwrap();
        std::fs::rename(
            dir.path().join("second.wasm.tmp"),
            dir.path().join("second.wasm"),
        )
        .unwrap();
        let second = next(&mut drop_ins).await;
        assert_eq!((second.name.as_str(), second.initial), ("second", false));
        assert_eq!(second.read().await.unwrap(), b"two");

        // Nothing else arrives: neither file is handed over twice, across rescans.
        let quiet = tokio::time::timeout(Duration::from_millis(600), drop_ins.recv()).await;
        assert!(quiet.is_err(), "unexpected drop-in {quiet:?}");

        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_file_is_handed_over_only_after_two_identical_polls() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(dir.path().to_path_buf(), fast());
        let path = dir.path().join("slow.wasm");
        std::fs::write(&path, [7u8; 100]).unwrap();
        watch.note_path(&path);
        assert!(
            poll(&mut watch).is_empty(),
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
            poll(&mut watch).is_empty(),
            "changed since the last poll: not stable"
        );
        let stable = poll(&mut watch);
        assert_eq!(stable.len(), 1);
        assert_eq!(
            stable[0].read().await.unwrap().len(),
            200,
            "handed over complete"
        );
        watch.note_path(&path);
        assert!(
            poll(&mut watch).is_empty(),
            "an unchanged file is not handed over again"
        );
        assert!(watch.pending.is_empty(), "nor kept pending");

        // Changed after it was found stable, before it was read: not read.
        let late = {
            std::fs::write(&path, [8u8; 10]).unwrap();
            watch.note_path(&path);
            poll(&mut watch);
            let late = poll(&mut watch).pop().unwrap();
            std::fs::write(&path, [9u8; 20]).unwrap();
            late
        };
        assert!(matches!(late.read().await, Err(DropInError::Moved(_))));
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
        .await
        .unwrap();
        assert!(refusal(initial[0].read().await).contains("larger than"));
        std::fs::write(dir.path().join("huge.wasm"), vec![1u8; 4096]).unwrap();
        let huge = next(&mut drop_ins).await;
        assert!(refusal(huge.read().await).contains("larger than"));
        task.abort();
    }

    #[tokio::test]
    async fn links_are_refused_and_fifos_ignored() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"not yours").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("link.wasm")).unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("pipe.wasm").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let mut watch = DirWatch::new(dir.path().to_path_buf(), fast());
        let initial = watch.scan_initial(list(dir.path()));
        assert_eq!(initial.len(), 1, "the FIFO is not a drop-in: {initial:?}");
        let reason = refusal(initial[0].read().await);
        assert!(reason.contains("symbolic link"), "{reason}");

        // A regular file swapped for a link after it was found stable.
        let path = dir.path().join("swapped.wasm");
        std::fs::write(&path, b"real").unwrap();
        watch.note_path(&path);
        poll(&mut watch);
        let swapped = poll(&mut watch).pop().unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        let result = swapped.read().await;
        assert!(
            matches!(&result, Err(DropInError::Refused(r)) if r.contains("symbolic link"))
                || matches!(&result, Err(DropInError::Moved(_))),
            "{result:?}"
        );
    }

    #[test]
    fn each_poll_hands_over_a_bounded_number_of_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(dir.path().to_path_buf(), fast());
        for name in ["a", "b", "c", "d", "e"] {
            let path = dir.path().join(format!("{name}.wasm"));
            std::fs::write(&path, [0u8; 1000]).unwrap();
            watch.note_path(&path);
        }
        assert!(poll(&mut watch).is_empty());
        let sizes: Vec<usize> = (0..3).map(|_| poll(&mut watch).len()).collect();
        assert_eq!(
            sizes,
            vec![4, 1, 0],
            "4096 bytes per poll: four files, then the fifth"
        );
    }

    #[test]
    fn a_removed_file_is_forgotten_so_copying_it_back_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(dir.path().to_path_buf(), fast());
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, b"v1").unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(watch.scan_initial(list(dir.path())).len(), 1);
        watch.note_listing(list(dir.path()));
        assert!(watch.pending.is_empty(), "unchanged");
        std::fs::remove_file(&path).unwrap();
        watch.note_listing(list(dir.path()));
        // The same bytes with the same mtime (`cp -p`) come back.
        std::fs::write(&path, b"v1").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        watch.note_listing(list(dir.path()));
        poll(&mut watch);
        assert_eq!(poll(&mut watch).len(), 1, "handed over again");
    }
}
