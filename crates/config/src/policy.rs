//! Policy bindings: which plugin serves a policy, with what config and
//! fence.
//!
//! Two scopes, because the policies have two owners:
//! - **per service** (`services[].policies`): `retry` and `routing`, each
//!   service's own;
//! - **per process** (the top-level `checkpoint`): the checkpoint policy
//!   decides about the durable log, and there is one log per levee, so one
//!   binding. A `services[].policies.checkpoint` (where it used to be) is
//!   refused at its path with a message saying where it went, rather than
//!   letting one service's binding silently win over the others'.
//!
//! A binding's `config` belongs to its plugin: it is handed to the plugin's
//! `configure` untouched, so a plugin defines its own fields (a JavaScript
//! retry policy may take `{"max": 4}`). The native policy that answers
//! whenever the plugin cannot (quarantined, trapped, over its deadline, not
//! bound yet) takes its own optional `fallback` config, checked here with
//! the native policy's own rules; its defaults when absent.
//!
//! A binding also says which request headers its plugin may read
//! (`headers`, by default only `idempotency-key`): a request carries
//! whatever its client sends, and a plugin is code the operator may not
//! have written, so it reads what the binding lists and nothing else.
//! Credentials (`authorization`, `proxy-authorization`, `cookie`,
//! `set-cookie`) are never passed: listing one is refused, naming the
//! entry, rather than silently dropped, so a config never says a plugin
//! sees something it does not. (The runtime checks again on every read.)

use levee_policy::limits::{
    PLUGIN_HEADERS_DEFAULT, PLUGIN_HEADERS_MAX, plugin_header_name_problem,
};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Errors;
use crate::names::validate_plugin_name;

/// The message for a `services[].policies.checkpoint`.
pub const CHECKPOINT_MOVED: &str = "the checkpoint policy moved to the top-level `checkpoint` field \
     (one checkpoint policy per process: the log it decides about is shared by every service)";

/// A service's plugin bindings; an absent policy means the native built-in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "PoliciesWire")]
pub struct PoliciesSpec {
    pub retry: Option<PolicyRef>,
    pub routing: Option<PolicyRef>,
    /// A `write-policy` plugin: when a replicated write is acknowledged
    /// (native: W-of-N, which takes no config).
    pub write: Option<PolicyRef>,
}

/// [`PoliciesSpec`] as the file spells it: also names the old
/// `checkpoint` field, only to refuse it at its own path.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PoliciesWire {
    retry: Option<PolicyRef>,
    routing: Option<PolicyRef>,
    write: Option<PolicyRef>,
    #[serde(deserialize_with = "refuse_checkpoint")]
    checkpoint: (),
}

impl From<PoliciesWire> for PoliciesSpec {
    fn from(wire: PoliciesWire) -> PoliciesSpec {
        let PoliciesWire {
            retry,
            routing,
            write,
            checkpoint: (),
        } = wire;
        PoliciesSpec {
            retry,
            routing,
            write,
        }
    }
}

/// A `policies.checkpoint` binding is refused. `null` (no binding) is
/// accepted: service specs stored before the move (service-change records,
/// snapshots) spell every absent binding that way.
fn refuse_checkpoint<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    match Option::<serde::de::IgnoredAny>::deserialize(deserializer)? {
        None => Ok(()),
        Some(_) => Err(serde::de::Error::custom(CHECKPOINT_MOVED)),
    }
}

/// `{"plugin": "<name>", "config": {...}, "fallback": {...}, "limits":
/// {...}, "headers": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub plugin: String,
    /// The plugin's own config, passed to its `configure` as is (the
    /// plugin validates it; levee only bounds its size).
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// The native fallback policy's config (`retry-backoff`,
    /// `route-affinity` or `checkpoint-interval` fields); its defaults when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<serde_json::Value>,
    /// The fence around the plugin (`levee_policy::limits::PluginLimits`,
    /// which the runtime re-exports as `levee_plugin::Limits`: per-call CPU
    /// deadline, memory, pool size, ...); its defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<levee_policy::limits::PluginLimits>,
    /// The request headers the plugin may read through `request.header`:
    /// lower-case names, at most [`PLUGIN_HEADERS_MAX`], never a
    /// credential. Absent: [`PLUGIN_HEADERS_DEFAULT`] (`idempotency-key`).
    /// `[]` shows none. The checkpoint policy reads no request and ignores
    /// it.
    #[serde(
        default = "default_headers",
        skip_serializing_if = "is_default_headers"
    )]
    pub headers: Vec<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// [`PLUGIN_HEADERS_DEFAULT`], owned.
