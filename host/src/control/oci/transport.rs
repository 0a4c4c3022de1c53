//! Talking to a registry: the `oci-client` client (token dance, pushes),
//! and bounded GETs of manifests and blobs (`oci-client` reads a manifest
//! whole, however large; levee reads at most the bound, and a blob at most
//! its declared size).
//!
//! Both ride on reqwest with rustls on the ring provider, installed as
//! the process's default before the first client is built (reqwest and
//! `oci-client` are built without a provider of their own: theirs would be
//! aws-lc-rs, which needs cmake).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::reference::is_loopback;
use super::{CONNECT_TIMEOUT, OciError, Options, PASSWORD_ENV, USERNAME_ENV};

/// How long a read may wait for the next bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed (a registry may send blobs to its storage).
const REDIRECTS_MAX: usize = 5;

/// What authenticates a request.
#[derive(Clone)]
pub enum Credential {
    None,
    Bearer(String),
    Basic(String, String),
}

/// A connection to one registry.
pub struct Registry {
    /// `host[:port]`.
    pub name: String,
    scheme: &'static str,
    pub client: Client,
    http: reqwest::Client,
    pub auth: RegistryAuth,
}

impl Registry {
    /// A client for `registry` (`host[:port]`): plain HTTP on loopback or
    /// with `options.plain_http`, TLS otherwise.
    pub fn connect(registry: &str, options: &Options) -> Result<Registry, OciError> {
        install_ring_provider();
        let plain = options.plain_http || is_loopback(registry);
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![registry.to_string()])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // A Wasm artifact's manifest is never an index.
            platform_resolver: None,
            user_agent: concat!("levee/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| OciError::Local(format!("cannot set up the registry client: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(REDIRECTS_MAX))
            .user_agent(concat!("levee/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OciError::Local(format!("cannot set up the registry client: {e}")))?;
        Ok(Registry {
            name: registry.to_string(),
            scheme: if plain { "http" } else { "https" },
            client,
            http,
            auth: auth_from_env()?,
        })
    }

    /// A failure talking to this registry.
    pub fn fault(&self, reason: impl std::fmt::Display) -> OciError {
        OciError::Registry {
            registry: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// `GET /v2/<repository>/<kind>/<digest>`, at most `bytes_max` bytes
    /// (more is refused as soon as it arrives; a `Content-Length` above it
    /// before any is read).
    pub async fn get_bounded(
        &self,
        credential: &Credential,
        reference: &Reference,
        kind: &str,
        digest: &str,
        accept: &str,
        bytes_max: u64,
    ) -> Result<Bytes, OciError> {
        let url = format!(
            "{}://{}/v2/{}/{kind}/{digest}",
            self.scheme,
            self.name,
            reference.repository()
        );
        let mut request = self.http.get(&url).header("accept", accept);
        request = match credential {
            Credential::None => request,
            Credential::Bearer(token) => request.bearer_auth(token),
            Credential::Basic(user, password) => request.basic_auth(user, Some(password)),
        };
        let mut response = request.send().await.map_err(|e| self.fault(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let detail = error_detail(response).await;
            return Err(self.fault(format!("GET {kind}/{digest} answered {status}{detail}")));
        }
        if let Some(length) = response.content_length()
            && length > bytes_max
        {
            return Err(OciError::Oversized(format!(
                "registry {}: {kind}/{digest} is {length} bytes, more than the {bytes_max} allowed",
                self.name
            )));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.fault(describe(&e)))?
        {
            if (body.len() + chunk.len()) as u64 > bytes_max {
                return Err(OciError::Oversized(format!(
                    "registry {}: {kind}/{digest} sent more than the {bytes_max} bytes allowed",
                    self.name
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// The registry's token for pulling from `reference`'s repository, if
    /// it asks for one (`oci-client` does the challenge and the exchange).
    pub async fn credential(&self, reference: &Reference) -> Result<Credential, OciError> {
        let token = self
            .client
            .auth(reference, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.fault(format!("GET /v2/: {}", describe_oci(&e))))?;
        Ok(match (token, &self.auth) {
            (Some(token), _) => Credential::Bearer(token),
            (None, RegistryAuth::Basic(user, password)) => {
                Credential::Basic(user.clone(), password.clone())
            }
            (None, _) => Credential::None,
        })
    }
}

/// Installs rustls' ring provider as the process default, once (a
/// provider installed earlier, by levee or a test, is kept).
fn install_ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn auth_from_env() -> Result<RegistryAuth, OciError> {
    let user = std::env::var(USERNAME_ENV).ok().filter(|v| !v.is_empty());
    let password = std::env::var(PASSWORD_ENV).ok().filter(|v| !v.is_empty());
    match (user, password) {
        (Some(user), Some(password)) => Ok(RegistryAuth::Basic(user, password)),
        (None, None) => Ok(RegistryAuth::Anonymous),
        _ => Err(OciError::Local(format!(
            "set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither"
        ))),
    }
}

/// A reqwest error as an operator reads it: what failed, and the cause
/// (`connection refused`, `timed out`), without the URL twice.
pub fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    match causes.last() {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_string(),
    }
}

/// An `oci-client` error as an operator reads it (a transport failure as
/// [`describe`] puts it, anything else with its causes).
pub fn describe_oci(error: &oci_client::errors::OciDistributionError) -> String {
    match error {
        oci_client::errors::OciDistributionError::RequestError(error) => describe(error),
        other => chain(other),
    }
}

/// An error and its causes, once each.
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The start of an error answer's body (the distribution spec's
/// `{"errors":[{"code","message"}]}`), for the operator.
async fn error_detail(response: reqwest::Response) -> String {
    const DETAIL_BYTES_MAX: usize = 512;
    let mut response = response;
    let mut body = Vec::new();
    while body.len() < DETAIL_BYTES_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(DETAIL_BYTES_MAX);
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_except_on_loopback_or_when_asked() {
        let options = Options::default();
        for (registry, scheme) in [
            ("127.0.0.1:5000", "http"),
            ("localhost:5000", "http"),
            ("[::1]:5000", "http"),
            ("ghcr.io", "https"),
            ("registry.internal:5000", "https"),
        ] {
            let connected = Registry::connect(registry, &options).expect("a client on ring");
            assert_eq!(connected.scheme, scheme, "{registry}");
        }
        let plain = Options { plain_http: true };
        let connected = Registry::connect("registry.internal:5000", &plain).unwrap();
        assert_eq!(connected.scheme, "http");
    }
}
