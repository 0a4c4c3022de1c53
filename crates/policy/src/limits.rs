//! Bounds shared by the host and the plugins, so both sides agree on what is
//! too big, and [`PluginLimits`], the per-binding plugin fence the host
//! enforces (data only here: the host's plugin runtime checks it against its
//! engine).

/// Bytes of one header value a plugin reads (`request.header`); longer
/// values are cut at a character boundary.
pub const HEADER_VALUE_BYTES_MAX: usize = 256;
/// Bytes of the path and query a plugin reads (`request.path`).
pub const PATH_BYTES_MAX: usize = 8 * 1024;
/// Nodes in one service's node table given to `set-nodes`.
pub const NODE_TABLE_MAX: usize = 4_096;
/// Bytes of a plugin's `configure` input.
pub const CONFIG_BYTES_MAX: usize = 64 * 1024;
/// Bytes of any string a plugin returns (give-up reasons, configure errors).
pub const RETURNED_STRING_BYTES_MAX: usize = 4 * 1024;
/// Entries of a returned `route-plan.order`.
pub const ROUTE_ORDER_MAX: usize = 64;
/// A retry delay longer than this is clamped.
pub const RETRY_DELAY_MS_MAX: u32 = 60_000;

/// Headers a plugin never reads: credentials. `request.header` answers
/// `none` for them whatever the plugin asks and whatever its binding lists
/// (names are compared case-insensitively).
pub const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// The request headers a plugin may read when its binding lists none
/// (`headers` absent): only what decides whether a retry is safe.
pub const PLUGIN_HEADERS_DEFAULT: [&str; 1] = ["idempotency-key"];
/// Names one binding's `headers` may list.
pub const PLUGIN_HEADERS_MAX: usize = 32;
/// Bytes of one name in a binding's `headers`.
pub const PLUGIN_HEADER_NAME_BYTES_MAX: usize = 64;

/// Why `name` cannot be listed in a binding's `headers`, if it cannot: it
/// must be a lower-case HTTP field name (RFC 9110 token characters) of
/// 1 to [`PLUGIN_HEADER_NAME_BYTES_MAX`] bytes, and not a credential.
pub fn plugin_header_name_problem(name: &str) -> Option<String> {
    let token =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > PLUGIN_HEADER_NAME_BYTES_MAX {
        Some(format!(
            "must be 1 to {PLUGIN_HEADER_NAME_BYTES_MAX} bytes, not {}",
            name.len()
        ))
    } else if !name.bytes().all(token) {
        Some(format!(
            "{name:?} must be a lower-case header name (a-z, 0-9 and !#$%&'*+-.^_`|~)"
        ))
    } else if is_credential_header(name) {
        Some(format!(
            "{name:?} is a credential: plugins never read {}",
            CREDENTIAL_HEADERS.join(", ")
        ))
    } else {
        None
    }
}

/// Whether `name` is one of [`CREDENTIAL_HEADERS`].
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|credential| credential.eq_ignore_ascii_case(name))
}

/// The fence around one bound plugin, as data: what the host allows one
/// plugin binding to consume. The host's plugin runtime enforces it
/// (`levee_plugin::Limits` is this type re-exported) and checks it against
/// what its engine was built to allow; this crate only carries it, so the
/// service config can hold it (`policies.retry.limits`) without depending
/// on the runtime.
///
/// A plugin runs on the request path, so everything it can consume is
/// capped: CPU per call (epoch deadline), linear memory and table growth,
/// how many instances, memories and tables it may create, how large the
/// strings and lists it returns may be, how much it may log, how many
/// instances its pool keeps, and how many failures in a row are tolerated
/// before the version is quarantined. Every field has a sane default.
/// Units are in the names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// CPU budget of one policy call, enforced by epoch interruption: the
    /// call is stopped between this and this plus one epoch tick. It is
    /// measured in wall time while the call runs, so a thread preempted
    /// mid-call on an overloaded machine can time out; the native policy
    /// then answers that call, which keeps the answer correct.
    pub call_timeout_ms: u32,
    /// Budget for instantiation plus `configure` of a fresh instance.
    pub configure_timeout_ms: u32,
    /// Linear memory of one instance.
    pub memory_bytes_max: u64,
    /// Elements of any one table.
    pub table_elements_max: u32,
    /// Core instances one component instance may create.
    pub instances_max: u32,
    /// Linear memories one component instance may create.
    pub memories_max: u32,
    /// Tables one component instance may create.
    pub tables_max: u32,
    /// Bytes of any string the plugin returns (reasons, node ids).
    pub returned_string_bytes_max: u32,
    /// Entries of a returned route plan.
    pub route_order_max: u32,
    /// `host.log` calls honoured per policy call; further ones are dropped.
    pub log_calls_per_call_max: u32,
    /// Failures in a row after which the version is quarantined.
    pub consecutive_failures_max: u32,
    /// Ready instances kept between calls.
    pub pool_idle_max: u32,
    /// Instances alive at once (idle + in a call).
    pub pool_instances_max: u32,
    /// Whether the route plans of a routing plugin that declares
    /// `cacheable-by-health-flags` (WIT `routing.route-traits`) are cached
    /// and reused (a bounded cache per binding; see `levee_plugin`'s
    /// `plan_cache`). `false` calls the plugin for every request whatever
    /// it declares. Other kinds ignore it.
    pub route_plan_cache: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        // On wasm32 `available_parallelism` is an error: 2 cores then.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool_idle_max = u32::try_from(2 * cores).unwrap_or(u32::MAX).min(64);
        PluginLimits {
            call_timeout_ms: 2,
            configure_timeout_ms: 100,
            memory_bytes_max: 16 * 1024 * 1024,
            table_elements_max: 10_000,
            instances_max: 16,
            memories_max: 4,
            tables_max: 16,
            returned_string_bytes_max: RETURNED_STRING_BYTES_MAX as u32,
            route_order_max: ROUTE_ORDER_MAX as u32,
            log_calls_per_call_max: 8,
            consecutive_failures_max: 5,
            pool_idle_max,
            pool_instances_max: 32.max(pool_idle_max),
            route_plan_cache: true,
        }
    }
}

