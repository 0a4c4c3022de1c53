//! The routing key, and the one rule that normalizes the path and query it
//! comes from.
//!
//! Placement is only sound if every spelling of a key that the replica will
//! treat as the same key hashes to the same replicas. Upstreams decode
//! paths and queries (axum, Go, Express and the `kv-replica` all do), so
//! `/kv/alice`, `/kv/%61lice` and `/kv/bob/../alice` can all mean `alice`
//! there. levee therefore rewrites every request into one canonical form
//! before it looks for the key, forwards **that** form upstream (the read
//! path, the write fan-out and the hints all share it), and refuses what
//! has no single meaning:
//!
//! - **Percent-escapes** (RFC 3986 §6.2.2, extended): an escape whose byte
//!   may stand for itself is decoded (`%61` → `a`, `%3A` → `:`); every other
//!   byte is escaped with uppercase hex (`%c3%a9` and a raw `é` both become
//!   `%C3%A9`). A `%` not followed by two hex digits: 400. In a path a byte
//!   stands for itself when it is unreserved, a sub-delim, `:` or `@`; in a
//!   query when it is unreserved or one of `! $ ' ( ) * , : @ / ?` (not `&`
//!   `=` `;` `+`, which structure a query). In a query `+` is a space and a
//!   space is written `+` (form encoding); a literal plus is `%2B`.
//! - **Dot-segments**: a path segment that is `.` or `..` (raw or encoded)
//!   is refused (400 `ambiguous path: dot-segment`), not resolved: upstreams
//!   disagree about resolving them, and the key must not depend on whose
//!   rule applies.
//! - **Empty segments**: `//` inside a path is refused (400); many servers
//!   merge slashes, which would shift the segment the key is read from. A
//!   single trailing `/` is kept.
//! - **Encoded slash and NUL**: `%2F` in a path (a key containing `/`
//!   would be one segment here and two in an upstream that decodes before
//!   routing) and `%00` anywhere (C strings end there) are refused (400).
//!   Keys with a `/` belong in a query parameter or a header.
//! - **Duplicate key parameter**: a query naming the key parameter twice
//!   (`?key=a&key=b`, names compared decoded) is refused (400): frameworks
//!   disagree on whether the first or the last wins.
//!
//! The key the ring hashes is its canonical spelling: for the usual key of
//! letters, digits and `-._~` that is the key itself; `café` in a path is
//! hashed as `caf%C3%A9` whichever way the client spelled it, and a tool
//! computing placement applies the same rule. A header key is used byte for
//! byte (visible ASCII only).
//!
//! A request whose path and query are already canonical (the usual case:
//! no `%`, no odd bytes) is checked without copying; only one that needs
//! rewriting costs an allocation.

use std::borrow::Cow;

use hyper::header::{HeaderMap, HeaderValue};

use crate::cluster::service::Service;
use crate::config::KeyRule;
use crate::dataplane::error::AppError;

/// Bytes of a routing key.
pub const ROUTING_KEY_BYTES_MAX: usize = 1024;

/// A request's path and query in canonical form (borrowed when they already
/// were).
#[derive(Debug)]
pub struct Normalized<'a> {
    pub path: Cow<'a, str>,
    pub query: Option<Cow<'a, str>>,
}

/// The canonical form of `path` (the upstream path, starting with `/`) and
/// `query`, or the reason there is none.
pub fn normalize<'a>(path: &'a str, query: Option<&'a str>) -> Result<Normalized<'a>, AppError> {
    let path = if path.bytes().all(|byte| byte == b'/' || is_path_raw(byte)) {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(canonical_path(path)?)
    };
    check_segments(&path)?;
    let query = match query {
        Some(query) if query.bytes().all(is_query_structure_or_raw) => Some(Cow::Borrowed(query)),
        Some(query) => Some(Cow::Owned(canonical_query(query)?)),
        None => None,
    };
    Ok(Normalized { path, query })
}

/// Unreserved (RFC 3986 §2.3).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// A byte written as itself in a canonical path segment: a `pchar` that is
/// not an escape (unreserved, sub-delims, `:`, `@`).
fn is_path_raw(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// A byte written as itself in a canonical query name or value.
fn is_query_raw(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b',' | b':' | b'@' | b'/' | b'?'
        )
}

