//! Bounds shared by the host and the plugins, so both sides agree on what is
//! too big.

/// Headers passed to a plugin in `request-info.headers`.
pub const HEADERS_MAX: usize = 16;
/// Bytes of one header value passed to a plugin.
pub const HEADER_VALUE_BYTES_MAX: usize = 256;
/// Bytes of a plugin's `configure` input.
pub const CONFIG_BYTES_MAX: usize = 64 * 1024;
/// Bytes of any string a plugin returns (reasons, node ids).
pub const RETURNED_STRING_BYTES_MAX: usize = 4 * 1024;
/// Entries of a returned `route-plan.order`.
pub const ROUTE_ORDER_MAX: usize = 64;
/// A retry delay longer than this is clamped.
pub const RETRY_DELAY_MS_MAX: u32 = 60_000;
