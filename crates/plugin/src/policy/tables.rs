//! [`TableCache`]: the node table a recorded call refers to, shared by
//! every record made while the table was current.
//!
//! A call borrows its service's [`NodeTable`]; a record must own one. The
//! table changes only with the configuration, so the recorder keeps the
//! last one it copied and copies again only when a call brings a table of
//! another epoch: one copy per configuration, not per call.

use std::sync::{Arc, Mutex};

use crate::nodes::NodeTable;

/// The last node table a recorder copied.
#[derive(Default)]
pub struct TableCache {
    last: Mutex<Option<Arc<NodeTable>>>,
}

impl TableCache {
    /// `table` owned: the cached copy when its epoch matches, a new copy
    /// otherwise.
    pub fn owned(&self, table: &NodeTable) -> Arc<NodeTable> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some(cached) if cached.epoch() == table.epoch() => cached.clone(),
            _ => {
                let copy = Arc::new(table.clone());
                *last = Some(copy.clone());
                copy
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use levee_policy::NodeInfo;

    use super::*;

    #[test]
    fn one_copy_per_table() {
        let cache = TableCache::default();
        let table = NodeTable::new(vec![NodeInfo::default()]).unwrap();
        let first = cache.owned(&table);
        let second = cache.owned(&table);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.epoch(), table.epoch());
        let other = NodeTable::new(vec![NodeInfo::default()]).unwrap();
        assert_eq!(cache.owned(&other).epoch(), other.epoch());
    }
}