fn is_query_structure_or_raw(byte: u8) -> bool {
    matches!(byte, b'&' | b'=' | b'+') || is_query_raw(byte)
}

/// The byte of the escape `%XY` at `at` in `text`.
fn escape_at(text: &[u8], at: usize, part: &str) -> Result<u8, AppError> {
    let digit = |offset: usize| {
        text.get(at + offset)
            .and_then(|&byte| char::from(byte).to_digit(16))
    };
    match (digit(1), digit(2)) {
        (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
        _ => Err(AppError::BadRequest(format!(
            "malformed percent-escape in the {part} at byte {at}: expected % and two hex digits"
        ))),
    }
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 15)]));
}

fn canonical_path(path: &str) -> Result<String, AppError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 8);
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte == b'/' {
            out.push('/');
            at += 1;
            continue;
        }
        let decoded = if byte == b'%' {
            let decoded = escape_at(bytes, at, "path")?;
            refuse_in_path(decoded)?;
            at += 3;
            decoded
        } else {
            at += 1;
            byte
        };
        if is_path_raw(decoded) {
            out.push(char::from(decoded));
        } else {
            push_escaped(&mut out, decoded);
        }
    }
    Ok(out)
}

/// Decoded bytes that may not appear in a path segment.
fn refuse_in_path(decoded: u8) -> Result<(), AppError> {
    match decoded {
        b'/' => Err(AppError::BadRequest(
            "ambiguous path: encoded slash (%2F) in a segment; put keys containing / in a \
             query parameter or a header"
                .into(),
        )),
        0 => Err(encoded_nul()),
        _ => Ok(()),
    }
}

fn encoded_nul() -> AppError {
    AppError::BadRequest("ambiguous request: encoded NUL (%00)".into())
}

