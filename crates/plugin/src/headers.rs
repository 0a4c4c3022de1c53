//! [`HeaderAllowlist`]: which request headers one binding's plugin may read
//! through `request.header`.
//!
//! Why an allowlist rather than a denylist: a request carries whatever its
//! client sends (session tokens under made-up names, tenant ids, internal
//! routing hints), and a policy plugin is code the operator may not have
//! written. So a plugin reads only the headers its binding names
//! (`headers`, default [`PLUGIN_HEADERS_DEFAULT`]: `idempotency-key`), and
//! never a credential ([`CREDENTIAL_HEADERS`]), even if listed: the list
//! is refused with the credential named, and the `request.header` import
//! checks again on every read.

use std::sync::Arc;

use levee_policy::limits::{
    PLUGIN_HEADERS_DEFAULT, PLUGIN_HEADERS_MAX, is_credential_header, plugin_header_name_problem,
};

use crate::error::LoadError;

#[cfg(doc)]
use levee_policy::limits::CREDENTIAL_HEADERS;

/// The lower-case header names one binding's plugin may read. Cheap to
/// clone (shared by every instance of the binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderAllowlist {
    names: Arc<[Box<str>]>,
}

impl HeaderAllowlist {
    /// Checks `names`: at most [`PLUGIN_HEADERS_MAX`], each a lower-case
    /// header name of bounded length, no duplicates, and no credential
    /// ([`CREDENTIAL_HEADERS`]).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<HeaderAllowlist, LoadError> {
        if names.len() > PLUGIN_HEADERS_MAX {
            return Err(LoadError::InvalidHeaders(format!(
                "{} names listed, more than the {PLUGIN_HEADERS_MAX} allowed",
                names.len()
            )));
        }
        let mut kept: Vec<Box<str>> = Vec::with_capacity(names.len());
        for name in names.iter().map(AsRef::as_ref) {
            if let Some(problem) = plugin_header_name_problem(name) {
                return Err(LoadError::InvalidHeaders(problem));
            }
            if kept.iter().any(|seen| **seen == *name) {
                return Err(LoadError::InvalidHeaders(format!(
                    "{name:?} is listed twice"
                )));
            }
            kept.push(name.into());
        }
        Ok(HeaderAllowlist { names: kept.into() })
    }

    /// No header at all.
    pub fn none() -> HeaderAllowlist {
        HeaderAllowlist {
            names: Arc::new([]),
        }
    }

    /// Whether a plugin may read `name` (already lower-case): listed, and
    /// not a credential.
    pub fn allows(&self, name: &str) -> bool {
        self.names.iter().any(|listed| **listed == *name) && !is_credential_header(name)
    }

    /// The listed names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }
}

impl Default for HeaderAllowlist {
    /// [`PLUGIN_HEADERS_DEFAULT`]: `idempotency-key` only.
    fn default() -> HeaderAllowlist {
        HeaderAllowlist::new(&PLUGIN_HEADERS_DEFAULT).expect("the default list is valid")
    }
}

#[cfg(test)]
mod tests {
    use levee_policy::limits::CREDENTIAL_HEADERS;

    use super::*;

    #[test]
    fn the_default_is_the_idempotency_key_only() {
        let default = HeaderAllowlist::default();
        assert_eq!(default.names().collect::<Vec<_>>(), ["idempotency-key"]);
        assert!(default.allows("idempotency-key"));
        assert!(!default.allows("x-tenant"));
        assert!(!HeaderAllowlist::none().allows("idempotency-key"));
    }

    #[test]
    fn credentials_duplicates_and_bad_names_are_refused() {
        let listed = HeaderAllowlist::new(&["x-tenant", "idempotency-key"]).unwrap();
        assert!(listed.allows("x-tenant"));
        for credential in CREDENTIAL_HEADERS {
            let error = HeaderAllowlist::new(&["x-tenant", credential]).unwrap_err();
            assert!(error.to_string().contains("is a credential"), "{error}");
        }
        let twice = HeaderAllowlist::new(&["x-a", "x-a"]).unwrap_err();
        assert!(twice.to_string().contains("listed twice"), "{twice}");
        assert!(HeaderAllowlist::new(&["X-Tenant"]).is_err());
        let many: Vec<String> = (0..=PLUGIN_HEADERS_MAX).map(|i| format!("x-{i}")).collect();
        assert!(HeaderAllowlist::new(&many).is_err());
    }
}
