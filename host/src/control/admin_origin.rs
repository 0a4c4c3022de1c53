//! Which browsers the admin listener answers: the `Host` and `Origin`
//! rules that keep a web page from driving the admin API.
//!
//! A tokenless admin listener on loopback is open to anything that can
//! reach `127.0.0.1`, and a browser on the same machine can. Two attacks
//! follow, and one rule closes each:
//! - **DNS rebinding.** A page at `evil.example` re-points its own name at
//!   `127.0.0.1`; the browser then treats the admin API as the page's own
//!   origin and lets it read and write freely. But it still sends
//!   `Host: evil.example`, so **on a loopback listener a request whose
//!   `Host` is not a loopback name, the listener's own address or an
//!   `admin_allowed_hosts` entry is refused (403)**, whatever its method.
//!   Only the name is checked, not the port: rebinding needs a name the
//!   attacker controls, and the port in `Host` is whatever the page
//!   dialled. A request without `Host` (HTTP/1.0) passes: browsers always
//!   send one, so it cannot be this attack.
//! - **Cross-site requests.** Any page can send a "simple" `POST`
//!   (`/admin/checkpoint`, `.../rollback`) to `127.0.0.1` without reading
//!   the answer. Browsers label such requests, so **a state-changing
//!   request (any method but `GET`, `HEAD`, `OPTIONS`) is refused (403)
//!   when `Sec-Fetch-Site` says `cross-site` or `same-site`, or when its
//!   `Origin` is not the admin listener's own** (`http://` + its `Host`;
//!   `https://` too, for a TLS proxy in front). A non-browser client sends
//!   neither header and is unaffected; the status page only `GET`s.
//!
//! On a listener that is not on loopback (which [`super::auth`] only
//! allows with a token) the `Host` check applies only when
//! `admin_allowed_hosts` is set, since operators reach such a listener by
//! names levee cannot know. Rebinding gains nothing there: the page cannot
//! present the bearer token. The `Origin` rule applies everywhere.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri, header};
use thiserror::Error;

/// Host names that always mean this machine.
const LOOPBACK_NAMES: &[&str] = &["localhost"];
/// The `Sec-Fetch-Site` values of a request a page on another origin sent.
const FOREIGN_FETCH_SITES: &[&str] = &["cross-site", "same-site"];
/// Bytes of a header value quoted back in a refusal.
const QUOTED_BYTES_MAX: usize = 100;

/// Why a request was refused. The text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Forbidden {
    #[error(
        "Host {0:?} is not this admin listener's address or a loopback name \
         (refused so that a DNS-rebinding web page cannot use the admin API); \
         if levee is reached by this name, add it to the config's admin_allowed_hosts"
    )]
    ForeignHost(String),
    #[error("malformed Host header {0:?}")]
    MalformedHost(String),
    #[error(
        "state-changing admin request from another site (Sec-Fetch-Site: {0}): \
         refused so that a web page cannot change levee; use curl or the admin listener's own page"
    )]
    CrossSite(String),
    #[error(
        "state-changing admin request from origin {origin:?}, not the admin listener's own ({own}): \
         refused so that a web page cannot change levee"
    )]
    ForeignOrigin { origin: String, own: String },
}

/// The admin listener's `Host` and `Origin` rules. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminOrigin {
    /// Whether `Host` is checked at all (see the module doc).
    check_host: bool,
    /// The address the listener is bound to, unless it is a wildcard.
    bound_ip: Option<IpAddr>,
    /// `admin_allowed_hosts`, lower-cased, IPv6 brackets removed.
    allowed: Arc<[String]>,
}

impl AdminOrigin {
    /// The rules for an admin listener bound to `listener`, also answering
    /// to `allowed_hosts` (validated config entries).
    pub fn new(listener: SocketAddr, allowed_hosts: &[String]) -> AdminOrigin {
        let ip = listener.ip();
        AdminOrigin {
            check_host: ip.is_loopback() || !allowed_hosts.is_empty(),
            bound_ip: (!ip.is_unspecified()).then_some(ip),
            allowed: allowed_hosts
                .iter()
                .map(|host| unbracketed(&host.to_ascii_lowercase()).to_string())
                .collect(),
        }
    }

