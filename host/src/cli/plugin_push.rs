//! `levee plugin push FILE REGISTRY/REPOSITORY:TAG [--plain-http]
//! [--config JSON] [--json]`: validate a plugin as `levee plugin check`
//! does, then push it to an OCI registry as a Wasm artifact
//! (`levee::oci`) and print the digest a binding names.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use levee::oci;
use levee::oci::artifact::ComponentShape;

/// Largest plugin file read: the plugin host's component bound.
const PLUGIN_FILE_BYTES_MAX: u64 = oci::COMPONENT_BYTES_MAX;

pub(crate) struct PushArgs {
    pub file: PathBuf,
    pub target: String,
    pub plain_http: bool,
    pub config: Option<String>,
    pub json: bool,
}

pub(crate) async fn plugin_push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let component = read_plugin(&args.file)?;
    let checked = {
        let component = component.clone();
        let config = args.config.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default())?;
            anyhow::Ok(levee_plugin::check(&runtime, &component, config.as_deref()))
        })
        .await??
    };
    let report = match checked {
        Ok(report) => report,
        Err(error) => {
            eprintln!(
                "plugin push: {} is not a loadable plugin, nothing pushed: {error}",
                args.file.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let shape = ComponentShape {
        exports: &report.exports,
        imports: &report.imports,
        target: None,
    };
    let options = oci::Options {
        plain_http: args.plain_http,
    };
    let pushed = match oci::push(component, shape, &args.target, &options).await {
        Ok(pushed) => pushed,
        Err(error) => {
            eprintln!("plugin push failed: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        let answer = serde_json::json!({
            "tag": pushed.tag,
            "digest": pushed.digest.to_string(),
            "reference": pushed.reference,
            "layer_digest": pushed.layer.to_string(),
            "version": report.version,
            "world": report.world,
            "size_bytes": report.size_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("pushed:    {}", pushed.tag);
        println!("digest:    {}", pushed.digest);
        println!("reference: {}", pushed.reference);
        println!(
            "version:   {} ({}, {} bytes)",
            report.version, report.world, report.size_bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_plugin(file: &PathBuf) -> anyhow::Result<Bytes> {
    let bytes = std::fs::metadata(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
        .len();
    if bytes > PLUGIN_FILE_BYTES_MAX {
        anyhow::bail!(
            "{} is {bytes} bytes, more than the {PLUGIN_FILE_BYTES_MAX} a plugin may be",
            file.display()
        );
    }
    let component =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    Ok(Bytes::from(component))
}
