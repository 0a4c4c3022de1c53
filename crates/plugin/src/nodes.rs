//! [`NodeTable`]: a service's nodes as plugins see them, given to each
//! instance once (`set-nodes`) rather than on every call.
//!
//! Why a table with an epoch: a request-path call names nodes by their
//! index in this table, so the strings (ids, addresses, zones) cross into a
//! plugin only when the table changes, i.e. with the configuration. Every
//! table gets a process-unique epoch when it is built; a pooled instance
//! remembers the epoch of the last table it was given, and the call that
//! finds a different one first calls `set-nodes` with the new table, in
//! the same fenced call (same deadline, same failure handling). In the
//! steady state no call carries the table.
//!
//! The table also keeps its `bindgen!` form, built once here, so a
//! `set-nodes` costs the lowering only.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use levee_policy::limits::NODE_TABLE_MAX;
use levee_policy::{NodeIndex, NodeInfo};

use crate::bindings::wit_types;
use crate::convert;

/// The next table's epoch; 0 is never handed out (a fresh instance's
/// "no table yet").
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// A service's node table, in `node-index` order. Build one per
/// configuration (it is immutable) and share it (`Arc<NodeTable>`). A
/// clone keeps the epoch: it is the same table.
#[derive(Clone)]
pub struct NodeTable {
    epoch: u64,
    nodes: Vec<NodeInfo>,
    /// `nodes` as `set-nodes` takes them.
    wit: Vec<wit_types::NodeInfo>,
}

/// Why a [`NodeTable`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a node table holds at most {max} nodes, not {nodes}")]
pub struct NodeTableTooLarge {
    pub nodes: usize,
    pub max: usize,
}

impl NodeTable {
    /// A table of at most [`NODE_TABLE_MAX`] nodes, with a fresh epoch.
    pub fn new(nodes: Vec<NodeInfo>) -> Result<NodeTable, NodeTableTooLarge> {
        if nodes.len() > NODE_TABLE_MAX {
            return Err(NodeTableTooLarge {
                nodes: nodes.len(),
                max: NODE_TABLE_MAX,
            });
        }
        let wit = nodes.iter().map(convert::node_info).collect();
        Ok(NodeTable {
            epoch: NEXT_EPOCH.fetch_add(1, Ordering::Relaxed),
            nodes,
            wit,
        })
    }

    /// The nodes, indexed by [`NodeIndex`].
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node at `index`, if any.
    pub fn get(&self, index: NodeIndex) -> Option<&NodeInfo> {
        self.nodes.get(index as usize)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Unique to this table within the process (never 0).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn wit(&self) -> &[wit_types::NodeInfo] {
        &self.wit
    }
}

impl fmt::Debug for NodeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTable")
            .field("epoch", &self.epoch)
            .field("nodes", &self.nodes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            address: format!("http://127.0.0.1:1/{id}"),
            zone: Some("z".into()),
            weight: 2,
        }
    }

    #[test]
    fn every_table_has_its_own_epoch_and_its_wit_form() {
        let a = NodeTable::new(vec![node("a"), node("b")]).unwrap();
        let b = NodeTable::new(vec![node("a"), node("b")]).unwrap();
        assert_ne!(a.epoch(), b.epoch());
        assert_ne!(a.epoch(), 0);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(1).map(|n| n.id.as_str()), Some("b"));
        assert_eq!(a.get(2), None);
        assert_eq!(a.wit().len(), 2);
        assert_eq!(a.wit()[1].id, "b");
        assert_eq!(a.wit()[1].zone.as_deref(), Some("z"));
        assert_eq!(a.wit()[1].weight, 2);
    }

    #[test]
    fn oversized_tables_are_refused() {
        let nodes = vec![NodeInfo::default(); NODE_TABLE_MAX + 1];
        assert_eq!(
            NodeTable::new(nodes).unwrap_err(),
            NodeTableTooLarge {
                nodes: NODE_TABLE_MAX + 1,
                max: NODE_TABLE_MAX
            }
        );
        assert!(NodeTable::new(Vec::new()).unwrap().is_empty());
    }
}
