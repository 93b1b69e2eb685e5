//! W3C trace context (`traceparent`) and the per-request context that travels with every call.
//!
//! **One trace across processes.** Every unit of work that arrives from outside a process — a
//! public request, a contract call over HTTP or NATS, an event taken from the bus — runs in a
//! span opened by [`start_trace`], which continues the trace it arrived with. Every contract call
//! runs in a [`client_span`], and what goes out (a `traceparent` header, or an event's
//! `traceparent`) names the span it left from ([`outgoing_trace`], [`current_trace`]).
//!
//! These are `tracing` spans. When the process exports traces (the OpenTelemetry layer is
//! installed, `OTEL_EXPORTER_OTLP_ENDPOINT`), each becomes an OpenTelemetry span and the ids
//! on the wire are theirs. Without it nothing is recorded, and the ids are still carried: the
//! trace id from the first process to the last, a span id per process, so logs correlate.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use rand::RngCore;
use std::fmt;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// A parsed `traceparent`: `00-<trace id>-<parent id>-<flags>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// A new trace (sampled) for a request that arrived without one.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        rng.fill_bytes(&mut trace_id);
        rng.fill_bytes(&mut parent_id);
        Self { trace_id, parent_id, flags: 1 }
    }

    /// Parses a `traceparent` header; `None` for anything malformed (the spec says to restart
    /// the trace then).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace_id.len() != 32 || parent_id.len() != 16 || flags.len() != 2 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(trace_id)?.try_into().ok()?;
        let parent_id: [u8; 8] = decode_hex(parent_id)?.try_into().ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, parent_id, flags })
    }

    /// The same trace with a new span id: what a hop passes downstream.
    pub fn child(&self) -> Self {
        let mut parent_id = [0u8; 8];
        rand::rng().fill_bytes(&mut parent_id);
        Self { parent_id, ..*self }
    }

    pub fn trace_id(&self) -> String {
        encode_hex(&self.trace_id)
    }

    pub fn span_id(&self) -> String {
        encode_hex(&self.parent_id)
    }

    /// The `traceparent` header value.
    pub fn header_value(&self) -> String {
        format!("00-{}-{}-{:02x}", encode_hex(&self.trace_id), encode_hex(&self.parent_id), self.flags)
    }

    /// As OpenTelemetry's span context of a span in another process.
    fn to_remote(self) -> opentelemetry::Context {
        let context = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.parent_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(context)
    }

    /// The context of `span`, when it is an OpenTelemetry span (the process exports traces).
    fn of_span(span: &tracing::Span) -> Option<Self> {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| Self {
            trace_id: span_context.trace_id().to_bytes(),
            parent_id: span_context.span_id().to_bytes(),
            flags: span_context.trace_flags().to_u8(),
        })
    }
}

/// Opens `span` as the span of a unit of work that arrived from another process with
/// `incoming` (a parsed `traceparent`, if it carried one): the span continues that trace, or
/// starts one. Returns the trace context to run the work in (its span id is `span`'s).
///
/// Call it before `span` is first entered.
pub fn start_trace(span: &tracing::Span, incoming: Option<TraceContext>) -> TraceContext {
    if let Some(incoming) = incoming {
        // Without the OpenTelemetry layer this does nothing, and says so; nothing to report.
        let _ = span.set_parent(incoming.to_remote());
    }
    TraceContext::of_span(span).unwrap_or_else(|| incoming.map_or_else(TraceContext::new_root, |incoming| incoming.child()))
}

/// The span of one contract call from this process: `<module>.<operation>` over `transport`
/// (`http` or `nats`). Everything the call sends, each retry included, runs in it.
///
/// A call made from a task that does not run in the request's span (a saga step in a task of
/// its own, say) is still put in the request's trace.
pub fn client_span(module: &'static str, operation: &'static str, transport: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        "contract call",
        otel.name = %format_args!("{module}.{operation}"),
        otel.kind = "client",
        rpc.system = transport,
        rpc.service = module,
        rpc.method = operation,
    );
    if let Some(request) = current_request_context()
        && current_span_in(&request).is_none()
    {
        let _ = span.set_parent(request.trace.to_remote());
    }
    span
}

/// The current span, when it is an OpenTelemetry span of `request`'s trace (the process exports
/// traces and the span descends from the request's).
fn current_span_in(request: &RequestContext) -> Option<TraceContext> {
    TraceContext::of_span(&tracing::Span::current()).filter(|span| span.trace_id == request.trace.trace_id)
}

/// Where the work running now stands in its trace: the current span when it is an
/// OpenTelemetry span of the request's trace, else the request's own span. What an event
/// published now records as its `traceparent`.
pub fn current_trace() -> Option<TraceContext> {
    let request = current_request_context()?;
    Some(current_span_in(&request).unwrap_or(request.trace))
}

/// The `traceparent` a call sent now carries: the current span (the call's [`client_span`])
/// when the process exports traces, else a new span id under the request's trace.
pub fn outgoing_trace() -> Option<TraceContext> {
    let request = current_request_context()?;
    Some(current_span_in(&request).unwrap_or_else(|| request.trace.child()))
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What every request carries across modules and wires: its id and its trace.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub trace: TraceContext,
}

tokio::task_local! {
    static REQUEST_CONTEXT: RequestContext;
}

/// Runs `future` with `context` as the current request's context: outgoing calls made inside it
/// carry its request id and trace, and events published inside it are correlated with it.
pub async fn with_request_context<F: std::future::Future>(context: RequestContext, future: F) -> F::Output {
    REQUEST_CONTEXT.scope(context, future).await
}

/// Runs `f` with `context` as the current request's context (for work done outside the
/// request's future: its access log line, say).
pub fn with_request_context_sync<R>(context: RequestContext, f: impl FnOnce() -> R) -> R {
    REQUEST_CONTEXT.sync_scope(context, f)
}

/// The context of the request being handled, if any.
pub fn current_request_context() -> Option<RequestContext> {
    REQUEST_CONTEXT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_round_trips() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).unwrap();
        assert_eq!(context.header_value(), header);
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = context.child();
        assert_eq!(child.trace_id(), context.trace_id());
        assert_ne!(child.span_id(), context.span_id());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }
}
