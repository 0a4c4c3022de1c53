//! The walk's reader: a blocking thread that reads the log from the backlog
//! head and hands the walk, a few records at a time, the records that
//! concern its node (and just the LSN of those that do not, so the walk can
//! move the cursor past them).
//!
//! Why a thread and a small channel: the log is read with blocking I/O,
//! and a channel [`READ_AHEAD_RECORDS`] deep keeps the walk's memory at a
//! few records whatever the backlog.

use std::sync::Arc;

use levee_log::{LogError, Lsn as LogLsn};
use tokio::sync::mpsc;

use crate::replication::WritePlane;
use crate::replication::hints::{Lsn, NodeRef};
use crate::replication::record::{KIND_CLIENT_WRITE, WriteRecord};

/// Records read ahead of the delivery (bounds the walk's memory).
const READ_AHEAD_RECORDS: usize = 2;

/// One record, as the reader thread hands it over.
pub(super) enum Item {
    /// Not a write for this node.
    Skip(Lsn),
    /// A write for this node.
    Hint(Lsn, WriteRecord),
    /// A write record that cannot be decoded.
    Undecodable(Lsn, String),
    /// The log failed; the walk ends.
    Failed(LogError),
}

/// Reads the log from `from` on a blocking thread, handing over records
/// that concern `node` (and just the LSN of those that do not). The thread
/// ends when the log ends or the receiver is dropped.
pub(super) fn spawn_reader(
    plane: Arc<WritePlane>,
    node: NodeRef,
    from: Lsn,
) -> mpsc::Receiver<Item> {
    let (sender, receiver) = mpsc::channel(READ_AHEAD_RECORDS);
    tokio::task::spawn_blocking(move || {
        let reader = match plane.log.read_from(from as LogLsn) {
            Ok(reader) => reader,
            Err(error) => {
                let _ = sender.blocking_send(Item::Failed(error));
                return;
            }
        };
        for entry in reader {
            let item = match entry {
                Ok(entry) => classify(&node, entry.lsn, entry.kind, entry.payload),
                Err(error) => Item::Failed(error),
            };
            let failed = matches!(item, Item::Failed(_));
            if sender.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// Sorts one log record for `node`'s walk.
fn classify(node: &NodeRef, lsn: Lsn, kind: u8, payload: Vec<u8>) -> Item {
    if kind != KIND_CLIENT_WRITE {
        return Item::Skip(lsn);
    }
    // Decoding borrows the body from the payload: no copy.
    match WriteRecord::decode(payload, lsn) {
        Ok(record)
            if record.header.service != node.service || !record.header.targets_node(&node.node) =>
        {
            Item::Skip(lsn)
        }
        Ok(record) => Item::Hint(lsn, record),
        Err(error) => Item::Undecodable(lsn, error.to_string()),
    }
}
