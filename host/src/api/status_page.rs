//! `GET /admin/`: the status page, one self-contained HTML document.
//!
//! Why self-contained: the admin listener is often reachable only through a
//! tunnel, from a machine without internet access, and an operator looking
//! at it is usually in the middle of an incident. So the page carries its
//! CSS, JavaScript and drawings (inline SVG) and loads nothing else; its
//! only request is `GET /admin/state` (JSON) every two seconds.
//!
//! The HTML shell needs no token (it holds no data); the data fetches send
//! the admin token, which the page keeps in `sessionStorage` (see
//! [`crate::api::auth`]). The page is served with a strict Content Security
//! Policy: scripts and styles are allowed only by the SHA-256 of the exact
//! inline blocks below, connections only to this origin, and nothing may
//! frame it. Injected markup could therefore not run even if some value
//! escaped the page's `textContent`-only rendering.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The page, compiled into the binary.
pub const HTML: &str = include_str!("status_page.html");

/// `GET /admin/`.
pub async fn page() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], HTML).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        content_security_policy().clone(),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /admin` (no slash): the page's relative links assume the slash.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/admin/")
}

fn content_security_policy() -> &'static HeaderValue {
    static POLICY: OnceLock<HeaderValue> = OnceLock::new();
    POLICY.get_or_init(|| {
        let script = inline_block(HTML, "script").expect("the page has a <script> block");
        let style = inline_block(HTML, "style").expect("the page has a <style> block");
        let policy = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            base64(&Sha256::digest(script.as_bytes())),
            base64(&Sha256::digest(style.as_bytes())),
        );
        HeaderValue::from_str(&policy).expect("the policy is visible ASCII")
    })
}

/// The text between `<tag>` and `</tag>` (the first such block).
fn inline_block<'a>(html: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = html.find(&open)? + open.len();
    let end = start + html[start..].find(&format!("</{tag}>"))?;
    Some(&html[start..end])
}

/// Standard base64 with padding (RFC 4648 §4), as CSP hash sources use.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(ALPHABET[(word >> (18 - 6 * position) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ];
        for (input, expected) in vectors {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn page_is_self_contained() {
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "<link "] {
            assert!(
                !HTML.contains(external),
                "the page loads an external asset: {external}"
            );
        }
        assert!(HTML.contains("/admin/state"));
    }

    #[test]
    fn policy_pins_the_inline_blocks() {
        let policy = content_security_policy().to_str().unwrap();
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(
            inline_block("<a><script>x()</script>", "script"),
            Some("x()")
        );
    }
}
