//! TLS and HTTP/2: what each listener terminates (`listeners.tls`), how
//! levee speaks HTTP/2 to clients (`server.http2`), and how it speaks TLS
//! to replicas (`upstream_tls`).
//!
//! Everything here is opt-in: with none of it set, levee serves plain
//! HTTP/1.1 as it always has. Files are named here and read by the host at
//! start (and again whenever they change); this crate checks only what it
//! can without reading them: that paths are given, not empty, and not
//! absurdly long, and that pairs come in pairs. A missing file, an
//! unreadable key or a key that does not match its certificate is refused
//! by the host at start, naming the field and the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Errors;

/// Longest path accepted for a certificate, key or CA file.
pub const TLS_PATH_BYTES_MAX: usize = 4096;
/// Most concurrent HTTP/2 streams a client connection may open.
pub const HTTP2_STREAMS_MAX_LIMIT: u32 = 1_000;
/// Smallest HTTP/2 flow-control window (the protocol's initial 64 KiB − 1).
pub const HTTP2_WINDOW_BYTES_MIN: u32 = 65_535;
/// Largest HTTP/2 flow-control window levee offers (16 MiB): a window is a
/// promise to buffer that much per stream or connection.
pub const HTTP2_WINDOW_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 header list a client may send (the decoded size, like
/// the HTTP/1 head bound).
pub const HTTP2_HEADER_LIST_BYTES_MAX_LIMIT: u32 = 1024 * 1024;

/// TLS on the listeners (`listeners.tls`): each listener is plain HTTP
/// unless it has an entry here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<ListenerTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<ListenerTls>,
}

impl ListenersTls {
    /// Whether neither listener terminates TLS (then it is not written out).
    pub fn is_empty(&self) -> bool {
        self.data.is_none() && self.admin.is_none()
    }

    pub(crate) fn validate_into(&self, errors: &mut Errors) {
        if let Some(data) = &self.data {
            data.validate_into("listeners.tls.data", errors);
        }
        if let Some(admin) = &self.admin {
            admin.validate_into("listeners.tls.admin", errors);
        }
    }
}

/// One listener's TLS: its certificate chain and key (PEM files, reloaded
/// when they change), and optionally the CAs a client certificate must
/// chain to (mutual TLS; without it no client certificate is asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The server certificate first, then its intermediates (PEM).
    pub cert_chain_file: PathBuf,
    /// The private key of the first certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) a client certificate must chain to; a client
    /// without one is refused during the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

impl ListenerTls {
    fn validate_into(&self, path: &str, errors: &mut Errors) {
        validate_path(
            &format!("{path}.cert_chain_file"),
            &self.cert_chain_file,
            errors,
        );
        validate_path(&format!("{path}.key_file"), &self.key_file, errors);
        if let Some(ca) = &self.client_ca_file {
            validate_path(&format!("{path}.client_ca_file"), ca, errors);
        }
    }
}

/// HTTP/2 towards clients (`server.http2`). Over TLS it is negotiated by
/// ALPN whenever `enabled`; on a plain listener a client may open with the
/// HTTP/2 preface (h2c "prior knowledge") only when `h2c` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Spec {
    /// Offer `h2` in ALPN on TLS listeners.
    pub enabled: bool,
    /// Accept HTTP/2 with prior knowledge on plain listeners.
    pub h2c: bool,
    /// Concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub streams_max: u32,
    /// Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE).
    pub stream_window_bytes: u32,
    /// The connection's receive window, shared by its streams.
    pub connection_window_bytes: u32,
    /// Decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub header_list_bytes_max: u32,
}

impl Default for Http2Spec {
    fn default() -> Self {
        Http2Spec {
            enabled: true,
            h2c: false,
            // nginx's http2_max_concurrent_streams and Envoy's conservative
            // edge setting are both 100.
            streams_max: 100,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 1024 * 1024,
            header_list_bytes_max: 64 * 1024,
        }
    }
}

impl Http2Spec {
    /// Whether every field has its default (then it is not written out).
    pub fn is_default(&self) -> bool {
        *self == Http2Spec::default()
    }

    pub(crate) fn validate_into(&self, errors: &mut Errors) {
        errors.range(
            "server.http2.streams_max",
            self.streams_max.into(),
            1,
            HTTP2_STREAMS_MAX_LIMIT.into(),
        );
        errors.range(
            "server.http2.stream_window_bytes",
            self.stream_window_bytes.into(),
            HTTP2_WINDOW_BYTES_MIN.into(),
            HTTP2_WINDOW_BYTES_MAX.into(),
        );
        errors.range(
            "server.http2.connection_window_bytes",
            self.connection_window_bytes.into(),
            HTTP2_WINDOW_BYTES_MIN.into(),
            HTTP2_WINDOW_BYTES_MAX.into(),
        );
        if self.connection_window_bytes < self.stream_window_bytes {
            errors.add(
                "server.http2.connection_window_bytes",
                format!(
                    "must be >= server.http2.stream_window_bytes ({})",
                    self.stream_window_bytes
                ),
            );
        }
        errors.range(
            "server.http2.header_list_bytes_max",
            self.header_list_bytes_max.into(),
            1024,
            HTTP2_HEADER_LIST_BYTES_MAX_LIMIT.into(),
        );
    }
}

