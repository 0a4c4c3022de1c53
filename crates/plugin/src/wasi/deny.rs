//! The WASI functions levee answers itself: sockets (denied) and the
//! monotonic clock (host time, deadlines that never wait).
//!
//! wasmtime-wasi creates a real OS socket on `create-tcp-socket` and only
//! checks addresses later; a plugin gets no socket at all: both
//! `create-*-socket` answer `access-denied`, so no socket resource ever
//! exists and every other `wasi:sockets` function is unreachable.
//!
//! Its monotonic clock's deadlines are tokio timers. levee's are checked
//! against the host clock ([`Ambient`]): ready once passed, otherwise
//! pending for ever, which the poll-once functions of `no_block` turn into
//! a failed call (a policy may not sleep).

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::bindings::sync::sockets::udp_create_socket;
use wasmtime_wasi::p2::{
    DynPollable, Pollable, SocketError, SocketResult, TcpSocket, UdpSocket, subscribe,
};

use super::ambient::Ambient;

/// What levee's own WASI functions reach: the instance's resource table
/// and its [`Ambient`].
pub(crate) struct Own<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) ambient: &'a Ambient,
}

/// The `HasData` marker for [`Own`].
pub(crate) struct OwnData;

impl HasData for OwnData {
    type Data<'a> = Own<'a>;
}

/// What the `create-*-socket` traits need to turn an error into a code.
impl network::Host for Own<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    fn network_error_code(
        &mut self,
        _: Resource<wasmtime_wasi_io::streams::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(None)
    }
}

impl network::HostNetwork for Own<'_> {
    fn drop(&mut self, network: Resource<network::Network>) -> wasmtime::Result<()> {
        self.table.delete(network)?;
        Ok(())
    }
}

impl tcp_create_socket::Host for Own<'_> {
    fn create_tcp_socket(&mut self, _: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        Err(ErrorCode::AccessDenied.into())
    }
}

impl udp_create_socket::Host for Own<'_> {
    fn create_udp_socket(&mut self, _: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        Err(ErrorCode::AccessDenied.into())
    }
}

/// A `subscribe-*` deadline on the host's monotonic clock.
struct Deadline {
    at_ns: u64,
    ambient: Ambient,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Deadline {
    async fn ready(&mut self) {
        if self.ambient.monotonic_ns_unmarked() < self.at_ns {
            std::future::pending::<()>().await;
        }
    }
}

impl Own<'_> {
    fn subscribe_at(&mut self, at_ns: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let deadline = self.table.push(Deadline {
            at_ns,
            ambient: self.ambient.clone(),
        })?;
        subscribe(self.table, deadline)
    }
}

impl monotonic_clock::Host for Own<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.ambient.monotonic_ns())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1_000_000)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.subscribe_at(when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let at_ns = self.ambient.monotonic_ns().saturating_add(duration);
        self.subscribe_at(at_ns)
    }
}