pub fn default_headers() -> Vec<String> {
    PLUGIN_HEADERS_DEFAULT.map(String::from).to_vec()
}

fn is_default_headers(headers: &[String]) -> bool {
    headers.iter().eq(PLUGIN_HEADERS_DEFAULT.iter())
}

/// A config at `path` must be a JSON object of bounded size.
fn validate_object(config: &serde_json::Value, path: &str, errors: &mut Errors) {
    if !config.is_object() {
        errors.add(path, "must be a JSON object");
    } else if config.to_string().len() > levee_policy::limits::CONFIG_BYTES_MAX {
        errors.add(
            path,
            format!(
                "must serialize to at most {} bytes",
                levee_policy::limits::CONFIG_BYTES_MAX
            ),
        );
    }
}

impl PolicyRef {
    /// The native fallback's config as JSON text: `""` (the native
    /// policy's defaults) when the binding has none.
    pub fn fallback_json(&self) -> String {
        self.fallback
            .as_ref()
            .map(serde_json::Value::to_string)
            .unwrap_or_default()
    }

    /// Checks `fallback` (if any) at `<path>.fallback` with `native`, the
    /// native policy's own parser, named `native_name` in the message.
    fn validate_fallback(
        &self,
        path: &str,
        native_name: &str,
        native: impl Fn(&str) -> Result<(), String>,
        errors: &mut Errors,
    ) {
        let Some(fallback) = &self.fallback else {
            return;
        };
        let path = format!("{path}.fallback");
        if fallback.is_object()
            && fallback.to_string().len() <= levee_policy::limits::CONFIG_BYTES_MAX
            && let Err(reason) = native(&fallback.to_string())
        {
            errors.add(
                path,
                format!("the native {native_name} refuses it: {reason}"),
            );
        }
    }

    /// Checks the binding at `path` (`services[0].policies.retry`,
    /// `checkpoint`, ...).
    pub(crate) fn validate_into(&self, path: &str, errors: &mut Errors) {
        if validate_plugin_name(&self.plugin).is_err() {
            errors.add(
                format!("{path}.plugin"),
                "must be 1 to 64 bytes of [a-z0-9_-] (a file name in plugin_dir without .wasm)",
            );
        }
        validate_object(&self.config, &format!("{path}.config"), errors);
        if let Some(fallback) = &self.fallback {
            validate_object(fallback, &format!("{path}.fallback"), errors);
        }
        self.validate_headers(&format!("{path}.headers"), errors);
    }

    /// Checks `headers` at `path`: the count, then each name (lower-case
    /// header name, bounded, not a credential, not listed twice).
    fn validate_headers(&self, path: &str, errors: &mut Errors) {
        if self.headers.len() > PLUGIN_HEADERS_MAX {
            errors.add(
                path,
                format!(
                    "lists {} headers, more than the {PLUGIN_HEADERS_MAX} allowed",
                    self.headers.len()
                ),
            );
            return;
        }
        for (index, name) in self.headers.iter().enumerate() {
            let problem = plugin_header_name_problem(name).or_else(|| {
                self.headers[..index]
                    .contains(name)
                    .then(|| format!("{name:?} is listed twice"))
            });
            if let Some(problem) = problem {
                errors.add(format!("{path}[{index}]"), problem);
            }
        }
    }
}

impl PoliciesSpec {
    /// Checks each binding at `<path>.policies.<kind>`.
    pub(crate) fn validate_into(&self, path: &str, errors: &mut Errors) {
        if let Some(binding) = &self.retry {
            let path = format!("{path}.policies.retry");
            binding.validate_into(&path, errors);
            let native = |json: &str| levee_policy::RetryBackoff::from_json(json).map(drop);
            binding.validate_fallback(&path, "retry-backoff", native, errors);
        }
        if let Some(binding) = &self.routing {
            let path = format!("{path}.policies.routing");
            binding.validate_into(&path, errors);
            let native = |json: &str| levee_policy::RouteAffinity::from_json(json).map(drop);
            binding.validate_fallback(&path, "route-affinity", native, errors);
        }
        if let Some(binding) = &self.write {
            let path = format!("{path}.policies.write");
            binding.validate_into(&path, errors);
            let native = |json: &str| levee_policy::WriteQuorum::from_json(json).map(drop);
            binding.validate_fallback(&path, "write-quorum", native, errors);
        }
    }
}