/// The hard ceiling of [`PluginLimits::call_timeout_ms`]: a request-path
/// policy that needs more than a second of CPU is a bug, not a
/// configuration.
pub const CALL_TIMEOUT_MS_MAX: u32 = 1_000;
/// The hard ceiling of [`PluginLimits::configure_timeout_ms`].
pub const CONFIGURE_TIMEOUT_MS_MAX: u32 = 10_000;
/// The hard ceiling of [`PluginLimits::returned_string_bytes_max`].
pub const RETURNED_STRING_BYTES_CEILING: u32 = 1024 * 1024;
/// The hard ceiling of [`PluginLimits::route_order_max`].
pub const ROUTE_ORDER_CEILING: u32 = 4_096;
/// The hard ceiling of [`PluginLimits::log_calls_per_call_max`].
pub const LOG_CALLS_PER_CALL_CEILING: u32 = 1_024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_ceilings_and_the_shared_bounds() {
        let limits = PluginLimits::default();
        assert!((1..=CALL_TIMEOUT_MS_MAX).contains(&limits.call_timeout_ms));
        assert!((1..=CONFIGURE_TIMEOUT_MS_MAX).contains(&limits.configure_timeout_ms));
        assert!((1..=RETURNED_STRING_BYTES_CEILING).contains(&limits.returned_string_bytes_max));
        assert!((1..=ROUTE_ORDER_CEILING).contains(&limits.route_order_max));
        assert!(limits.log_calls_per_call_max <= LOG_CALLS_PER_CALL_CEILING);
        assert!(limits.pool_idle_max <= limits.pool_instances_max);
        assert_eq!(
            limits.returned_string_bytes_max as usize,
            RETURNED_STRING_BYTES_MAX
        );
        assert_eq!(limits.route_order_max as usize, ROUTE_ORDER_MAX);
    }

    #[test]
    fn empty_json_object_means_defaults_and_round_trips() {
        let parsed: PluginLimits = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, PluginLimits::default());
        let partial: PluginLimits = serde_json::from_str(r#"{"call_timeout_ms": 7}"#).unwrap();
        assert_eq!(
            partial,
            PluginLimits {
                call_timeout_ms: 7,
                ..PluginLimits::default()
            }
        );
        let again: PluginLimits =
            serde_json::from_str(&serde_json::to_string(&partial).unwrap()).unwrap();
        assert_eq!(again, partial);
    }

    #[test]
    fn header_names_are_lower_case_tokens_and_never_credentials() {
        assert_eq!(plugin_header_name_problem("x-tenant"), None);
        assert_eq!(plugin_header_name_problem(PLUGIN_HEADERS_DEFAULT[0]), None);
        for credential in CREDENTIAL_HEADERS {
            let problem = plugin_header_name_problem(credential).unwrap();
            assert!(problem.contains("is a credential"), "{problem}");
        }
        assert!(is_credential_header("Set-Cookie"));
        for bad in [
            "",
            "X-Tenant",
            "a b",
            "é",
            &"a".repeat(PLUGIN_HEADER_NAME_BYTES_MAX + 1),
        ] {
            assert!(plugin_header_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_str::<PluginLimits>(r#"{"call_timeout": 5}"#).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