    /// Decides whether a request may reach the admin API.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Forbidden> {
        let host = single(headers, header::HOST).map_err(Forbidden::MalformedHost)?;
        if self.check_host {
            if let Some(host) = host {
                self.check_host_value(host)?;
            }
            if let Some(authority) = uri.authority() {
                self.check_host_value(authority.as_str())?;
            }
        }
        if is_safe(method) {
            return Ok(());
        }
        check_fetch_site(headers)?;
        check_origin(headers, host)
    }

    fn check_host_value(&self, value: &str) -> Result<(), Forbidden> {
        let name = host_name(value).ok_or_else(|| Forbidden::MalformedHost(quoted(value)))?;
        if self.is_allowed_name(&name) {
            Ok(())
        } else {
            Err(Forbidden::ForeignHost(quoted(value)))
        }
    }

    fn is_allowed_name(&self, name: &str) -> bool {
        if LOOPBACK_NAMES.contains(&name) {
            return true;
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback()
                || Some(ip) == self.bound_ip
                || self.allowed.iter().any(|entry| entry.parse() == Ok(ip));
        }
        self.allowed.iter().any(|entry| entry == name)
    }
}

/// Methods that change nothing: a foreign page may send them (it cannot
/// read the answer without CORS, which levee never grants).
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn check_fetch_site(headers: &HeaderMap) -> Result<(), Forbidden> {
    for value in headers.get_all("sec-fetch-site") {
        let site = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
        if FOREIGN_FETCH_SITES.contains(&site.trim()) {
            return Err(Forbidden::CrossSite(quoted(&site)));
        }
    }
    Ok(())
}

/// `Origin`, when present, must be `http://` or `https://` followed by the
/// request's own `Host` (default ports aside).
fn check_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), Forbidden> {
    let origin = single(headers, header::ORIGIN).map_err(|origin| Forbidden::ForeignOrigin {
        origin,
        own: "one Origin header".into(),
    })?;
    let Some(origin) = origin else {
        return Ok(());
    };
    let own = host.map(|host| without_port(host, "80").to_ascii_lowercase());
    let foreign = || Forbidden::ForeignOrigin {
        origin: quoted(origin),
        own: own
            .as_ref()
            .map_or_else(|| "unknown: no Host".into(), |own| format!("http://{own}")),
    };
    let (scheme, authority) = origin.split_once("://").ok_or_else(foreign)?;
    let authority = match scheme.to_ascii_lowercase().as_str() {
        "http" => without_port(authority, "80"),
        "https" => without_port(authority, "443"),
        _ => return Err(foreign()),
    };
    let same = own
        .as_deref()
        .is_some_and(|own| own.eq_ignore_ascii_case(authority));
    if same { Ok(()) } else { Err(foreign()) }
}

/// The one value of `name`, `None` when absent; a repeated or non-text
/// value is an error carrying what can be shown of it.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, String> {
    let mut values = headers.get_all(&name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let shown = || quoted(&String::from_utf8_lossy(value.as_bytes()));
    if values.next().is_some() {
        return Err(format!("{} (repeated)", shown()));
    }
    value.to_str().map(Some).map_err(|_| shown())
}

/// The lower-cased name of `host[:port]` (IPv6 unbracketed), or `None`
/// when it is not that shape.
fn host_name(value: &str) -> Option<String> {
    let (name, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (inside, port)
        }
        None => match value.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        },
    };
    let port_ok = port.is_none_or(|port| {
        !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
    });
    (port_ok && !name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn without_port<'a>(authority: &'a str, default_port: &str) -> &'a str {
    authority
        .strip_suffix(default_port)
        .and_then(|rest| rest.strip_suffix(':'))
        .unwrap_or(authority)
}

fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host)
}

