//! The Kubernetes manifests in `deploy/kubernetes/`, checked against the
//! binary they deploy, so that they cannot drift from it unnoticed:
//!
//! - every manifest parses, and `kustomization.yaml` lists every one;
//! - the container's command line is one `levee` takes (the subcommand
//!   and every flag are in its `--help`);
//! - the ConfigMap's `levee.json` is a configuration levee accepts, and the
//!   StatefulSet agrees with it: container ports = listener ports (on
//!   0.0.0.0), each probe's scheme = that listener's TLS, the config and
//!   certificate files under the volumes they are mounted from, `data_dir`
//!   = the persistent volume's mount, the admin token from a Secret and
//!   not in the file, pod names that are valid instance ids,
//!   `terminationGracePeriodSeconds` above the preStop sleep plus
//!   `shutdown_grace_ms`, a memory limit above the body budget, etcd
//!   endpoints naming a Service of the manifests, the image tagged with
//!   this version;
//! - a real `levee serve`, started with the container's arguments and
//!   environment and the ConfigMap's config as a pod would run it (the
//!   listeners on 0.0.0.0 with the ports the OS picks, the admin token
//!   from the environment, TLS from generated files, the sample service
//!   on real `kv-replica`s, no etcd), answers every probe of the manifest
//!   as the kubelet asks it (no token, no client certificate), serves the
//!   sample service, fails readiness on SIGTERM while the request in
//!   flight finishes, and exits 0 within the pod's grace period. It also
//!   checks the probes are the admin `/healthz` and `/readyz`, open
//!   without the token off loopback while `/metrics` is not.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use levee_config::Config;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use serde::Deserialize;
use serde_json::{Value, json};
use support::{LEVEE, Replica, call};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The admin token the test's "Secret" holds.
const TOKEN: &str = "deploy-test-token-0123456789abcdef";
/// The environment variable levee reads the admin token from (proven by
/// the pod-like start: an admin listener on 0.0.0.0 without a token does
/// not start).
const TOKEN_ENV: &str = "LEVEE_ADMIN_TOKEN";
/// What the last checkpoint and the log's fsync get after the drain.
const FLUSH_MARGIN_S: u64 = 5;
/// Memory a levee needs beyond its buffered request bodies.
const BASELINE_MEMORY_BYTES: u64 = 256 << 20;
/// Longest a pod-like levee may take to pass its startup probe here.
const STARTUP_WAIT: Duration = Duration::from_secs(60);

// ---- the manifests ------------------------------------------------------------

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every YAML document under `deploy/kubernetes/`, with its file name.
struct Manifests {
    docs: Vec<(String, Value)>,
}

