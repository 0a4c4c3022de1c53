//! References: `REGISTRY/REPOSITORY:TAG` for a push, and
//! `REGISTRY/REPOSITORY@sha256:HEX` ([`Pinned`]) for a pull, which names
//! one manifest for ever.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use oci_client::Reference;
use sha2::{Digest as _, Sha256};

use super::OciError;

/// Longest reference accepted (the distribution spec's names are shorter).
const REFERENCE_BYTES_MAX: usize = 1024;

/// A SHA-256 content digest (`sha256:` and 64 lower-case hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex digits, without `sha256:` (what levee calls a plugin's
    /// version when this is the digest of a component).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `bytes` have this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Digest::of(bytes) == *self
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(text: &str) -> Result<Digest, String> {
        let Some((algorithm, hex_digits)) = text.split_once(':') else {
            return Err(format!("{text:?} is not a digest (sha256:<64 hex digits>)"));
        };
        if algorithm != "sha256" {
            return Err(format!(
                "digest algorithm {algorithm:?} is not supported: use sha256"
            ));
        }
        let valid = hex_digits.len() == 64
            && hex_digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(format!(
                "{text:?} is not a sha256 digest (64 lower-case hex digits)"
            ));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|e| e.to_string())?;
        Ok(Digest(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// A reference that names a manifest by digest.
#[derive(Debug, Clone)]
pub struct Pinned {
    reference: Reference,
    digest: Digest,
}

impl Pinned {
    /// Parses `REGISTRY/REPOSITORY@sha256:HEX` (a tag before the `@` is
    /// allowed and ignored). Refuses a reference without a digest: a tag
    /// can be moved to other bytes, a digest cannot.
    pub fn parse(text: &str) -> Result<Pinned, OciError> {
        let reference = parse_reference(text)?;
        let Some(digest) = reference.digest() else {
            return Err(OciError::Reference(format!(
                "{text:?} names no digest: a plugin is pulled by digest only \
                 (REGISTRY/REPOSITORY@sha256:...; `levee plugin push` prints it), \
                 because a tag can be moved to other bytes"
            )));
        };
        let digest = digest
            .parse()
            .map_err(|reason| OciError::Reference(format!("{text:?}: {reason}")))?;
        Ok(Pinned { reference, digest })
    }

    /// The manifest's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// `REGISTRY/REPOSITORY@sha256:HEX`, with the registry made explicit.
    pub fn canonical(&self) -> String {
        format!(
            "{}/{}@{}",
            self.reference.resolve_registry(),
            self.reference.repository(),
            self.digest
        )
    }

    /// The registry's `host[:port]` as requests address it.
    pub fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }

    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    /// The same repository, naming another content digest (a layer's).
    pub(crate) fn oci(&self) -> &Reference {
        &self.reference
    }
}

impl fmt::Display for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// Parses a push target, `REGISTRY/REPOSITORY:TAG`: the registry must be
/// explicit (no implicit Docker Hub) and a tag given (no implicit
/// `latest`); a digest is refused (a push makes the digest).
pub fn parse_push_target(text: &str) -> Result<Reference, OciError> {
    let reference = parse_reference(text)?;
    if reference.digest().is_some() {
        return Err(OciError::Reference(format!(
            "{text:?} names a digest: push to a tag (REGISTRY/REPOSITORY:TAG); \
             the digest is what the push prints"
        )));
    }
    let explicit_registry = text
        .split_once('/')
        .is_some_and(|(first, _)| first.contains(['.', ':']) || first == "localhost");
    if !explicit_registry {
        return Err(OciError::Reference(format!(
            "{text:?} names no registry: write REGISTRY/REPOSITORY:TAG, \
             e.g. 127.0.0.1:5000/levee/retry-backoff:v1"
        )));
    }
    if reference.tag().is_none() || !text.rsplit('/').next().unwrap_or("").contains(':') {
        return Err(OciError::Reference(format!(
            "{text:?} names no tag: write REGISTRY/REPOSITORY:TAG"
        )));
    }
    Ok(reference)
}

fn parse_reference(text: &str) -> Result<Reference, OciError> {
    if text.len() > REFERENCE_BYTES_MAX {
        return Err(OciError::Reference(format!(
            "reference is {} bytes, more than {REFERENCE_BYTES_MAX}",
            text.len()
        )));
    }
    Reference::from_str(text)
        .map_err(|e| OciError::Reference(format!("invalid reference {text:?}: {e}")))
}

/// Whether `registry` (`host[:port]`) is on this machine: `localhost`,
/// `127.0.0.0/8` or `[::1]`. Such a registry is spoken to in plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => registry,
        },
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinned_references_need_a_sha256_digest() {
        let pinned = Pinned::parse(&format!("127.0.0.1:5000/levee/retry@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.registry(), "127.0.0.1:5000");
        assert_eq!(pinned.repository(), "levee/retry");
        assert_eq!(pinned.digest().hex(), HEX);
        assert_eq!(
            pinned.canonical(),
            format!("127.0.0.1:5000/levee/retry@sha256:{HEX}")
        );
        let tagged = Pinned::parse(&format!("127.0.0.1:5000/levee/retry:v1@sha256:{HEX}"));
        assert_eq!(tagged.unwrap().digest().hex(), HEX);

        let error = Pinned::parse("127.0.0.1:5000/levee/retry:v1").unwrap_err();
        assert!(error.to_string().contains("by digest only"), "{error}");
        assert!(Pinned::parse("127.0.0.1:5000/levee/retry@sha256:abc").is_err());
        assert!(Pinned::parse(&format!("r.io/a@sha256:{}", HEX.to_uppercase())).is_err());
        assert!(Pinned::parse("not a reference@@").is_err());
    }

    #[test]
    fn push_targets_need_a_registry_and_a_tag() {
        let target = parse_push_target("127.0.0.1:5000/levee/retry:v1").unwrap();
        assert_eq!(target.tag(), Some("v1"));
        assert!(parse_push_target("localhost/levee/retry:v1").is_ok());
        for (text, why) in [
            ("levee/retry:v1", "names no registry"),
            ("127.0.0.1:5000/levee/retry", "names no tag"),
            ("127.0.0.1:5000/levee/retry@sha256:", "invalid reference"),
        ] {
            let error = parse_push_target(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
        let digest = format!("127.0.0.1:5000/levee/retry@sha256:{HEX}");
        assert!(
            parse_push_target(&digest)
                .unwrap_err()
                .to_string()
                .contains("names a digest")
        );
    }

    #[test]
    fn loopback_registries() {
        for registry in [
            "127.0.0.1:5000",
            "127.3.2.1",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(is_loopback(registry), "{registry}");
        }
        for registry in [
            "ghcr.io",
            "10.0.0.1:5000",
            "registry.local:5000",
            "[2001:db8::1]:443",
        ] {
            assert!(!is_loopback(registry), "{registry}");
        }
    }

    #[test]
    fn digests_round_trip() {
        let digest = Digest::of(b"abc");
        assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest);
        assert!(digest.matches(b"abc"));
        assert!(!digest.matches(b"abd"));
        assert!("sha512:00".parse::<Digest>().is_err());
    }
}
