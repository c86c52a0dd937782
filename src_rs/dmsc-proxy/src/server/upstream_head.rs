//! The request head sent upstream: route edits, rewrites, tracing headers and
//! the remaining deadline, composed without heap allocation in the usual case.

use dmsc_core::trace::TraceContext;

use super::DEADLINE_HEADER;
use crate::http1::write;
use crate::http1::{encode_request_head, Head, HeadEdits, RequestHead};
use crate::route::{HeaderRewrite, Route};

/// Headers added for tracing, computed once per request (the same on every try).
pub(crate) struct TraceIds {
    /// A generated `x-request-id` (None: the client sent one, kept as is).
    request_id: Option<[u8; 32]>,
    /// The `traceparent` of the upstream call.
    traceparent: [u8; 55],
}

impl TraceIds {
    pub(crate) fn of(head: &RequestHead) -> Self {
        let request_id = if head.header("x-request-id").is_some() {
            None
        } else {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
            raw[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
            let mut id = [0u8; 32];
            write::hex_into(&raw, &mut id);
            Some(id)
        };
        let context = head
            .header("traceparent")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| TraceContext::parse(v).ok())
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let mut traceparent = [0u8; 55];
        traceparent[..3].copy_from_slice(b"00-");
        write::hex_into(&context.trace_id, &mut traceparent[3..35]);
        traceparent[35] = b'-';
        write::hex_into(&context.span_id, &mut traceparent[36..52]);
        traceparent[52] = b'-';
        write::hex_into(&[context.flags], &mut traceparent[53..55]);
        Self {
            request_id,
            traceparent,
        }
    }
}

/// A few items on the stack, spilling to the heap past `N`.
struct Small<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> Small<T, N> {
    pub(crate) fn new(fill: T) -> Self {
        Self {
            items: [fill; N],
            len: 0,
            spill: Vec::new(),
        }
    }
    pub(crate) fn push(&mut self, item: T) {
        if self.spill.is_empty() && self.len < N {
            self.items[self.len] = item;
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.items[..self.len]);
            }
            self.spill.push(item);
        }
    }
    pub(crate) fn as_slice(&self) -> &[T] {
        if self.spill.is_empty() {
            &self.items[..self.len]
        } else {
            &self.spill
        }
    }
}

/// A route's header rewrite as [`HeadEdits`], plus the proxy's own edits.
pub(crate) struct Edits<'a> {
    remove: Small<&'a str, 16>,
    add: Small<(&'a str, &'a [u8]), 16>,
}

impl<'a> Edits<'a> {
    pub(crate) fn of(rewrite: &'a HeaderRewrite) -> Self {
        let mut edits = Self {
            remove: Small::new(""),
            add: Small::new(("", b"")),
        };
        for name in &rewrite.remove {
            edits.remove.push(name);
        }
        for (name, value) in &rewrite.add {
            edits.add.push((name, value));
        }
        edits
    }

    pub(crate) fn remove(&mut self, name: &'a str) {
        self.remove.push(name);
    }

    pub(crate) fn add(&mut self, name: &'a str, value: &'a [u8]) {
        self.add.push((name, value));
    }

    /// The edits to write a head with (`target` and `host`: requests only).
    pub(crate) fn head_edits<'b>(
        &'b self,
        target: Option<&'b str>,
        host: Option<&'b str>,
    ) -> HeadEdits<'b> {
        HeadEdits {
            remove: self.remove.as_slice(),
            add: self.add.as_slice(),
            target,
            host,
        }
    }
}

/// Writes the head sent upstream: route edits, path and host rewrites, tracing
/// headers, and the remaining deadline.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_upstream(
    head: &RequestHead,
    route: &Route,
    trace: Option<&TraceIds>,
    peer_text: &[u8],
    deadline_ms: Option<u64>,
    scratch: &mut Vec<u8>,
    target: &mut String,
    out: &mut Vec<u8>,
) {
    let mut edits = Edits::of(&route.request_headers);
    let deadline_digits = deadline_ms.map(write::u64_digits);
    if let Some((digits, start)) = &deadline_digits {
        edits.remove(DEADLINE_HEADER);
        edits.add(DEADLINE_HEADER, &digits[*start..]);
    }
    if let Some(trace) = trace {
        scratch.clear();
        for (name, value) in head.header_pairs() {
            if name.eq_ignore_ascii_case(b"x-forwarded-for") && !value.is_empty() {
                if !scratch.is_empty() {
                    scratch.extend_from_slice(b", ");
                }
                scratch.extend_from_slice(value);
            }
        }
        if !scratch.is_empty() {
            scratch.extend_from_slice(b", ");
        }
        scratch.extend_from_slice(peer_text);
        edits.remove("x-forwarded-for");
        edits.remove("traceparent");
        edits.add("x-forwarded-for", scratch);
        edits.add("via", b"1.1 dmsc");
        if let Some(id) = &trace.request_id {
            edits.add("x-request-id", id);
        }
        edits.add("traceparent", &trace.traceparent);
    }
    let new_target = route
        .write_target(head.target(), target)
        .then_some(target.as_str());
    let edits = edits.head_edits(new_target, route.host_rewrite.as_deref());
    encode_request_head(head, &edits, head.framing, out);
}