/// Refuses dot-segments and empty segments (but a trailing `/`) in a
/// canonical path: there, `%2E` is already `.`.
fn check_segments(path: &str) -> Result<(), AppError> {
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        match segment {
            "." | ".." => {
                return Err(AppError::BadRequest(
                    "ambiguous path: dot-segment (. or ..)".into(),
                ));
            }
            "" if segments.peek().is_some() => {
                return Err(AppError::BadRequest(
                    "ambiguous path: empty segment (//)".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn canonical_query(query: &str) -> Result<String, AppError> {
    let mut out = String::with_capacity(query.len() + 8);
    for (index, pair) in query.split('&').enumerate() {
        if index > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) => {
                push_query_part(&mut out, name)?;
                out.push('=');
                push_query_part(&mut out, value)?;
            }
            None => push_query_part(&mut out, pair)?,
        }
    }
    Ok(out)
}

/// One query name or value, form-decoded and written canonically.
fn push_query_part(out: &mut String, part: &str) -> Result<(), AppError> {
    let bytes = part.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let (decoded, next) = form_decoded_at(bytes, at)?;
        if decoded == 0 {
            return Err(encoded_nul());
        }
        at = next;
        match decoded {
            b' ' => out.push('+'),
            byte if is_query_raw(byte) => out.push(char::from(byte)),
            byte => push_escaped(out, byte),
        }
    }
    Ok(())
}

/// Whether the canonical query part `part` decodes to `plain`.
fn decodes_to(part: &str, plain: &str) -> bool {
    let bytes = part.as_bytes();
    let mut plain = plain.bytes();
    let mut at = 0;
    while at < bytes.len() {
        let Ok((decoded, next)) = form_decoded_at(bytes, at) else {
            return false;
        };
        at = next;
        if plain.next() != Some(decoded) {
            return false;
        }
    }
    plain.next().is_none()
}

/// The form-decoded byte at `at` in a query part (`%XY` is that byte, `+`
/// a space) and where the next one starts.
fn form_decoded_at(bytes: &[u8], at: usize) -> Result<(u8, usize), AppError> {
    match bytes[at] {
        b'%' => Ok((escape_at(bytes, at, "query")?, at + 3)),
        b'+' => Ok((b' ', at + 1)),
        byte => Ok((byte, at + 1)),
    }
}

/// A routing key where [`routing_key`] found it.
pub enum Found<'a> {
    Header(&'a HeaderValue),
    /// A slice of the path or the query given to [`routing_key`].
    Text(&'a str),
}

impl Found<'_> {
    fn len(&self) -> usize {
        match self {
            Found::Header(value) => value.len(),
            Found::Text(text) => text.len(),
        }
    }
}

/// The canonical spelling of a key given on its own (the admin ring
/// lookup's `?key=`), as the data plane would hash it under the service's
/// rule: escaped as a path segment or a query value, or byte for byte for
/// a header key. Refused for the same reasons a request would be.
pub fn canonical_key(service: &Service, raw: &str) -> Result<String, AppError> {
    match &service.spec.key {
        KeyRule::Header(_) => Ok(raw.to_owned()),
        KeyRule::PathSegment(_) => {
            let path = format!("/{raw}");
            let normalized = normalize(&path, None)?;
            let key = &normalized.path[1..];
            if key.contains('/') {
                return Err(AppError::BadRequest(
                    "a path-segment key cannot contain /".into(),
                ));
            }
            Ok(key.to_owned())
        }
        KeyRule::Query(_) => {
            let query = format!("k={raw}");
            let normalized = normalize("/", Some(&query))?;
            let query = normalized.query.unwrap_or_default();
            Ok(query.strip_prefix("k=").unwrap_or(&query).to_owned())
        }
    }
}

/// Extracts the routing key per the service's rule from a canonical path
/// and query (see [`normalize`]).
pub fn routing_key<'a>(
    service: &Service,
    headers: &'a HeaderMap,
    upstream_path: &'a str,
    query: Option<&'a str>,
) -> Result<Found<'a>, AppError> {
    let found = match &service.spec.key {
        KeyRule::Header(name) => {
            let header = service.key_header.as_ref().expect("built with the service");
            match headers.get(header) {
                Some(value) if value.to_str().is_err() => {
                    return Err(AppError::BadRequest(format!(
                        "routing key header {name} is not visible ASCII"
                    )));
                }
                value => value.map(Found::Header),
            }
        }
        KeyRule::PathSegment(index) => upstream_path
            .split('/')
            .skip(1)
            .nth(*index as usize)
            .map(Found::Text),
        KeyRule::Query(name) => query_value(query, name)?.map(Found::Text),
    };
    // Where the key was expected, for an error's reason only.
    let wanted = || match &service.spec.key {
        KeyRule::Header(name) => format!("header {name}"),
        KeyRule::PathSegment(index) => {
            format!("path segment {index} after /{}", service.name())
        }
        KeyRule::Query(name) => format!("query parameter {name}"),
    };
    match found {
        Some(key) if key.len() != 0 && key.len() <= ROUTING_KEY_BYTES_MAX => Ok(key),
        Some(key) if key.len() > ROUTING_KEY_BYTES_MAX => Err(AppError::BadRequest(format!(
            "routing key ({}) is {} bytes, more than {ROUTING_KEY_BYTES_MAX}",
            wanted(),
            key.len()
        ))),
        _ => Err(AppError::BadRequest(format!(
            "missing routing key: expected {}",
            wanted()
        ))),
    }
}

