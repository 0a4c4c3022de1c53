//! [`RecordedRequest`]: an owned copy of what a plugin could read of one
//! request, for replaying the call later (shadow, trial).
//!
//! Only what the binding's plugin may read is kept: the four request
//! strings and the values of the headers its allowlist names (credentials
//! never, whatever the list says). The strings share one buffer, so a
//! record costs one allocation for them however many there are.

use levee_policy::RequestView;
use levee_policy::limits::is_credential_header;
use serde_json::{Map, Value, json};

use crate::headers::HeaderAllowlist;

/// Longest string kept per field; a longer one is cut (at a char
/// boundary). A replay of a cut path may decide differently, which the
/// comparison then shows; the bound keeps a recording's memory fixed.
pub const RECORDED_STRING_BYTES_MAX: usize = 2 * 1024;

/// The request strings of one recorded call, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    text: String,
    /// End offsets in `text` of service, method, path, routing key.
    ends: [u32; 4],
    /// `(name, value end offset)`; values follow the four strings, in
    /// allowlist order; names are the allowlist's, which outlives nothing
    /// here, so they are copied too (short, and usually none are present).
    headers: Vec<(Box<str>, u32)>,
}

fn bounded(text: &str) -> &str {
    if text.len() <= RECORDED_STRING_BYTES_MAX {
        return text;
    }
    let mut end = RECORDED_STRING_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl RecordedRequest {
    /// Copies what a plugin bound with `headers` could read of `request`.
    pub fn of(request: &dyn RequestView, headers: &HeaderAllowlist) -> RecordedRequest {
        let fields = [
            request.service(),
            request.method(),
            request.path(),
            request.routing_key(),
        ];
        let capacity = fields.iter().map(|f| bounded(f).len()).sum();
        let mut text = String::with_capacity(capacity);
        let mut ends = [0u32; 4];
        for (end, field) in ends.iter_mut().zip(fields) {
            text.push_str(bounded(field));
            *end = text.len() as u32;
        }
        let mut kept = Vec::new();
        for name in headers.names() {
            if is_credential_header(name) {
                continue;
            }
            if let Some(value) = request.header(name) {
                text.push_str(bounded(value));
                kept.push((Box::from(name), text.len() as u32));
            }
        }
        RecordedRequest {
            text,
            ends,
            headers: kept,
        }
    }

    fn field(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.text[start as usize..self.ends[index] as usize]
    }

    /// What a replay shows of the request, as JSON.
    pub fn to_json(&self) -> Value {
        let mut headers = Map::new();
        let mut start = self.ends[3] as usize;
        for (name, end) in &self.headers {
            let value = &self.text[start..*end as usize];
            headers.insert(name.to_string(), Value::from(value));
            start = *end as usize;
        }
        json!({
            "service": self.field(0),
            "method": self.field(1),
            "path": self.field(2),
            "routing_key": self.field(3),
            "headers": headers,
        })
    }
}

impl RequestView for RecordedRequest {
    fn service(&self) -> &str {
        self.field(0)
    }
    fn method(&self) -> &str {
        self.field(1)
    }
    fn path(&self) -> &str {
        self.field(2)
    }
    fn routing_key(&self) -> &str {
        self.field(3)
    }
    fn header(&self, name: &str) -> Option<&str> {
        let mut start = self.ends[3] as usize;
        for (listed, end) in &self.headers {
            if **listed == *name {
                return Some(&self.text[start..*end as usize]);
            }
            start = *end as usize;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Live;
    impl RequestView for Live {
        fn service(&self) -> &str {
            "kv"
        }
        fn method(&self) -> &str {
            "PUT"
        }
        fn path(&self) -> &str {
            "/users/é42"
        }
        fn routing_key(&self) -> &str {
            "users"
        }
        fn header(&self, name: &str) -> Option<&str> {
            match name {
                "idempotency-key" => Some("k-1"),
                "x-tenant" => Some("acme"),
                "authorization" => Some("Bearer secret"),
                _ => None,
            }
        }
    }

    #[test]
    fn a_record_reads_back_what_the_plugin_could_read_and_no_more() {
        let allow = HeaderAllowlist::new(&["x-tenant", "x-absent", "idempotency-key"]).unwrap();
        let recorded = RecordedRequest::of(&Live, &allow);
        assert_eq!(recorded.service(), "kv");
        assert_eq!(recorded.method(), "PUT");
        assert_eq!(recorded.path(), "/users/é42");
        assert_eq!(recorded.routing_key(), "users");
        assert_eq!(recorded.header("x-tenant"), Some("acme"));
        assert_eq!(recorded.header("idempotency-key"), Some("k-1"));
        assert_eq!(recorded.header("x-absent"), None);
        assert_eq!(recorded.header("authorization"), None);
        let shown = recorded.to_json();
        assert_eq!(shown["headers"]["x-tenant"], "acme");
        assert!(shown["headers"].get("authorization").is_none());
        let none = RecordedRequest::of(&Live, &HeaderAllowlist::none());
        assert_eq!(none.header("idempotency-key"), None);
    }

    #[test]
    fn long_strings_are_cut_at_a_char_boundary() {
        let long = "é".repeat(RECORDED_STRING_BYTES_MAX);
        assert!(bounded(&long).len() <= RECORDED_STRING_BYTES_MAX);
        assert!(bounded(&long).len() >= RECORDED_STRING_BYTES_MAX - 1);
    }
}