impl Manifests {
    fn load() -> Manifests {
        let mut files: Vec<String> = std::fs::read_dir(manifest_dir())
            .expect("deploy/kubernetes exists")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
            .collect();
        files.sort();
        let mut docs = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(manifest_dir().join(&file)).unwrap();
            for document in yaml_serde::Deserializer::from_str(&text) {
                let value = Value::deserialize(document)
                    .unwrap_or_else(|e| panic!("{file}: not valid YAML: {e}"));
                if !value.is_null() {
                    docs.push((file.clone(), value));
                }
            }
        }
        Manifests { docs }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .map(|(_, doc)| doc)
            .filter(|doc| doc["kind"] == kind)
            .collect()
    }

    fn find(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .into_iter()
            .find(|doc| doc["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} named {name:?} in deploy/kubernetes"))
    }

    fn statefulset(&self) -> &Value {
        let sets = self.of_kind("StatefulSet");
        assert_eq!(sets.len(), 1, "one StatefulSet");
        sets[0]
    }

    fn pod(&self) -> &Value {
        &self.statefulset()["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let containers = array(&self.pod()["containers"]);
        assert_eq!(containers.len(), 1, "one container");
        &containers[0]
    }

    fn args(&self) -> Vec<String> {
        array(&self.container()["args"])
            .iter()
            .map(|arg| text(arg).to_owned())
            .collect()
    }

    /// The value of `--config` in the container's arguments.
    fn config_path(&self) -> String {
        let args = self.args();
        let at = args
            .iter()
            .position(|arg| arg == "--config")
            .expect("the container passes --config");
        args.get(at + 1).expect("--config has a value").clone()
    }

    /// The volume a file of the container comes from: `(volume, file
    /// name inside it)`, by the container's mounts (no subPath).
    fn volume_of(&self, file: &str) -> (&Value, String) {
        let mount = array(&self.container()["volumeMounts"])
            .iter()
            .filter(|mount| {
                Path::new(file).starts_with(text(&mount["mountPath"]))
                    && mount.get("subPath").is_none()
            })
            .max_by_key(|mount| text(&mount["mountPath"]).len())
            .unwrap_or_else(|| panic!("{file} is on no mounted volume"));
        let inside = Path::new(file)
            .strip_prefix(text(&mount["mountPath"]))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let volume = array(&self.pod()["volumes"])
            .iter()
            .find(|volume| volume["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {} for {file}", mount["name"]));
        (volume, inside)
    }

    /// The text of `levee.json` the container reads: the ConfigMap key
    /// mounted where `--config` points.
    fn config_text(&self) -> String {
        let path = self.config_path();
        let (volume, key) = self.volume_of(&path);
        let name = text(&volume["configMap"]["name"]);
        let map = self.find("ConfigMap", name);
        text(&map["data"][&key]).to_owned()
    }

    fn config(&self) -> Config {
        Config::from_json(&self.config_text())
            .unwrap_or_else(|e| panic!("the ConfigMap's levee.json is refused: {e}"))
    }

    /// The container port a probe or Service names (by name or number).
    fn container_port(&self, port: &Value) -> &Value {
        array(&self.container()["ports"])
            .iter()
            .find(|candidate| candidate["name"] == *port || candidate["containerPort"] == *port)
            .unwrap_or_else(|| panic!("no container port {port}"))
    }

    /// The container's probes: `(which, httpGet)`.
    fn probes(&self) -> Vec<(&'static str, &Value)> {
        ["startupProbe", "readinessProbe", "livenessProbe"]
            .into_iter()
            .filter_map(|which| {
                let probe = self.container().get(which)?;
                let get = probe
                    .get("httpGet")
                    .unwrap_or_else(|| panic!("{which} is an httpGet probe"));
                Some((which, get))
            })
            .collect()
    }

    fn env(&self, name: &str) -> &Value {
        array(&self.container()["env"])
            .iter()
            .find(|entry| entry["name"] == name)
            .unwrap_or_else(|| panic!("the container sets no {name}"))
    }
}

fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// `selector` (a label map) selects pods labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a label selector");
    !selector.is_empty() && selector.iter().all(|(key, value)| labels[key] == *value)
}

/// A Kubernetes memory quantity in bytes (`Ki`/`Mi`/`Gi` or plain).
fn bytes_of(quantity: &str) -> u64 {
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    for (suffix, scale) in units {
        if let Some(count) = quantity.strip_suffix(suffix) {
            return count.parse::<u64>().unwrap() * scale;
        }
    }
    quantity.parse().unwrap()
}

/// Which listener a container port is: `"data"` or `"admin"`.
fn listener_of(config: &Config, port: &Value) -> &'static str {
    let number = number(&port["containerPort"]) as u16;
    if number == config.listeners.data.port() {
        "data"
    } else if number == config.listeners.admin.port() {
        "admin"
    } else {
        panic!("container port {port} is no listener of levee.json")
    }
}

// ---- the manifests alone ------------------------------------------------------

