//! The hybrid logical clock that issues versions, with its persisted
//! high-water mark and the instance id file.
//!
//! Two small files under the directory given to [`Hlc::open`] (levee gives
//! its `data_dir`):
//! - `instance-id`: 16 hex digits, the id of the process life that has the
//!   directory open. A new random id is drawn at **every** open (the file
//!   says which one, for operators), because the mark alone cannot keep
//!   versions unique: a data directory restored from a backup, or copied to
//!   start a second instance, resumes from a mark that another life has
//!   already issued versions from. Two lives never share an id, so they
//!   never issue the same version, whatever their marks.
//! - `hlc-mark`: a physical time in ms that no issued version reaches. The
//!   clock writes `issued + RESERVE_MS` (temp file, fsync, rename, directory
//!   fsync) whenever it is about to issue at or past the mark, so one fsync
//!   covers ten seconds of writes, and after a restart it starts *at* the
//!   mark, above everything it ever handed out, even if the wall clock
//!   stepped back meanwhile.
//!
//! Receiving: [`Hlc::observe`] moves the clock past a version seen on a
//! replica (a newer write by another instance, or by this data directory's
//! earlier life), so the next write is newer than it. A version more than
//! `skew_ms_max` ahead of the wall clock is refused instead of adopted: one
//! replica with a broken clock must not drag every later write into the
//! future.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::version::{InstanceId, Version};

/// How far ahead of what it issues the persisted mark is set.
pub const RESERVE_MS: u64 = 10_000;
/// Default bound on how far ahead of this machine's wall clock an observed
/// version may be and still be adopted.
pub const SKEW_MS_MAX_DEFAULT: u64 = 60_000;
/// Bytes of either clock file, at most (anything longer is not ours).
const FILE_BYTES_MAX: u64 = 64;

const INSTANCE_FILE: &str = "instance-id";
const MARK_FILE: &str = "hlc-mark";

/// A source of wall-clock milliseconds (tests substitute their own).
pub type WallMs = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How the clock behaves.
#[derive(Clone)]
pub struct HlcOptions {
    /// See [`SKEW_MS_MAX_DEFAULT`].
    pub skew_ms_max: u64,
    /// The wall clock; the system's when `None`.
    pub wall_ms: Option<WallMs>,
}

impl Default for HlcOptions {
    fn default() -> Self {
        HlcOptions {
            skew_ms_max: SKEW_MS_MAX_DEFAULT,
            wall_ms: None,
        }
    }
}

/// What [`Hlc::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// This life's id (new).
    pub instance: InstanceId,
    /// The id the file held from the previous life, if any.
    pub previous_instance: Option<InstanceId>,
    /// The mark the clock resumed from (0 when there was none).
    pub resumed_from_ms: u64,
}

/// Why the clock could not open or issue.
#[derive(Debug, Error)]
pub enum HlcError {
    #[error("clock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("clock file {path} is not levee's: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "version {seen} is {ahead_ms} ms ahead of this machine's clock, more than the \
         {skew_ms_max} ms skew bound; check the clocks of the replicas and levee instances"
    )]
    TooFarAhead {
        seen: Version,
        ahead_ms: u64,
        skew_ms_max: u64,
    },
}

struct State {
    physical_ms: u64,
    logical: u32,
    /// No issued version reaches this physical time.
    mark_ms: u64,
}

/// The clock. Cheap to call; shared behind an `Arc`.
pub struct Hlc {
    dir: PathBuf,
    instance: InstanceId,
    skew_ms_max: u64,
    wall_ms: WallMs,
    state: Mutex<State>,
    /// A copy of `state.physical_ms` (it only grows), so that observing a
    /// version older than the clock — what nearly every read echoes — is
    /// one atomic load, with no lock and no wall-clock read.
    physical_floor_ms: AtomicU64,
}

impl Hlc {
    /// Opens the clock in `dir` (created if missing), as a new instance.
    pub fn open(dir: &Path, options: HlcOptions) -> Result<(Hlc, Opened), HlcError> {
        std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        let wall_ms = options.wall_ms.unwrap_or_else(|| Arc::new(system_wall_ms));
        let previous_instance = read_instance(dir)?;
        let instance = loop {
            // Bounded: a repeat of the previous id has odds 2^-64.
            let fresh = new_instance_id();
            if Some(fresh) != previous_instance {
                break fresh;
            }
        };
        write_atomically(dir, INSTANCE_FILE, &format!("{instance}\n"))?;
        let resumed_from_ms = read_mark(dir)?.unwrap_or(0);
        let physical_ms = resumed_from_ms.max(wall_ms());
        let mark_ms = physical_ms.saturating_add(RESERVE_MS);
        write_atomically(dir, MARK_FILE, &format!("{mark_ms}\n"))?;
        let hlc = Hlc {
            dir: dir.to_owned(),
            instance,
            skew_ms_max: options.skew_ms_max,
            wall_ms,
            state: Mutex::new(State {
                physical_ms,
                logical: 0,
                mark_ms,
            }),
            physical_floor_ms: AtomicU64::new(physical_ms),
        };
        let opened = Opened {
            instance,
            previous_instance,
            resumed_from_ms,
        };
        Ok((hlc, opened))
    }

