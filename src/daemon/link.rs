//! The connection side of one watch, as data: where its link stands
//! (resolving, connecting with the addresses left to try, connected with a
//! response in flight or idle for keep-alive) and what a response has
//! delivered so far. `watcher.rs` decides what to do with them; keeping the
//! states here lets each variant own exactly the fields it has (a deadline
//! only while connecting, a reader only while a response is awaited).

use crate::http::ResponseReader;
use crate::kube::list_scan::ListScanner;
use crate::net::Connection;
use crate::watch::RequestPlan;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

pub(super) struct Response {
    pub(super) plan: RequestPlan,
    pub(super) reader: ResponseReader,
    /// Set when the peer closed: what the reader made of the end.
    pub(super) eof: Option<Option<String>>,
    /// Bytes received for this response.
    pub(super) received: usize,
    /// Sent on a connection that had served a request before.
    pub(super) reused: bool,
    /// A LIST answer, read item by item as it arrives.
    pub(super) list: Option<ListScanner>,
}

impl Response {
    /// Status, once the head arrived.
    pub(super) fn status(&self) -> Option<u16> {
        self.reader.head().map(|h| h.status)
    }
}

pub(super) enum Exchange {
    Awaiting(Box<Response>),
    /// Keep-alive connection with nothing in flight.
    Idle,
}

pub(super) enum Link {
    None,
    Resolving {
        query: u64,
        plan: RequestPlan,
    },
    /// TCP connect under way; the request goes out once it is done.
    Connecting {
        conn: Connection,
        plan: RequestPlan,
        /// Addresses still to try if this one fails.
        addrs: VecDeque<SocketAddr>,
        /// Until when the connect and the TLS handshake may take.
        deadline: Instant,
    },
    Connected {
        conn: Connection,
        exchange: Exchange,
        /// The connect's deadline, until the TLS handshake is done (or the
        /// answer's head arrived).
        handshake_deadline: Option<Instant>,
    },
}

/// A 2xx status: the answer the request asked for.
pub(super) fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}
