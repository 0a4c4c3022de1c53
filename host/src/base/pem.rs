//! Certificate and key files (PEM), read with bounds: the listeners' TLS
//! (`app::tls`) and the upstream client's (`upstream::tls`) both read them,
//! and a refusal names the config field and the file either way.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest certificate, key or CA file read (a CA bundle of a few hundred
/// roots is ~250 KiB).
pub const TLS_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Most certificates in a chain or CA file.
pub const CERTIFICATES_PER_FILE_MAX: usize = 1024;

/// A certificate, key or CA file that could not be used, naming the
/// config field and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {}: {reason}", file.display())]
pub struct TlsFileError {
    pub field: String,
    pub file: PathBuf,
    pub reason: String,
}

impl TlsFileError {
    pub fn new(field: &str, file: &Path, reason: impl Into<String>) -> TlsFileError {
        TlsFileError {
            field: field.to_string(),
            file: file.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads a file of at most [`TLS_FILE_BYTES_MAX`] bytes.
fn read_bounded(field: &str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let error = |reason: String| TlsFileError::new(field, path, reason);
    let bytes = std::fs::metadata(path)
        .map_err(|e| error(e.to_string()))?
        .len();
    if bytes > TLS_FILE_BYTES_MAX {
        return Err(error(format!(
            "{bytes} bytes, more than the {TLS_FILE_BYTES_MAX} accepted"
        )));
    }
    std::fs::read(path).map_err(|e| error(e.to_string()))
}

/// Every certificate of a PEM file; at least one, at most
/// [`CERTIFICATES_PER_FILE_MAX`].
pub fn read_certificates(
    field: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let error = |reason: String| TlsFileError::new(field, path, reason);
    let pem = read_bounded(field, path)?;
    let mut certificates = Vec::new();
    for certificate in CertificateDer::pem_slice_iter(&pem).take(CERTIFICATES_PER_FILE_MAX + 1) {
        certificates.push(certificate.map_err(|e| error(format!("not PEM certificates: {e}")))?);
    }
    if certificates.len() > CERTIFICATES_PER_FILE_MAX {
        return Err(error(format!(
            "more than {CERTIFICATES_PER_FILE_MAX} certificates"
        )));
    }
    if certificates.is_empty() {
        return Err(error("holds no PEM certificate".to_string()));
    }
    Ok(certificates)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(field: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let pem = read_bounded(field, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsFileError::new(
            field,
            path,
            format!("holds no usable PEM private key ({e})"),
        )
    })
}
