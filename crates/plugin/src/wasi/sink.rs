//! A plugin's stdout and stderr, into the host log.
//!
//! Language runtimes print: CPython writes tracebacks to stderr, a
//! JavaScript `console.log` goes to stdout. Each line becomes one host log
//! line tagged with the plugin's name, version and stream, cut at
//! [`LOG_MESSAGE_BYTES_MAX`] and escaped (a plugin cannot forge log lines).
//! Lines share a per-call quota ([`LineQuota`], the binding's
//! `log_calls_per_call_max`, as for `host.log`); the rest are dropped and
//! counted as dropped logs. Writing never waits: the stream is always
//! ready and accepts up to [`WRITE_BYTES_MAX`] per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::host::{PluginTag, short_version};
use crate::limits::LOG_MESSAGE_BYTES_MAX;
use crate::stats::Counters;

/// Bytes one write may hand over (what `check-write` permits).
pub(crate) const WRITE_BYTES_MAX: usize = 64 * 1024;

/// Lines the plugin may still log in the current call.
#[derive(Debug, Default)]
pub(crate) struct LineQuota(AtomicU32);

impl LineQuota {
    /// Called before each policy call.
    pub(crate) fn reset(&self, lines_max: u32) {
        self.0.store(lines_max, Ordering::Relaxed);
    }

    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// Which stream a sink stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    Stdout,
    Stderr,
}

/// stdout or stderr of one instance: the context's factory of streams.
#[derive(Clone)]
pub(crate) struct LogSink {
    pub(crate) tag: Arc<PluginTag>,
    pub(crate) which: Which,
    pub(crate) quota: Arc<LineQuota>,
    pub(crate) counters: Arc<Counters>,
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 asks for this; levee links 0.2.
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogStream {
            sink: self.clone(),
            line: Vec::new(),
        })
    }
}

/// One `output-stream` handle: the line being written.
struct LogStream {
    sink: LogSink,
    /// At most [`LOG_MESSAGE_BYTES_MAX`] bytes; the rest of a longer line
    /// is dropped.
    line: Vec<u8>,
}

impl LogStream {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if !self.sink.quota.take() {
            self.sink.counters.record_log_dropped();
            return;
        }
        let (name, version) = (&*self.sink.tag.name, short_version(&self.sink.tag.version));
        // `?message` escapes newlines and quotes.
        match self.sink.which {
            Which::Stdout => {
                tracing::info!(plugin = name, version, stream = "stdout", message = ?text, "plugin output")
            }
            Which::Stderr => {
                tracing::warn!(plugin = name, version, stream = "stderr", message = ?text, "plugin output")
            }
        }
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > WRITE_BYTES_MAX {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "wrote {} bytes to {:?}, more than check-write permitted ({WRITE_BYTES_MAX})",
                bytes.len(),
                self.sink.which
            )));
        }
        // Bounded by WRITE_BYTES_MAX above.
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (text, ends_line) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let room = LOG_MESSAGE_BYTES_MAX.saturating_sub(self.line.len());
            self.line.extend_from_slice(&text[..text.len().min(room)]);
            if ends_line {
                self.emit();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.emit();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BYTES_MAX)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl Drop for LogStream {
    fn drop(&mut self) {
        self.emit();
    }
}