    /// This instance's id.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// The skew bound [`Hlc::observe`] enforces.
    pub fn skew_ms_max(&self) -> u64 {
        self.skew_ms_max
    }

    /// Issues a version newer than every version issued or observed before.
    /// Fails only if the mark cannot be persisted (then nothing is issued).
    pub fn now(&self) -> Result<Version, HlcError> {
        let wall = (self.wall_ms)();
        let mut state = lock(&self.state);
        let (physical_ms, logical) = tick(state.physical_ms, state.logical, wall);
        if physical_ms >= state.mark_ms {
            let mark_ms = physical_ms.saturating_add(RESERVE_MS);
            write_atomically(&self.dir, MARK_FILE, &format!("{mark_ms}\n"))?;
            state.mark_ms = mark_ms;
        }
        state.physical_ms = physical_ms;
        state.logical = logical;
        self.physical_floor_ms.store(physical_ms, Ordering::Release);
        Ok(Version {
            physical_ms,
            logical,
            instance: self.instance,
        })
    }

    /// Moves the clock past `seen` (the receive rule), unless `seen` is
    /// more than the skew bound ahead of the wall clock.
    pub fn observe(&self, seen: Version) -> Result<(), HlcError> {
        if seen.physical_ms < self.physical_floor_ms.load(Ordering::Acquire) {
            return Ok(()); // older than the clock already is
        }
        let wall = (self.wall_ms)();
        if seen.physical_ms > wall.saturating_add(self.skew_ms_max) {
            return Err(HlcError::TooFarAhead {
                seen,
                ahead_ms: seen.physical_ms - wall,
                skew_ms_max: self.skew_ms_max,
            });
        }
        let mut state = lock(&self.state);
        if (seen.physical_ms, seen.logical) > (state.physical_ms, state.logical) {
            state.physical_ms = seen.physical_ms;
            state.logical = seen.logical;
            self.physical_floor_ms
                .store(seen.physical_ms, Ordering::Release);
        }
        Ok(())
    }

    /// The newest version issued or observed so far (with this instance's
    /// id), without issuing one.
    pub fn last(&self) -> Version {
        let state = lock(&self.state);
        Version {
            physical_ms: state.physical_ms,
            logical: state.logical,
            instance: self.instance,
        }
    }
}

