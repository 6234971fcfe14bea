//! The Lease requests' HTTP/1.1 exchanges on the loop: one request at a
//! time, each on its own connection (`Connection: close`). A request every
//! `retry_period` costs one connect; a connection kept alive would save it
//! but bring back idle timeouts and a reused connection's failure modes to
//! a path whose whole point is to fail cleanly and be retried. Address,
//! TLS, bearer token and exec credentials are the cluster's
//! (`ClusterRuntime`), as for the watches.

use crate::daemon::cluster::ClusterRuntime;
use crate::daemon::credential::Readiness;
use crate::http::{BodyMode, Request as HttpRequest, ResponseReader};
use crate::lease::{Reply, Request};
use crate::net::resolve::Resolution;
use crate::net::{Connection, ReadOutcome, Resolver};
use crate::tokens::Source;
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// A Lease object is small; anything bigger is not one.
const MAX_BODY: usize = 1 << 20;

/// One request on its way.
struct Exchange {
    id: u64,
    /// The encoded request.
    bytes: Vec<u8>,
    state: State,
}

enum State {
    Resolving {
        query: u64,
    },
    Connecting {
        conn: Connection,
        addrs: VecDeque<SocketAddr>,
    },
    Awaiting {
        conn: Connection,
        reader: Box<ResponseReader>,
    },
}

/// The elector's connection to the API server holding the Lease.
#[derive(Default)]
pub struct LeaseClient {
    exchange: Option<Exchange>,
    /// Connections made (their tokens' counter).
    connections: usize,
    read_buf: Vec<u8>,
}

impl LeaseClient {
    /// Sends `req` (dropping a request still in flight: the elector gave up
    /// on it). `Some` when it failed at once.
    pub fn start(
        &mut self,
        req: Request,
        cluster: &mut ClusterRuntime,
        resolver: &mut Resolver,
        registry: &Registry,
        now: Instant,
    ) -> Option<(u64, Reply)> {
        self.abort(registry);
        let failed = |why: String| Some((req.id, Reply::Failed(why)));
        match cluster.readiness(registry, now) {
            Readiness::Ready => {}
            Readiness::Pending => return failed("the cluster's credentials are not ready".into()),
            Readiness::Failed(e) => return failed(e.to_string()),
        }
        let auth = cluster.authorization();
        let mut headers = vec![("Accept", "application/json"), ("Connection", "close")];
        if req.body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let mut bytes = Vec::new();
        let encoded = HttpRequest {
            method: req.verb.method(),
            host: &cluster.host_header,
            path_and_query: &req.path,
            headers: &headers,
            body: req.body.as_deref().unwrap_or_default(),
        }
        .encode(&mut bytes);
        if let Err(e) = encoded {
            return failed(e.to_string());
        }
        let addrs = match resolver.resolve(&cluster.host, cluster.port) {
            Ok(Resolution::Ready(addrs)) => addrs,
            Ok(Resolution::Pending(query)) => {
                self.exchange = Some(Exchange {
                    id: req.id,
                    bytes,
                    state: State::Resolving { query },
                });
                return None;
            }
            Err(e) => return failed(format!("cannot resolve {}: {e}", cluster.host)),
        };
        self.exchange = Some(Exchange {
            id: req.id,
            bytes,
            state: State::Resolving { query: 0 },
        });
        self.connect(cluster, registry, addrs.into())
    }

    /// Whether resolver answer `id` is this client's.
    pub fn owns_query(&self, id: u64) -> bool {
        matches!(
            &self.exchange,
            Some(Exchange { state: State::Resolving { query }, .. }) if *query == id
        )
    }

    pub fn on_resolved(
        &mut self,
        result: io::Result<Vec<SocketAddr>>,
        cluster: &mut ClusterRuntime,
        registry: &Registry,
    ) -> Option<(u64, Reply)> {
        match result {
            Ok(addrs) => self.connect(cluster, registry, addrs.into()),
            Err(e) => self.finish(registry, Reply::Failed(format!("cannot resolve: {e}"))),
        }
    }