/// TLS towards replicas (`upstream_tls`), used for every `https://` node
/// URL by requests, health checks and handoff alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsSpec {
    /// CA certificates (PEM) a replica's certificate must chain to;
    /// absent: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) levee presents to replicas that ask
    /// for one; with `client_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_chain_file: Option<PathBuf>,
    /// The key of `client_cert_chain_file`'s first certificate (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

impl UpstreamTlsSpec {
    /// Whether nothing is set (then it is not written out).
    pub fn is_default(&self) -> bool {
        *self == UpstreamTlsSpec::default()
    }

    pub(crate) fn validate_into(&self, errors: &mut Errors) {
        if let Some(ca) = &self.ca_file {
            validate_path("upstream_tls.ca_file", ca, errors);
        }
        match (&self.client_cert_chain_file, &self.client_key_file) {
            (Some(cert), Some(key)) => {
                validate_path("upstream_tls.client_cert_chain_file", cert, errors);
                validate_path("upstream_tls.client_key_file", key, errors);
            }
            (Some(_), None) => errors.add(
                "upstream_tls.client_key_file",
                "is required with client_cert_chain_file",
            ),
            (None, Some(_)) => errors.add(
                "upstream_tls.client_cert_chain_file",
                "is required with client_key_file",
            ),
            (None, None) => {}
        }
    }
}

fn validate_path(field: &str, path: &Path, errors: &mut Errors) {
    let bytes = path.as_os_str().len();
    if bytes == 0 {
        errors.add(field, "must not be empty");
    } else if bytes > TLS_PATH_BYTES_MAX {
        errors.add(field, format!("must be at most {TLS_PATH_BYTES_MAX} bytes"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Config;
    use crate::test_support::messages;

    fn refusals(config: serde_json::Value) -> Vec<String> {
        messages(Config::from_json(&config.to_string()).unwrap_err())
    }

    #[test]
    fn tls_and_http2_parse_and_default_off() {
        let plain = Config::from_json("{}").unwrap();
        assert!(plain.listeners.tls.is_empty());
        assert!(!plain.server.http2.h2c);
        let config = Config::from_json(
            &json!({
                "listeners": {"tls": {
                    "data": {"cert_chain_file": "/c.pem", "key_file": "/k.pem"},
                    "admin": {"cert_chain_file": "/c.pem", "key_file": "/k.pem", "client_ca_file": "/ca.pem"},
                }},
                "server": {"http2": {"h2c": true, "streams_max": 8}},
                "upstream_tls": {"ca_file": "/ca.pem"},
            })
            .to_string(),
        )
        .unwrap();
        let admin = config.listeners.tls.admin.as_ref().unwrap();
        assert_eq!(admin.client_ca_file.as_deref(), Some("/ca.pem".as_ref()));
        assert!(config.server.http2.h2c);
        assert_eq!(config.server.http2.streams_max, 8);
        assert_eq!(
            config.upstream_tls.ca_file.as_deref(),
            Some("/ca.pem".as_ref())
        );
    }

    #[test]
    fn bad_tls_fields_are_named() {
        let found = refusals(json!({
            "listeners": {"tls": {"data": {"cert_chain_file": "", "key_file": "/k"}}},
            "server": {"http2": {"streams_max": 0, "stream_window_bytes": 1_000_000, "connection_window_bytes": 70_000}},
            "upstream_tls": {"client_cert_chain_file": "/c.pem"},
        }));
        assert_eq!(
            found,
            [
                "listeners.tls.data.cert_chain_file: must not be empty",
                "server.http2.streams_max: must be between 1 and 1000, got 0",
                "server.http2.connection_window_bytes: must be >= server.http2.stream_window_bytes (1000000)",
                "upstream_tls.client_key_file: is required with client_cert_chain_file",
            ]
        );
        let missing_key = Config::from_json(
            &json!({"listeners": {"tls": {"admin": {"cert_chain_file": "/c"}}}}).to_string(),
        )
        .unwrap_err()
        .to_string();
        assert!(missing_key.contains("listeners.tls.admin"), "{missing_key}");
        assert!(missing_key.contains("key_file"), "{missing_key}");
    }
}