#[test]
fn every_manifest_parses_and_the_kustomization_lists_them_all() {
    let manifests = Manifests::load();
    let mut names = BTreeSet::new();
    for (file, doc) in &manifests.docs {
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{file}: no {field}");
        }
        if doc["kind"] == "Kustomization" {
            // kustomize's own file, not an object of the cluster.
            continue;
        }
        let name = text(&doc["metadata"]["name"]);
        assert!(
            names.insert((text(&doc["kind"]).to_owned(), name.to_owned())),
            "{file}: a second {} named {name}",
            doc["kind"]
        );
    }
    let kustomization = manifests.of_kind("Kustomization");
    assert_eq!(kustomization.len(), 1, "one kustomization.yaml");
    let listed: BTreeSet<&str> = array(&kustomization[0]["resources"])
        .iter()
        .map(text)
        .collect();
    let files: BTreeSet<&str> = manifests
        .docs
        .iter()
        .filter(|(_, doc)| doc["kind"] != "Kustomization")
        .map(|(file, _)| file.as_str())
        .collect();
    assert_eq!(listed, files, "kustomization.yaml lists every manifest");
}

#[test]
fn the_container_command_line_is_one_levee_takes() {
    let manifests = Manifests::load();
    let command = array(&manifests.container()["command"]);
    assert!(
        text(&command[0]).ends_with("/levee"),
        "the container runs levee: {command:?}"
    );
    let args = manifests.args();
    let subcommand = &args[0];
    let top = help(&[]);
    assert!(
        top.lines()
            .any(|line| line.split_whitespace().next() == Some(subcommand)),
        "`levee --help` lists no {subcommand:?}:\n{top}"
    );
    let usage = help(&[subcommand]);
    for flag in args.iter().filter(|arg| arg.starts_with("--")) {
        assert!(
            usage.contains(&format!("{flag} ")),
            "`levee {subcommand} --help` has no {flag}:\n{usage}"
        );
    }
    assert_eq!(
        args,
        ["serve", "--config", "/etc/levee/levee.json"],
        "the README describes this command line"
    );
}