    /// Connects to the next address of `addrs`.
    fn connect(
        &mut self,
        cluster: &mut ClusterRuntime,
        registry: &Registry,
        mut addrs: VecDeque<SocketAddr>,
    ) -> Option<(u64, Reply)> {
        let tls = match cluster.tls_for_connect() {
            Ok(tls) => tls,
            Err(e) => return self.finish(registry, Reply::Failed(e.to_string())),
        };
        let mut last = String::from("no address to connect to");
        while let Some(addr) = addrs.pop_front() {
            self.connections += 1;
            let token = Source::Lease(self.connections).token();
            match Connection::connect(registry, token, addr, tls.clone()) {
                Ok(mut conn) => {
                    let ex = self.exchange.as_mut()?;
                    if let Err(e) = conn.send(registry, &ex.bytes) {
                        conn.close(registry);
                        last = format!("cannot send to {addr}: {e}");
                        continue;
                    }
                    ex.state = State::Connecting { conn, addrs };
                    return None;
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        self.finish(registry, Reply::Failed(last))
    }

    /// A poll event for `token`; the answer once the exchange is over.
    pub fn on_ready(
        &mut self,
        token: Token,
        cluster: &mut ClusterRuntime,
        registry: &Registry,
    ) -> Option<(u64, Reply)> {
        let ex = self.exchange.as_mut()?;
        match &mut ex.state {
            State::Connecting { conn, .. } if conn.token() == token => {
                match conn.finish_connect() {
                    Ok(false) => return None,
                    Ok(true) => {}
                    Err(e) => {
                        let why = format!("cannot connect to {}: {e}", conn.peer());
                        let State::Connecting { mut conn, addrs } =
                            std::mem::replace(&mut ex.state, State::Resolving { query: 0 })
                        else {
                            return None;
                        };
                        conn.close(registry);
                        if addrs.is_empty() {
                            return self.finish(registry, Reply::Failed(why));
                        }
                        return self.connect(cluster, registry, addrs);
                    }
                }
                let State::Connecting { conn, .. } =
                    std::mem::replace(&mut ex.state, State::Resolving { query: 0 })
                else {
                    return None;
                };
                ex.state = State::Awaiting {
                    conn,
                    reader: Box::new(ResponseReader::new(BodyMode::Whole { max_body: MAX_BODY })),
                };
                self.pump(registry)
            }
            State::Awaiting { conn, .. } if conn.token() == token => self.pump(registry),
            // A stale event of a closed connection.
            _ => None,
        }
    }

    /// Sends what is left and reads the answer.
    fn pump(&mut self, registry: &Registry) -> Option<(u64, Reply)> {
        if self.read_buf.is_empty() {
            self.read_buf = vec![0; 16 << 10];
        }
        let Some(Exchange {
            state: State::Awaiting { conn, reader },
            ..
        }) = &mut self.exchange
        else {
            return None;
        };
        if let Err(e) = conn.flush(registry) {
            return self.finish(registry, Reply::Failed(format!("cannot send: {e}")));
        }
        let outcome = loop {
            match conn.read(registry, &mut self.read_buf) {
                Ok(ReadOutcome::Data(n)) => {
                    if let Err(e) = reader.feed(self.read_buf.get(..n).unwrap_or_default()) {
                        break Err(e.to_string());
                    }
                    if reader.body_done() {
                        break Ok(());
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return None,
                Ok(ReadOutcome::Closed { .. }) => match reader.on_eof() {
                    Ok(()) => break Ok(()),
                    Err(e) => break Err(e.to_string()),
                },
                Err(e) => break Err(e.to_string()),
            }
        };
        let reply = match outcome {
            Ok(()) => match (reader.head().map(|h| h.status), reader.take_body()) {
                (Some(code), Some(body)) => Reply::Status { code, body },
                _ => Reply::Failed("the answer ended early".into()),
            },
            Err(e) => Reply::Failed(e),
        };
        self.finish(registry, reply)
    }

    /// The exchange is over: close its connection, hand out the answer.
    fn finish(&mut self, registry: &Registry, reply: Reply) -> Option<(u64, Reply)> {
        let ex = self.exchange.take()?;
        if let State::Connecting { mut conn, .. } | State::Awaiting { mut conn, .. } = ex.state {
            conn.close(registry);
        }
        Some((ex.id, reply))
    }

    /// Drops the request in flight, if any.
    pub fn abort(&mut self, registry: &Registry) {
        if let Some(ex) = self.exchange.take() {
            if let State::Connecting { mut conn, .. } | State::Awaiting { mut conn, .. } = ex.state
            {
                conn.close(registry);
            }
        }
    }
}