/// Checks the process's checkpoint binding (the top-level `checkpoint`),
/// its `fallback` with the native `checkpoint-interval`'s rules.
pub(crate) fn validate_checkpoint(binding: &PolicyRef, errors: &mut Errors) {
    binding.validate_into("checkpoint", errors);
    let native = |json: &str| levee_policy::CheckpointInterval::from_json(json).map(drop);
    binding.validate_fallback("checkpoint", "checkpoint-interval", native, errors);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Config;
    use crate::test_support::{messages, service, with_service};

    #[test]
    fn the_checkpoint_binding_is_top_level() {
        let binding = json!({"plugin": "checkpoint-interval", "config": {"every_records": 5}});
        let text = json!({"checkpoint": binding, "services": [service(3)]}).to_string();
        let config = Config::from_json(&text).unwrap();
        let checkpoint = config.checkpoint.as_ref().unwrap();
        assert_eq!(checkpoint.plugin, "checkpoint-interval");
        assert_eq!(checkpoint.config["every_records"], 5);
        assert!(Config::from_json("{}").unwrap().checkpoint.is_none());
        let again = Config::from_json(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn the_checkpoint_binding_is_validated_with_field_paths() {
        let error = Config::from_json(
            &json!({"checkpoint": {"plugin": "../x", "config": [1]}}).to_string(),
        )
        .unwrap_err();
        let all = messages(error);
        assert!(
            all[0].starts_with("checkpoint.plugin: must be 1 to 64 bytes"),
            "{all:?}"
        );
        assert_eq!(all[1], "checkpoint.config: must be a JSON object");

        let unknown =
            Config::from_json(&json!({"checkpoint": {"plugin": "p", "confg": {}}}).to_string())
                .unwrap_err();
        assert!(
            messages(unknown)[0].starts_with("checkpoint.confg: unknown field `confg`"),
            "parse errors carry the path too"
        );

        let native = Config::from_json(
            &json!({"checkpoint": {"plugin": "p", "fallback": {"every_records": "often"}}})
                .to_string(),
        )
        .unwrap_err();
        let all = messages(native);
        assert!(
            all[0].starts_with("checkpoint.fallback: the native checkpoint-interval refuses it"),
            "{all:?}"
        );
    }

    /// A binding's `config` is its plugin's: fields the native policy does
    /// not know pass (the plugin's `configure` judges them when bound);
    /// `fallback` is the native policy's and is checked with its rules.
    #[test]
    fn config_is_the_plugins_and_fallback_the_native_policys() {
        let mut spec = service(3);
        spec["policies"] = json!({
            "retry": {"plugin": "js-retry", "config": {"max": 4}},
            "routing": {"plugin": "r", "config": {"anything": [1, 2]}, "fallback": {"prefer_zone": "a"}},
        });
        let config = Config::from_json(&with_service(spec.clone())).unwrap();
        let retry = config.services[0].policies.retry.as_ref().unwrap();
        assert_eq!(retry.config, json!({"max": 4}));
        assert_eq!(
            (retry.fallback.as_ref(), retry.fallback_json()),
            (None, String::new())
        );
        let routing = config.services[0].policies.routing.as_ref().unwrap();
        assert_eq!(routing.fallback_json(), r#"{"prefer_zone":"a"}"#);
        let again = Config::from_json(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config, "fallback survives a round trip");

        spec["policies"]["retry"]["fallback"] = json!({"max": 4});
        spec["policies"]["routing"]["fallback"] = json!([1]);
        let all = messages(Config::from_json(&with_service(spec)).unwrap_err());
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(
            all[0].starts_with(
                "services[0].policies.retry.fallback: the native retry-backoff refuses it"
            ),
            "{all:?}"
        );
        assert!(all[0].contains("max"), "{all:?}");
        assert_eq!(
            all[1],
            "services[0].policies.routing.fallback: must be a JSON object"
        );
    }

    #[test]
    fn a_per_service_checkpoint_binding_is_refused_at_its_path() {
        for value in [json!({"plugin": "checkpoint-interval"}), json!("x")] {
            let mut spec = service(3);
            spec["policies"] = json!({"checkpoint": value});
            let all = messages(Config::from_json(&with_service(spec)).unwrap_err());
            assert_eq!(all.len(), 1, "{all:?}");
            assert!(
                all[0].starts_with(&format!(
                    "services[0].policies.checkpoint: {}",
                    super::CHECKPOINT_MOVED
                )),
                "{all:?}"
            );
        }
    }

    #[test]
    fn specs_stored_before_the_move_still_parse() {
        // What a service-change record or a snapshot held: every absent
        // binding as `null`, the checkpoint's included.
        let mut spec = service(3);
        spec["policies"] = json!({"retry": null, "routing": null, "checkpoint": null});
        let config = Config::from_json(&with_service(spec)).unwrap();
        assert_eq!(config.services[0].policies, Default::default());
        let written = serde_json::to_value(&config.services[0].policies).unwrap();
        assert_eq!(
            written,
            json!({"retry": null, "routing": null, "write": null})
        );
    }

    #[test]
    fn headers_default_to_the_idempotency_key_and_round_trip() {
        let mut spec = service(3);
        spec["policies"] = json!({
            "retry": {"plugin": "retry-backoff"},
            "routing": {"plugin": "route-affinity", "headers": ["x-tenant", "idempotency-key"]},
        });
        let config = Config::from_json(&with_service(spec)).unwrap();
        let policies = &config.services[0].policies;
        assert_eq!(
            policies.retry.as_ref().unwrap().headers,
            ["idempotency-key"]
        );
        let routing = policies.routing.as_ref().unwrap();
        assert_eq!(routing.headers, ["x-tenant", "idempotency-key"]);
        // The default is not written out: stored specs look as before.
        let written = serde_json::to_value(policies).unwrap();
        assert_eq!(
            written["retry"],
            json!({"plugin": "retry-backoff", "config": {}})
        );
        let again = Config::from_json(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn credentials_and_bad_header_names_are_refused_at_their_index() {
        let mut spec = service(3);
        spec["policies"] = json!({"retry": {"plugin": "p", "headers": [
            "x-tenant", "Authorization", "cookie", "x-tenant", "", "set-cookie", "proxy-authorization",
        ]}});
        let all = messages(Config::from_json(&with_service(spec)).unwrap_err());
        let path = "services[0].policies.retry.headers";
        assert_eq!(all.len(), 6, "{all:?}");
        assert!(
            all[0].starts_with(&format!(
                "{path}[1]: \"Authorization\" must be a lower-case"
            )),
            "{all:?}"
        );
        assert!(all[1].starts_with(&format!("{path}[2]: \"cookie\" is a credential: plugins never read authorization, proxy-authorization, cookie, set-cookie")), "{all:?}");
        assert_eq!(all[2], format!("{path}[3]: \"x-tenant\" is listed twice"));
        assert!(
            all[3].starts_with(&format!("{path}[4]: must be 1 to 64 bytes")),
            "{all:?}"
        );
        assert!(
            all[4].starts_with(&format!("{path}[5]: \"set-cookie\" is a credential")),
            "{all:?}"
        );
        assert!(
            all[5].starts_with(&format!(
                "{path}[6]: \"proxy-authorization\" is a credential"
            )),
            "{all:?}"
        );

        let many: Vec<String> = (0..=super::PLUGIN_HEADERS_MAX)
            .map(|i| format!("x-{i}"))
            .collect();
        let error =
            Config::from_json(&json!({"checkpoint": {"plugin": "p", "headers": many}}).to_string())
                .unwrap_err();
        assert_eq!(
            messages(error),
            ["checkpoint.headers: lists 33 headers, more than the 32 allowed"]
        );
    }

    #[test]
    fn service_bindings_are_checked_at_their_paths() {
        let mut spec = service(3);
        spec["policies"] = json!({
            "retry": {"plugin": "retry-backoff", "config": "x"},
            "routing": {"plugin": "Bad"},
        });
        let all = messages(Config::from_json(&with_service(spec)).unwrap_err());
        assert_eq!(
            all,
            [
                "services[0].policies.retry.config: must be a JSON object",
                "services[0].policies.routing.plugin: must be 1 to 64 bytes of [a-z0-9_-] \
                 (a file name in plugin_dir without .wasm)",
            ]
        );
    }
}