/// `levee [args] --help`.
fn help(args: &[&str]) -> String {
    let output = Command::new(LEVEE)
        .args(args)
        .arg("--help")
        .output()
        .expect("levee runs");
    assert!(output.status.success(), "levee {args:?} --help failed");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_statefulset_agrees_with_the_config_and_the_services() {
    let manifests = Manifests::load();
    let set = manifests.statefulset();
    let config = manifests.config();
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    assert_eq!(number(&set["spec"]["replicas"]), 3);
    assert!(selects(&set["spec"]["selector"]["matchLabels"], labels));

    // The Services: a headless one governs the set, every one selects its
    // pods and targets its ports.
    let headless = manifests.find("Service", text(&set["spec"]["serviceName"]));
    assert_eq!(headless["spec"]["clusterIP"], "None", "a headless Service");
    let mut data_service = false;
    for service in manifests.of_kind("Service") {
        if service["spec"]["type"] == "ExternalName" {
            continue;
        }
        assert!(selects(&service["spec"]["selector"], labels), "{service}");
        for port in array(&service["spec"]["ports"]) {
            let target = manifests.container_port(&port["targetPort"]);
            data_service |= service != headless && listener_of(&config, target) == "data";
        }
    }
    assert!(
        data_service,
        "a Service other than the headless one serves the data port"
    );
    for budget in manifests.of_kind("PodDisruptionBudget") {
        assert!(selects(&budget["spec"]["selector"]["matchLabels"], labels));
    }

    // Ports: the listeners', on every address of the pod.
    let ports = array(&manifests.container()["ports"]);
    assert_eq!(ports.len(), 2, "the data and admin ports");
    for (name, address) in [
        ("data", config.listeners.data),
        ("admin", config.listeners.admin),
    ] {
        let port = manifests.container_port(&json!(name));
        assert_eq!(number(&port["containerPort"]), u64::from(address.port()));
        assert!(
            address.ip().is_unspecified(),
            "listeners.{name} {address}: the kubelet and the Services reach the pod's address"
        );
    }

    // Probes: on a listener, over TLS exactly when it has TLS.
    let probes = manifests.probes();
    let kinds: Vec<&str> = probes.iter().map(|(which, _)| *which).collect();
    assert_eq!(kinds, ["startupProbe", "readinessProbe", "livenessProbe"]);
    for (which, get) in &probes {
        let listener = listener_of(&config, manifests.container_port(&get["port"]));
        let tls = match listener {
            "data" => config.listeners.tls.data.is_some(),
            _ => config.listeners.tls.admin.is_some(),
        };
        let scheme = get.get("scheme").and_then(Value::as_str).unwrap_or("HTTP");
        assert_eq!(
            scheme,
            if tls { "HTTPS" } else { "HTTP" },
            "{which} on the {listener} listener"
        );
        assert!(text(&get["path"]).starts_with('/'), "{which}");
    }

    // Files: the config from the ConfigMap, certificates from Secrets.
    assert!(manifests.volume_of(&manifests.config_path()).0["configMap"].is_object());
    let tls_files = [&config.listeners.tls.data, &config.listeners.tls.admin]
        .into_iter()
        .flatten()
        .flat_map(|tls| {
            [
                Some(&tls.cert_chain_file),
                Some(&tls.key_file),
                tls.client_ca_file.as_ref(),
            ]
        })
        .flatten();
    for file in tls_files {
        let (volume, key) = manifests.volume_of(file.to_str().unwrap());
        assert!(
            volume["secret"]["secretName"].is_string(),
            "{} comes from a Secret",
            file.display()
        );
        assert!(
            ["tls.crt", "tls.key", "ca.crt"].contains(&key.as_str()),
            "{key}: a key of a kubernetes.io/tls Secret"
        );
    }

    // data_dir is the persistent volume, and everything levee writes is in it.
    let claims = array(&set["spec"]["volumeClaimTemplates"]);
    assert_eq!(claims.len(), 1);
    let claim = text(&claims[0]["metadata"]["name"]);
    let mount = array(&manifests.container()["volumeMounts"])
        .iter()
        .find(|mount| mount["name"] == claim)
        .expect("the claim is mounted");
    assert_eq!(Path::new(text(&mount["mountPath"])), config.data_dir);
    assert_ne!(mount["readOnly"], true);
    assert!(config.plugin_dir().starts_with(&config.data_dir));
    let security = &manifests.container()["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(manifests.pod()["securityContext"]["runAsNonRoot"], true);

    // The admin token comes from a Secret, never from the ConfigMap.
    assert!(config.admin_token.is_none(), "no admin_token in levee.json");
    let token = &manifests.env(TOKEN_ENV)["valueFrom"]["secretKeyRef"];
    assert!(token["name"].is_string() && token["key"].is_string());
    // The instance id is the pod's name, and every pod's name is a valid one.
    let instance = manifests.env("LEVEE_INSTANCE_ID");
    assert_eq!(
        instance["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    for ordinal in 0..number(&set["spec"]["replicas"]) {
        let pod = format!("{}-{ordinal}", text(&set["metadata"]["name"]));
        levee_config::validate_instance_id(&pod).unwrap_or_else(|e| panic!("{pod}: {e}"));
    }

    // The drain fits in the grace period.
    let grace = number(&manifests.pod()["terminationGracePeriodSeconds"]);
    let pre_stop = number(&manifests.container()["lifecycle"]["preStop"]["sleep"]["seconds"]);
    assert!(pre_stop >= 1, "a preStop sleep lets the endpoints catch up");
    let drain = config.shutdown_grace_ms.div_ceil(1000);
    assert!(
        grace >= pre_stop + drain + FLUSH_MARGIN_S,
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} s + shutdown_grace_ms {drain} s + {FLUSH_MARGIN_S} s"
    );

    // Memory: the body budget fits under the limit.
    let limit = bytes_of(text(
        &manifests.container()["resources"]["limits"]["memory"],
    ));
    assert!(
        limit >= config.server.buffered_body_bytes_max + BASELINE_MEMORY_BYTES,
        "memory limit {limit} vs server.buffered_body_bytes_max {}",
        config.server.buffered_body_bytes_max
    );
    assert!(manifests.container()["resources"]["requests"].is_object());

    // etcd: each endpoint names a Service of the manifests, on its port.
    let cluster = config.cluster.as_ref().expect("cluster mode");
    for endpoint in &cluster.etcd {
        let uri: hyper::Uri = endpoint.parse().unwrap();
        let host = uri.host().unwrap();
        let service = manifests.find("Service", host.split('.').next().unwrap());
        let port = u64::from(uri.port_u16().unwrap());
        assert!(
            array(&service["spec"]["ports"])
                .iter()
                .any(|p| number(&p["port"]) == port),
            "{endpoint}: the Service has no port {port}"
        );
    }

    // The image is this version of levee.
    let image = text(&manifests.container()["image"]);
    assert_eq!(
        image.rsplit_once(':').map(|(_, tag)| tag),
        Some(env!("CARGO_PKG_VERSION")),
        "the image tag is the version this test checked"
    );

    // The README tells how to create each Secret the pods need.
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let mut secrets = vec![text(&token["name"])];
    secrets.extend(
        array(&manifests.pod()["volumes"])
            .iter()
            .filter_map(|volume| volume["secret"]["secretName"].as_str()),
    );
    for secret in secrets {
        assert!(
            readme.contains("create secret") && readme.contains(secret),
            "deploy/kubernetes/README.md says how to create the Secret {secret}"
        );
    }
}

// ---- a levee as the pod runs it -----------------------------------------------

/// A `levee serve` killed (by PID) when dropped.
struct Pod {
    child: Option<Child>,
    data: SocketAddr,
    admin: SocketAddr,
    stderr: PathBuf,
}

impl Pod {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The loopback address of a container port (by its listener).
    fn address(&self, listener: &str) -> SocketAddr {
        let port = match listener {
            "data" => self.data.port(),
            _ => self.admin.port(),
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn sigterm(&self) {
        let pid = self.child.as_ref().unwrap().id();
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }

    /// Waits (bounded) for the exit; its code.
    fn wait_exit(&mut self, bound: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A CA and a certificate for `localhost` and 127.0.0.1 signed by it, as
/// PEM: `(ca, certificate, key)`.
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "deploy test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, leaf.pem(), key.serialize_pem())
}

/// Starts levee as the StatefulSet's container would: its arguments and
/// environment, the ConfigMap's config with what only a cluster has
/// replaced (ports the OS picks on the same addresses, `data_dir`, the
/// TLS files, the sample service's nodes, no etcd).
fn start_pod(
    manifests: &Manifests,
    dir: &Path,
    replicas: &[Replica],
    cert: &(String, String),
) -> Pod {
    let mut config: Value = serde_json::from_str(&manifests.config_text()).unwrap();
    for listener in ["data", "admin"] {
        let address: SocketAddr = text(&config["listeners"][listener]).parse().unwrap();
        config["listeners"][listener] = json!(SocketAddr::new(address.ip(), 0));
    }
    if let Some(all) = config["listeners"]["tls"].as_object_mut() {
        for spec in all.values_mut() {
            for (field, pem) in [("cert_chain_file", &cert.0), ("key_file", &cert.1)] {
                let name = Path::new(text(&spec[field])).file_name().unwrap();
                let file = dir.join(name);
                std::fs::write(&file, pem).unwrap();
                spec[field] = json!(file);
            }
        }
    }
    config["data_dir"] = json!(dir.join("data"));
    config.as_object_mut().unwrap().remove("cluster");
    for service in config["services"].as_array_mut().unwrap() {
        for (index, node) in service["nodes"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            node["url"] = json!(replicas[index % replicas.len()].url());
        }
    }
    let config_file = dir.join("levee.json");
    std::fs::write(&config_file, config.to_string()).unwrap();

    let config_path = manifests.config_path();
    let args: Vec<String> = manifests
        .args()
        .into_iter()
        .map(|arg| {
            if arg == config_path {
                config_file.to_string_lossy().into_owned()
            } else {
                arg
            }
        })
        .collect();
    let mut command = Command::new(LEVEE);
    command.args(&args);
    for entry in array(&manifests.container()["env"]) {
        let name = text(&entry["name"]);
        let value = if let Some(value) = entry["value"].as_str() {
            value.to_owned()
        } else if entry["valueFrom"]["secretKeyRef"].is_object() {
            assert_eq!(name, TOKEN_ENV, "the only Secret in the environment");
            TOKEN.to_owned()
        } else if entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
            format!("{}-0", text(&manifests.statefulset()["metadata"]["name"]))
        } else {
            panic!("no test value for {entry}")
        };
        command.env(name, value);
    }
    let stderr = dir.join("stderr.log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn levee");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = sender.send(first);
        }
        for _ in lines {}
    });
    let mut pod = Pod {
        child: Some(child),
        data: SocketAddr::from(([0, 0, 0, 0], 0)),
        admin: SocketAddr::from(([0, 0, 0, 0], 0)),
        stderr,
    };
    let banner = receiver
        .recv_timeout(STARTUP_WAIT)
        .unwrap_or_else(|_| panic!("levee did not start:\n{}", pod.stderr()));
    for part in banner.split_whitespace() {
        if let Some(address) = part.strip_prefix("data=") {
            pod.data = address.parse().unwrap();
        } else if let Some(address) = part.strip_prefix("admin=") {
            pod.admin = address.parse().unwrap();
        }
    }
    assert!(
        pod.data.ip().is_unspecified() && pod.admin.ip().is_unspecified(),
        "bound as in the pod: {banner}"
    );
    pod
}

/// What the kubelet's `httpGet` probe gets: `Ok(status)` or why it failed
/// to get one (refused, timed out, TLS). HTTPS is verified against the
/// test CA (the kubelet verifies nothing), and no token is sent unless
/// `token`.
async fn probe_get(
    address: SocketAddr,
    scheme: &str,
    path: &str,
    timeout: Duration,
    ca: &str,
    token: Option<&str>,
) -> Result<StatusCode, String> {
    let exchange = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", address.to_string())
            .header("user-agent", "kube-probe/1.30")
            .header("accept", "*/*");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Empty::<Bytes>::new()).unwrap();
        if scheme == "HTTPS" {
            let connector = TlsConnector::from(Arc::new(client_config(ca)));
            let name = ServerName::try_from("localhost").unwrap();
            let tls = connector
                .connect(name, stream)
                .await
                .map_err(|e| e.to_string())?;
            send(tls, request).await
        } else {
            send(stream, request).await
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

async fn send<I>(io: I, request: Request<Empty<Bytes>>) -> Result<StatusCode, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    Ok(status)
}

fn client_config(ca: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// `/kv` requests the replicas have served.
async fn kv_requests(replicas: &[Replica]) -> u64 {
    let mut total = 0;
    for replica in replicas {
        total += replica.kv_requests().await;
    }
    total
}

/// The kubelet's verdict: 200 to 399 is a success.
fn succeeded(outcome: &Result<StatusCode, String>) -> bool {
    matches!(outcome, Ok(status) if (200..400).contains(&status.as_u16()))
}

/// One probe of the manifest against the pod-like levee.
async fn run_probe(
    manifests: &Manifests,
    pod: &Pod,
    which: &str,
    ca: &str,
) -> Result<StatusCode, String> {
    let config = manifests.config();
    let get = manifests
        .probes()
        .into_iter()
        .find(|(kind, _)| *kind == which)
        .map(|(_, get)| get)
        .unwrap_or_else(|| panic!("no {which}"));
    let listener = listener_of(&config, manifests.container_port(&get["port"]));
    let timeout = manifests.container()[which]["timeoutSeconds"]
        .as_u64()
        .unwrap_or(1);
    probe_get(
        pod.address(listener),
        get.get("scheme").and_then(Value::as_str).unwrap_or("HTTP"),
        text(&get["path"]),
        Duration::from_secs(timeout),
        ca,
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_levee_run_as_the_pod_runs_it_answers_the_probes_and_drains() {
    let manifests = Manifests::load();
    let config = manifests.config();
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> = (0..3).map(|i| Replica::spawn(&format!("r{i}"))).collect();
    let (ca, cert, key) = certificates();
    let mut pod = start_pod(&manifests, dir.path(), &replicas, &(cert, key));

    // The startup probe passes once recovery is done; then the others.
    let started = Instant::now();
    loop {
        let outcome = run_probe(&manifests, &pod, "startupProbe", &ca).await;
        if succeeded(&outcome) {
            break;
        }
        assert!(
            started.elapsed() < STARTUP_WAIT,
            "the startup probe never passed ({outcome:?}); stderr:\n{}",
            pod.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for which in ["readinessProbe", "livenessProbe"] {
        let outcome = run_probe(&manifests, &pod, which, &ca).await;
        assert!(succeeded(&outcome), "{which}: {outcome:?}");
    }

    // The probes are levee's admin /healthz and /readyz, open without the
    // token off loopback (a kubelet cannot send one); /metrics is not.
    let paths: Vec<(&str, &str)> = manifests
        .probes()
        .into_iter()
        .map(|(which, get)| (which, get["path"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        paths,
        [
            ("startupProbe", "/readyz"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz")
        ]
    );
    let admin = pod.address("admin");
    let scheme = if config.listeners.tls.admin.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };
    let second = Duration::from_secs(5);
    for path in ["/healthz", "/readyz"] {
        let without = probe_get(admin, scheme, path, second, &ca, None).await;
        assert_eq!(without, Ok(StatusCode::OK), "admin {path} without a token");
    }
    let metrics = probe_get(admin, scheme, "/metrics", second, &ca, None).await;
    assert_eq!(
        metrics,
        Ok(StatusCode::UNAUTHORIZED),
        "/metrics off loopback needs {TOKEN_ENV}'s token"
    );

    // The sample service answers through the data port.
    let service = &config.services[0].name;
    let data = format!("http://{}/{service}/kv/deploy-check", pod.address("data"));
    let (status, headers, body) = call(Method::PUT, &data, &[], "written").await;
    assert!(
        status.is_success(),
        "a write through {service}: {status} {body}"
    );
    assert!(headers.contains_key("x-levee-acks"));
    let (status, _, body) = call(Method::GET, &data, &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "written"));

    // SIGTERM while a request is in flight: readiness fails before that
    // request is answered, the request finishes, and levee exits 0 within
    // what the pod grants after its preStop sleep.
    for replica in &replicas {
        // Slow, but within the sample service's per-try timeout (500 ms).
        replica.fault(json!({"delay_ms": 300})).await;
    }
    let served_before = kv_requests(&replicas).await;
    let in_flight = tokio::spawn({
        let data = data.clone();
        async move { call(Method::GET, &data, &[], "").await }
    });
    let reached = Instant::now();
    while kv_requests(&replicas).await == served_before {
        assert!(
            reached.elapsed() < Duration::from_secs(10),
            "the request never reached a replica"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = Instant::now();
    pod.sigterm();
    loop {
        let readiness = run_probe(&manifests, &pod, "readinessProbe", &ca).await;
        if !succeeded(&readiness) {
            break;
        }
        assert!(
            !in_flight.is_finished(),
            "still ready when the request in flight was answered: {readiness:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "written"),
        "the request in flight"
    );
    let grace = number(&manifests.pod()["terminationGracePeriodSeconds"]);
    let pre_stop = number(&manifests.container()["lifecycle"]["preStop"]["sleep"]["seconds"]);
    let allowed = Duration::from_secs(grace - pre_stop);
    let code = pod.wait_exit(allowed);
    assert_eq!(
        code,
        Some(0),
        "levee exits 0 within {allowed:?} of SIGTERM (took {:?}); stderr:\n{}",
        stopping.elapsed(),
        pod.stderr()
    );
}