fn quoted(value: &str) -> String {
    value.chars().take(QUOTED_BYTES_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn loopback() -> AdminOrigin {
        AdminOrigin::new("127.0.0.1:9901".parse().unwrap(), &[])
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn get(rule: &AdminOrigin, pairs: &[(&'static str, &str)]) -> Result<(), Forbidden> {
        rule.check(
            &Method::GET,
            &Uri::from_static("/admin/state"),
            &headers(pairs),
        )
    }

    fn post(rule: &AdminOrigin, pairs: &[(&'static str, &str)]) -> Result<(), Forbidden> {
        let uri = Uri::from_static("/admin/checkpoint");
        rule.check(&Method::POST, &uri, &headers(pairs))
    }

    #[test]
    fn loopback_names_and_the_bound_address_pass() {
        let rule = loopback();
        for host in [
            "127.0.0.1:9901",
            "127.0.0.1",
            "LOCALHOST:9901",
            "localhost",
            "[::1]:9901",
            "[::1]",
            "127.0.0.2:1",
        ] {
            assert_eq!(get(&rule, &[("host", host)]), Ok(()), "{host}");
        }
        assert_eq!(get(&rule, &[]), Ok(()), "no Host: not a browser");
        let bound = AdminOrigin::new("10.0.0.5:9901".parse().unwrap(), &["x.example".into()]);
        assert_eq!(get(&bound, &[("host", "10.0.0.5:9901")]), Ok(()));
    }

    #[test]
    fn foreign_and_malformed_hosts_are_refused_on_loopback() {
        let rule = loopback();
        for host in [
            "evil.example:9901",
            "evil.example",
            "localhost.evil.example",
            "10.0.0.5",
        ] {
            assert!(
                matches!(
                    get(&rule, &[("host", host)]),
                    Err(Forbidden::ForeignHost(_))
                ),
                "{host}"
            );
        }
        for host in ["", ":9901", "localhost:", "localhost:99x", "[::1", "[::1]x"] {
            assert!(
                matches!(
                    get(&rule, &[("host", host)]),
                    Err(Forbidden::MalformedHost(_))
                ),
                "{host:?}"
            );
        }
        let twice = get(&rule, &[("host", "localhost"), ("host", "localhost")]);
        assert!(matches!(twice, Err(Forbidden::MalformedHost(_))));
        let absolute = rule.check(
            &Method::GET,
            &Uri::from_static("http://evil.example/admin/state"),
            &headers(&[("host", "localhost")]),
        );
        assert!(matches!(absolute, Err(Forbidden::ForeignHost(_))));
        let error = get(&rule, &[("host", "evil.example")]).unwrap_err();
        assert!(error.to_string().contains("admin_allowed_hosts"), "{error}");
    }

    #[test]
    fn configured_names_pass_and_exposed_listeners_skip_the_host_check() {
        let rule = AdminOrigin::new(
            "127.0.0.1:9901".parse().unwrap(),
            &["Admin.Example".into(), "[fd00::1]".into()],
        );
        assert_eq!(get(&rule, &[("host", "admin.example:443")]), Ok(()));
        assert_eq!(get(&rule, &[("host", "[fd00::1]:9901")]), Ok(()));
        let exposed = AdminOrigin::new("0.0.0.0:9901".parse().unwrap(), &[]);
        assert_eq!(get(&exposed, &[("host", "anything.example")]), Ok(()));
        let listed = AdminOrigin::new("0.0.0.0:9901".parse().unwrap(), &["a.example".into()]);
        assert!(get(&listed, &[("host", "b.example")]).is_err());
        assert!(get(&listed, &[("host", "0.0.0.0")]).is_err());
    }

    #[test]
    fn state_changes_need_the_own_origin() {
        let rule = loopback();
        let host = ("host", "127.0.0.1:9901");
        assert_eq!(post(&rule, &[host]), Ok(()), "curl: no Origin");
        assert_eq!(
            post(&rule, &[host, ("origin", "http://127.0.0.1:9901")]),
            Ok(())
        );
        assert_eq!(
            post(
                &rule,
                &[("host", "localhost:80"), ("origin", "http://LOCALHOST")]
            ),
            Ok(())
        );
        assert_eq!(
            post(&rule, &[host, ("sec-fetch-site", "same-origin")]),
            Ok(())
        );
        for origin in [
            "http://evil.example",
            "http://localhost:3000",
            "http://127.0.0.1:9902",
            "null",
            "file://",
            "ftp://127.0.0.1:9901",
        ] {
            assert!(
                matches!(
                    post(&rule, &[host, ("origin", origin)]),
                    Err(Forbidden::ForeignOrigin { .. })
                ),
                "{origin}"
            );
        }
        assert!(matches!(
            post(&rule, &[("origin", "http://127.0.0.1:9901")]),
            Err(Forbidden::ForeignOrigin { .. })
        ));
        for site in ["cross-site", "Same-Site"] {
            assert!(matches!(
                post(&rule, &[host, ("sec-fetch-site", site)]),
                Err(Forbidden::CrossSite(_))
            ));
        }
        // Reads may come from anywhere the Host rule allows.
        assert_eq!(
            get(
                &rule,
                &[
                    host,
                    ("origin", "http://evil.example"),
                    ("sec-fetch-site", "cross-site")
                ]
            ),
            Ok(())
        );
    }
}