/// The clock's next `(physical, logical)` after `(physical, logical)` at
/// wall time `wall`.
fn tick(physical_ms: u64, logical: u32, wall: u64) -> (u64, u32) {
    if wall > physical_ms {
        (wall, 0)
    } else if logical == u32::MAX {
        (physical_ms + 1, 0)
    } else {
        (physical_ms, logical + 1)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The state is two integers updated together; a panic elsewhere cannot
    // leave it half-written.
    state.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn system_wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn new_instance_id() -> InstanceId {
    // Zero is reserved for legacy versions.
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return InstanceId(id);
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> HlcError {
    HlcError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The file's text, or `None` when it does not exist.
fn read_small(path: &Path) -> Result<Option<String>, HlcError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > FILE_BYTES_MAX => {
            return Err(HlcError::Corrupt {
                path: path.to_owned(),
                reason: format!("{} bytes", meta.len()),
            });
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io(path, error)),
    }
    let text = std::fs::read_to_string(path).map_err(|source| io(path, source))?;
    Ok(Some(text.trim_end_matches('\n').to_owned()))
}

fn read_instance(dir: &Path) -> Result<Option<InstanceId>, HlcError> {
    let path = dir.join(INSTANCE_FILE);
    let Some(text) = read_small(&path)? else {
        return Ok(None);
    };
    let valid = text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match u64::from_str_radix(&text, 16) {
        Ok(id) if valid && id != 0 => Ok(Some(InstanceId(id))),
        _ => Err(HlcError::Corrupt {
            path,
            reason: "expected 16 lower-case hex digits, not all zero".into(),
        }),
    }
}

fn read_mark(dir: &Path) -> Result<Option<u64>, HlcError> {
    let path = dir.join(MARK_FILE);
    let Some(text) = read_small(&path)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| HlcError::Corrupt {
        path,
        reason: "expected a decimal number of milliseconds".into(),
    })
}

/// Replaces `dir/name` with `text` so that a crash leaves the old or the
/// new content, never a mix, and the new content is durable on return.
fn write_atomically(dir: &Path, name: &str, text: &str) -> Result<(), HlcError> {
    let path = dir.join(name);
    let temp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| io(&path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn manual_clock(start_ms: u64) -> (Arc<AtomicU64>, HlcOptions) {
        let now = Arc::new(AtomicU64::new(start_ms));
        let source = now.clone();
        let options = HlcOptions {
            skew_ms_max: 1_000,
            wall_ms: Some(Arc::new(move || source.load(Ordering::SeqCst))),
        };
        (now, options)
    }

    #[test]
    fn versions_strictly_increase_even_when_the_wall_clock_stands_still_or_steps_back() {
        let dir = tempfile::tempdir().unwrap();
        let (wall, options) = manual_clock(50_000);
        let (hlc, opened) = Hlc::open(dir.path(), options).unwrap();
        assert_eq!(opened.previous_instance, None);
        let mut last = hlc.now().unwrap();
        for step in 0..1_000u64 {
            if step % 100 == 0 {
                wall.store(50_000 - step, Ordering::SeqCst);
            }
            let next = hlc.now().unwrap();
            assert!(next > last, "{next} after {last}");
            assert_eq!(next.instance, opened.instance);
            last = next;
        }
    }

    #[test]
    fn a_reopened_clock_never_reissues_a_version_even_after_the_wall_clock_stepped_back() {
        let dir = tempfile::tempdir().unwrap();
        let (_, options) = manual_clock(1_000_000);
        let (hlc, first) = Hlc::open(dir.path(), options).unwrap();
        let issued: Vec<Version> = (0..100).map(|_| hlc.now().unwrap()).collect();
        drop(hlc);
        let (_, earlier) = manual_clock(900_000);
        let (hlc, second) = Hlc::open(dir.path(), earlier).unwrap();
        assert_eq!(second.previous_instance, Some(first.instance));
        assert!(second.resumed_from_ms > 1_000_000);
        let next = hlc.now().unwrap();
        assert!(
            issued.iter().all(|v| *v < next),
            "{next} not above what the first life issued"
        );
    }

    #[test]
    fn every_open_draws_a_new_instance_id() {
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = Hlc::open(dir.path(), HlcOptions::default()).unwrap();
        let (_, second) = Hlc::open(dir.path(), HlcOptions::default()).unwrap();
        assert_eq!(second.previous_instance, Some(first.instance));
        assert_ne!(second.instance, first.instance);
        assert_ne!(second.instance, InstanceId(0));
    }

    /// A backup of the directory is restored after a life issued versions
    /// from its mark: the next life resumes from the same mark and the
    /// same wall time, yet issues none of them again.
    #[test]
    fn a_restored_directory_never_reissues_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let (_, options) = manual_clock(5_000);
        drop(Hlc::open(dir.path(), options.clone()).unwrap());
        let backup: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.file_name(), std::fs::read(entry.path()).unwrap())
            })
            .collect();
        let lost_life: Vec<Version> = {
            let (hlc, _) = Hlc::open(dir.path(), options.clone()).unwrap();
            (0..100).map(|_| hlc.now().unwrap()).collect()
        };
        for (name, bytes) in &backup {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let (hlc, _) = Hlc::open(dir.path(), options).unwrap();
        for _ in 0..100 {
            let next = hlc.now().unwrap();
            assert!(!lost_life.contains(&next), "{next} issued twice");
        }
    }

    #[test]
    fn observing_a_newer_version_moves_the_clock_past_it_within_the_skew_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (_, options) = manual_clock(10_000);
        let (hlc, _) = Hlc::open(dir.path(), options).unwrap();
        let other = Version {
            physical_ms: 10_900,
            logical: 5,
            instance: InstanceId(7),
        };
        hlc.observe(other).unwrap();
        assert!(hlc.now().unwrap() > other);
        let far = Version {
            physical_ms: 12_000,
            logical: 0,
            instance: InstanceId(7),
        };
        let error = hlc.observe(far).unwrap_err();
        assert!(
            matches!(
                error,
                HlcError::TooFarAhead {
                    ahead_ms: 2_000,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            hlc.now().unwrap() < far,
            "a refused version does not move the clock"
        );
    }

    #[test]
    fn corrupt_clock_files_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MARK_FILE), "soon\n").unwrap();
        let error = Hlc::open(dir.path(), HlcOptions::default()).err().unwrap();
        assert!(error.to_string().contains("hlc-mark"), "{error}");
        std::fs::write(dir.path().join(MARK_FILE), "5\n").unwrap();
        std::fs::write(dir.path().join(INSTANCE_FILE), "0000000000000000\n").unwrap();
        let error = Hlc::open(dir.path(), HlcOptions::default()).err().unwrap();
        assert!(error.to_string().contains("instance-id"), "{error}");
    }

    #[test]
    fn concurrent_issuers_never_get_the_same_version() {
        let dir = tempfile::tempdir().unwrap();
        let (hlc, _) = Hlc::open(dir.path(), HlcOptions::default()).unwrap();
        let hlc = Arc::new(hlc);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let hlc = hlc.clone();
                std::thread::spawn(move || {
                    (0..5_000).map(|_| hlc.now().unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Version> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let issued = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), issued);
    }
}
