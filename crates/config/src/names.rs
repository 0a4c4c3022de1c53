//! Names and addresses: service and plugin names, node URLs.

use crate::SERVICE_NAME_BYTES_MAX;

/// `[a-z0-9_-]{1,64}`, not starting with `_` or `-`.
pub fn validate_service_name(name: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    if name.is_empty() || name.len() > SERVICE_NAME_BYTES_MAX {
        return Err(format!("must be 1 to {SERVICE_NAME_BYTES_MAX} bytes"));
    }
    if !name.bytes().all(allowed) {
        return Err(format!("{name:?} may only contain a-z, 0-9, '_' and '-'"));
    }
    if name.starts_with(['_', '-']) {
        return Err(format!(
            "{name:?} must not start with '_' or '-' (reserved for levee's own paths)"
        ));
    }
    Ok(())
}

/// Plugin names share the service-name alphabet (they are file names).
pub fn validate_plugin_name(name: &str) -> Result<(), String> {
    validate_service_name(name)
}

/// A node URL: `http://host:port` with an optional trailing `/`.
pub fn parse_node_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "{url:?} must start with http:// or https:// (TLS per upstream_tls)"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{url:?} has no host"));
    };
    if authority.host().is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if authority.port_u16().is_none() {
        return Err(format!("{url:?} must name a port"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{url:?} must not have a path or query"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(validate_service_name("kv_1-a").is_ok());
        assert!(validate_service_name("").is_err());
        assert!(validate_service_name(&"a".repeat(65)).is_err());
        assert!(validate_service_name("Bad").is_err());
        assert!(validate_service_name("_levee").is_err());
        assert!(validate_service_name("-x").is_err());
        assert!(validate_plugin_name("../etc/passwd").is_err());
    }

    #[test]
    fn node_urls() {
        let uri = parse_node_url("http://127.0.0.1:7001/").unwrap();
        assert_eq!(uri.port_u16(), Some(7001));
        assert!(parse_node_url("https://replica.internal:8443").is_ok());
        for bad in [
            "ftp://x:1",
            "http://x",
            "http://x:1/path",
            "http://x:1/?q",
            "not a url",
            // An empty host that `http` parses (found by fuzzing).
            "http://:[1:]:7001",
        ] {
            assert!(parse_node_url(bad).is_err(), "{bad}");
        }
    }
}
