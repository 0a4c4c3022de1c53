//! A plugin version from a registry: pull by digest (through the cache
//! under `<data_dir>/oci-cache`), then the ordinary load path
//! ([`PluginHost::install`]: validate, compile, check every binding,
//! persist, swap).
//!
//! A pull that fails, like a component that is refused, changes nothing:
//! the last good version keeps serving, and the reason is the plugin's
//! `last_error` (`GET /admin/plugins`) and the metric
//! `levee_plugin_loads_total{source="oci",result="refused"}`.

use serde::Serialize;

use super::cache::Cache;
use super::pull::{FetchedFrom, pull};
use super::reference::Pinned;
use super::{OciError, Options};
use crate::base::metrics::{self, LoadSource};
use crate::control::plugin_host::{Installed, PluginError, PluginHost, check_name};

/// What now serves, and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct OciInstalled {
    #[serde(flatten)]
    pub installed: Installed,
    /// `REGISTRY/REPOSITORY@sha256:...`, the registry made explicit.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// The component layer's digest (`sha256:` + the version).
    pub layer_digest: String,
    pub fetched_from: FetchedFrom,
}

/// Why a load from a registry was refused.
#[derive(Debug)]
pub enum OciInstallError {
    /// The pull failed (the reference, the registry, the artifact).
    Pull(OciError),
    /// The pulled component was refused by the load path.
    Plugin(PluginError),
}

impl std::fmt::Display for OciInstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OciInstallError::Pull(error) => write!(f, "{error}"),
            OciInstallError::Plugin(error) => write!(f, "{error}"),
        }
    }
}

/// Pulls `reference` (a digest reference) and loads it as the new version
/// of plugin `name`.
pub async fn install(
    host: &PluginHost,
    name: &str,
    reference: &str,
    options: &Options,
) -> Result<OciInstalled, OciInstallError> {
    check_name(name).map_err(OciInstallError::Plugin)?;
    let pinned = Pinned::parse(reference).map_err(OciInstallError::Pull)?;
    let cache = Cache::in_data_dir(&host.directory().config.load().data_dir);
    let pulled = match pull(&pinned, options, Some(&cache)).await {
        Ok(pulled) => pulled,
        Err(error) => {
            tracing::warn!(plugin = name, reference = %pinned, %error, "plugin pull failed; the current version keeps serving");
            host.registry()
                .record_failure(name, &format!("pull {pinned}: {error}"));
            metrics::plugin_load(name, LoadSource::Oci, false);
            return Err(OciInstallError::Pull(error));
        }
    };
    tracing::info!(plugin = name, reference = %pinned, layer = %pulled.layer, fetched_from = ?pulled.fetched_from, "plugin pulled");
    let installed = host
        .install(name, pulled.component, LoadSource::Oci)
        .await
        .map_err(OciInstallError::Plugin)?;
    Ok(OciInstalled {
        installed,
        reference: pinned.canonical(),
        digest: pinned.digest().to_string(),
        layer_digest: pulled.layer.to_string(),
        fetched_from: pulled.fetched_from,
    })
}
