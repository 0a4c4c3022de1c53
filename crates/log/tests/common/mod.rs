//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

pub mod tmpfs;

use std::path::Path;

use levee_log::{Log, LogOptions, Record, RecoveryReport, SyncMode};

/// Small segments and records so that tests rotate often and run fast.
pub fn small_options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 4096,
        record_bytes_max: 1024,
        log_bytes_max: 64 << 20,
        sync: SyncMode::Always,
        repair: false,
        pending_bytes_max: 64 << 10,
        checkpoint_bytes_max: 1 << 20,
        checkpoints_kept: 2,
    }
}

pub fn open(dir: &Path, options: LogOptions) -> (Log, RecoveryReport) {
    Log::open(dir, options).expect("open log")
}

/// Deterministic payload for `(lsn, size)` so that tests can check contents
/// without keeping them.
pub fn payload_for(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn read_all(log: &Log, from: u64) -> Vec<Record> {
    log.read_from(from)
        .expect("read_from")
        .collect::<Result<Vec<_>, _>>()
        .expect("records verify")
}
