//! The admin listener's `admin_allowed_hosts`: names, not URLs.
//!
//! Each entry is what may appear before the port in a request's `Host`
//! header: a DNS name (case-insensitive) or an IP address (IPv6 with or
//! without brackets). A port is refused rather than ignored: the host
//! checks names, not ports (see the host's `control::admin_origin`), and an
//! entry that looks port-specific but is not would mislead.

use std::net::IpAddr;

use crate::ADMIN_ALLOWED_HOSTS_MAX;
use crate::error::Errors;

/// Longest DNS name (RFC 1035 §2.3.4).
const HOST_NAME_BYTES_MAX: usize = 253;
/// Longest DNS label.
const LABEL_BYTES_MAX: usize = 63;

/// Checks every entry of `admin_allowed_hosts`, reporting each bad one at
/// its index.
pub(crate) fn validate_admin_hosts(hosts: &[String], errors: &mut Errors) {
    if hosts.len() > ADMIN_ALLOWED_HOSTS_MAX {
        errors.add(
            "admin_allowed_hosts",
            format!("at most {ADMIN_ALLOWED_HOSTS_MAX} entries"),
        );
        return;
    }
    for (index, host) in hosts.iter().enumerate() {
        if let Err(message) = validate_admin_host(host) {
            errors.add(format!("admin_allowed_hosts[{index}]"), message);
        }
    }
}

/// A DNS name or an IP address, without a port.
pub fn validate_admin_host(host: &str) -> Result<(), String> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    if unbracketed.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let shown: String = host.chars().take(HOST_NAME_BYTES_MAX).collect();
    if host.contains(':') {
        return Err(format!(
            "{shown:?} must be a host name or IP address without a port"
        ));
    }
    if host.is_empty() || host.len() > HOST_NAME_BYTES_MAX {
        return Err(format!("must be 1 to {HOST_NAME_BYTES_MAX} bytes"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= LABEL_BYTES_MAX
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!(
            "{shown:?} is not a host name (dot-separated labels of a-z, 0-9 and '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::test_support::messages;
    use serde_json::json;

    use super::*;

    #[test]
    fn names_and_addresses_pass_ports_and_junk_do_not() {
        for good in [
            "levee.internal",
            "Admin-1.Example.COM",
            "10.0.0.5",
            "::1",
            "[fe80::1]",
            "localhost",
        ] {
            assert_eq!(validate_admin_host(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "evil.com:9901",
            "a..b",
            "-a.b",
            "a b",
            "http://x",
            &"a".repeat(64),
        ] {
            assert!(validate_admin_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_errors_name_the_entry() {
        let text = json!({"admin_allowed_hosts": ["ok.example", "bad:1"]}).to_string();
        let error = Config::from_json(&text).unwrap_err();
        assert_eq!(
            messages(error),
            vec![
                "admin_allowed_hosts[1]: \"bad:1\" must be a host name or IP address without a port"
            ]
        );
        let many: Vec<String> = (0..=ADMIN_ALLOWED_HOSTS_MAX)
            .map(|i| format!("h{i}.example"))
            .collect();
        let error =
            Config::from_json(&json!({ "admin_allowed_hosts": many }).to_string()).unwrap_err();
        assert_eq!(
            messages(error),
            vec![format!(
                "admin_allowed_hosts: at most {ADMIN_ALLOWED_HOSTS_MAX} entries"
            )]
        );
        let config =
            Config::from_json(&json!({"admin_allowed_hosts": ["a.example"]}).to_string()).unwrap();
        assert_eq!(config.admin_allowed_hosts, vec!["a.example".to_string()]);
    }
}
