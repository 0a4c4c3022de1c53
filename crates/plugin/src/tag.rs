//! [`Tag`]: a plugin's name or version as every answer carries it
//! ([`crate::Source`]), copied without reference counting.
//!
//! Why interned: every plugin answer names the version that gave it. With
//! `Arc<str>` that was two reference-count increments and two decrements
//! per call, atomic read-modify-writes on cache lines that every core
//! serving the plugin shares. A `Tag` is a `&'static str`: copying and
//! dropping it touch nothing.
//!
//! The price is that an interned string is never freed. The interner keeps
//! one copy per distinct string, and only names and versions are interned
//! (when a component is loaded, and when a test builds a [`crate::Source`]),
//! so what it holds is bounded by the distinct plugin versions a process
//! loads in its lifetime: about 100 bytes each (a 64-digit version plus a
//! name), so a megabyte after ten thousand reloads of new code.

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};

use serde::{Serialize, Serializer};

/// An interned plugin name or version: `Copy`, compared and printed as
/// the string it holds, and a `&str` wherever one is expected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(&'static str);

impl Tag {
    /// The one interned copy of `text`.
    pub fn intern(text: &str) -> Tag {
        static INTERNED: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let interned = INTERNED.get_or_init(Mutex::default);
        // A panic while holding the lock cannot leave a set of leaked
        // strings inconsistent: poisoning is ignored.
        let mut interned = interned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&text) = interned.get(text) {
            return Tag(text);
        }
        let text: &'static str = Box::leak(text.into());
        interned.insert(text);
        Tag(text)
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl Deref for Tag {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl From<&str> for Tag {
    fn from(text: &str) -> Tag {
        Tag::intern(text)
    }
}

impl PartialEq<str> for Tag {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Tag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_string() {
        let a = Tag::intern("route-affinity");
        let b = Tag::from(String::from("route-affinity").as_str());
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_ne!(a, Tag::intern("retry-backoff"));
        assert_eq!(a, "route-affinity");
        assert_eq!(&*a, "route-affinity");
        assert_eq!(a.to_string(), "route-affinity");
        assert_eq!(format!("{a:?}"), "\"route-affinity\"");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"route-affinity\"");
    }
}