/// The value of the one parameter of a canonical query whose decoded name
/// is `name`; a second one is refused.
fn query_value<'a>(query: Option<&'a str>, name: &str) -> Result<Option<&'a str>, AppError> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !decodes_to(key, name) {
            continue;
        }
        if found.is_some() {
            return Err(AppError::BadRequest(format!(
                "ambiguous query: parameter {name} appears more than once"
            )));
        }
        found = Some(value);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, String> {
        normalize(raw, None)
            .map(|n| n.path.into_owned())
            .map_err(|e| e.to_string())
    }

    fn query(raw: &str) -> Result<String, String> {
        normalize("/", Some(raw))
            .map(|n| n.query.unwrap().into_owned())
            .map_err(|e| e.to_string())
    }

    fn service(key: serde_json::Value) -> Service {
        let spec = serde_json::json!({
            "name": "kv",
            "nodes": [{"id": "a", "url": "http://127.0.0.1:9"}],
            "key": key,
        });
        let spec: crate::config::ServiceSpec = serde_json::from_value(spec).unwrap();
        spec.validate().unwrap();
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default()).unwrap();
        Service::build(spec, &runtime).unwrap()
    }

    /// The admin ring lookup hashes what the data plane would.
    #[test]
    fn a_key_on_its_own_gets_the_data_planes_spelling() {
        let by_path = service(serde_json::json!({"path_segment": 1}));
        assert_eq!(canonical_key(&by_path, "%61lice").unwrap(), "alice");
        assert_eq!(canonical_key(&by_path, "caf%c3%a9").unwrap(), "caf%C3%A9");
        assert!(canonical_key(&by_path, "..").is_err());
        assert!(canonical_key(&by_path, "a%2Fb").is_err());
        let by_query = service(serde_json::json!({"query": "key"}));
        assert_eq!(canonical_key(&by_query, "a+b%21").unwrap(), "a+b!");
        let by_header = service(serde_json::json!({"header": "x-key"}));
        assert_eq!(canonical_key(&by_header, "%61").unwrap(), "%61");
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        let normalized = normalize("/kv/alice/", Some("a=1&b=x+y")).unwrap();
        assert!(matches!(normalized.path, Cow::Borrowed("/kv/alice/")));
        assert!(matches!(normalized.query, Some(Cow::Borrowed("a=1&b=x+y"))));
    }

    #[test]
    fn escapes_are_decoded_or_uppercased() {
        assert_eq!(path("/kv/%61lic%65").unwrap(), "/kv/alice");
        assert_eq!(path("/kv/a%3ab%2B").unwrap(), "/kv/a:b+");
        assert_eq!(path("/kv/caf%c3%a9").unwrap(), "/kv/caf%C3%A9");
        assert_eq!(path("/kv/café").unwrap(), "/kv/caf%C3%A9");
        assert_eq!(path("/kv/a%20b{}").unwrap(), "/kv/a%20b%7B%7D");
        assert_eq!(path("/kv/100%25").unwrap(), "/kv/100%25");
        for bad in ["/kv/%", "/kv/%4", "/kv/%zz"] {
            assert!(
                path(bad)
                    .unwrap_err()
                    .starts_with("malformed percent-escape in the path")
            );
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for dots in [
            "/kv/bob/../alice",
            "/kv/./a",
            "/kv/%2e%2E/x",
            "/kv/.%2e",
            "/..",
        ] {
            assert_eq!(
                path(dots).unwrap_err(),
                "ambiguous path: dot-segment (. or ..)",
                "{dots}"
            );
        }
        assert_eq!(path("/kv/...").unwrap(), "/kv/...");
        assert_eq!(
            path("//kv/a").unwrap_err(),
            "ambiguous path: empty segment (//)"
        );
        assert_eq!(
            path("/kv//a").unwrap_err(),
            "ambiguous path: empty segment (//)"
        );
        assert!(
            path("/kv/a%2fb")
                .unwrap_err()
                .starts_with("ambiguous path: encoded slash")
        );
        assert_eq!(
            path("/kv/a%00").unwrap_err(),
            "ambiguous request: encoded NUL (%00)"
        );
        assert_eq!(path("/").unwrap(), "/");
    }

    #[test]
    fn queries_are_form_canonical() {
        assert_eq!(query("k=%61%20b+c").unwrap(), "k=a+b+c");
        assert_eq!(query("k=a%2bb;c").unwrap(), "k=a%2Bb%3Bc");
        assert_eq!(query("%6B=%7e&flag").unwrap(), "k=~&flag");
        assert_eq!(query("k=a/b?c").unwrap(), "k=a/b?c");
        assert!(
            query("k=%g1")
                .unwrap_err()
                .starts_with("malformed percent-escape in the query")
        );
    }

    #[test]
    fn the_key_parameter_is_found_once_by_its_decoded_name() {
        assert_eq!(query_value(Some("a=1&k=x"), "k").unwrap(), Some("x"));
        assert_eq!(query_value(Some("a=1"), "k").unwrap(), None);
        assert_eq!(query_value(Some("my+key=x"), "my key").unwrap(), Some("x"));
        assert_eq!(query_value(Some("%6B=x"), "k").unwrap(), Some("x"));
        for twice in ["k=a&k=b", "k=a&k", "k&k=b"] {
            assert_eq!(
                query_value(Some(twice), "k").unwrap_err().to_string(),
                "ambiguous query: parameter k appears more than once"
            );
        }
    }
}
