//! `wasi:io/poll` and `wasi:io/streams` whose blocking functions never
//! block.
//!
//! wasmtime-wasi's synchronous bindings run each blocking function's
//! future with tokio's `Handle::block_on`, which panics on a runtime
//! worker thread, where levee calls policies. These run it with one poll
//! instead: whatever a grant-nothing context can hand out (closed stdin,
//! the log sinks, passed deadlines) is ready at once, and anything that
//! would wait fails the call with [`WOULD_BLOCK`]. The CPU deadline cannot
//! stop a host function, so this is also what keeps a plugin from sleeping
//! a request-path thread.
//!
//! Every non-blocking function is wasmtime-wasi-io's own, forwarded.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_streams::{
    Host as AsyncStreams, HostInputStream as AsyncIn, HostOutputStream as AsyncOut,
};
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError, StreamResult};
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams as async_streams;

/// The start of the error a call fails with when a plugin would wait.
pub const WOULD_BLOCK: &str = "a policy may not block";

/// The instance's resource table, seen by the non-blocking functions.
pub(crate) struct NoBlock<'a>(pub(crate) &'a mut ResourceTable);

/// The `HasData` marker for [`NoBlock`].
pub(crate) struct NoBlockData;

impl HasData for NoBlockData {
    type Data<'a> = NoBlock<'a>;
}

/// The `HasData` marker for the bare table (`wasi:io/error`).
pub(crate) struct TableData;

impl HasData for TableData {
    type Data<'a> = &'a mut ResourceTable;
}

/// Polls `future` once: its output, or an error if it would wait.
fn once<F: Future>(future: F, what: &str) -> wasmtime::Result<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(wasmtime::format_err!("{WOULD_BLOCK}: {what} would wait")),
    }
}

/// [`once`] for a function answering a `StreamResult`.
fn once_stream<T>(future: impl Future<Output = StreamResult<T>>, what: &str) -> StreamResult<T> {
    once(future, what).map_err(StreamError::Trap)?
}

impl poll::Host for NoBlock<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        once(async_poll::Host::poll(self.0, pollables), "poll")?
    }
}

impl poll::HostPollable for NoBlock<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        once(
            async_poll::HostPollable::ready(self.0, pollable),
            "pollable.ready",
        )?
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        once(
            async_poll::HostPollable::block(self.0, pollable),
            "pollable.block",
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

impl streams::Host for NoBlock<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        Ok(AsyncStreams::convert_stream_error(self.0, err)?.into())
    }
}

impl streams::HostOutputStream for NoBlock<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        once(AsyncOut::drop(self.0, stream), "output-stream.drop")?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        AsyncOut::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        AsyncOut::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        once_stream(
            AsyncOut::blocking_write_and_flush(self.0, stream, bytes),
            "blocking-write-and-flush",
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        once_stream(
            AsyncOut::blocking_write_zeroes_and_flush(self.0, stream, len),
            "blocking-write-zeroes-and-flush",
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        AsyncOut::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        AsyncOut::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        AsyncOut::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        once_stream(AsyncOut::blocking_flush(self.0, stream), "blocking-flush")
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        AsyncOut::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        once_stream(
            AsyncOut::blocking_splice(self.0, dst, src, len),
            "blocking-splice",
        )
    }
}

impl streams::HostInputStream for NoBlock<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        once(AsyncIn::drop(self.0, stream), "input-stream.drop")?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        AsyncIn::read(self.0, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        once_stream(AsyncIn::blocking_read(self.0, stream, len), "blocking-read")
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        AsyncIn::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        once_stream(AsyncIn::blocking_skip(self.0, stream, len), "blocking-skip")
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        AsyncIn::subscribe(self.0, stream)
    }
}
