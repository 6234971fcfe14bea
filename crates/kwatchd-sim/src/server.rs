//! Acceptor, connection threads, routing, LIST, GET and discovery. WATCH lives in `watch.rs`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::discovery::{
    aggregated, api_groups, default_resources, openapi_gv, openapi_root, resource_list,
    wants_aggregated,
};
use super::http::{self, Out, ReadOutcome, Request, Stream};
use super::lease::{self, LeaseAction, LeaseFault};
use super::list::{filter, list, partial_metadata};
use super::store::Store;
use super::write::{self, Dest, Part};
use super::{
    watch, ExpiredMode, Fault, FaultRule, RequestRecord, Resource, ResourceDef, SimOptions,
    StreamShape,
};

/// Read timeout on connections: how quickly an idle connection thread notices shutdown.
const READ_TICK: Duration = Duration::from_millis(100);
/// Keep at most this many request records (a long benchmark must not grow without bound).
const MAX_RECORDS: usize = 200_000;

/// Mutable state, all behind one lock: simple, and contention is irrelevant for test infrastructure.
pub(crate) struct State {
    pub(crate) store: Store,
    pub(crate) token: Option<String>,
    /// More bearer tokens accepted besides `token` (an exec plugin's short-lived ones).
    pub(crate) accepted_tokens: Vec<String>,
    /// Refuse (401) requests without a valid token or client certificate even when no token is set.
    pub(crate) require_auth: bool,
    pub(crate) requests: Vec<RequestRecord>,
    /// Records dropped from the front of `requests` to bound memory.
    pub(crate) requests_trimmed: usize,
    pub(crate) faults: Vec<FaultRule>,
    /// Faults for one client's Lease requests, and how many requests they hit.
    pub(crate) lease_faults: Vec<LeaseFault>,
    pub(crate) lease_fault_hits: u64,
    pub(crate) shape: StreamShape,
    /// Bumped by `end_watches`: a watch that started at an older epoch ends.
    pub(crate) end_epoch: u64,
    /// Bumped by `bookmark_now`.
    pub(crate) bookmark_epoch: u64,
    pub(crate) open_watches: usize,
    /// What discovery serves (besides resources that have objects), and what clients may write.
    pub(crate) resources: Vec<ResourceDef>,
    /// Custom resources whose CRD declares a `status` subresource.
    pub(crate) status_subresources: HashSet<Resource>,
}

impl State {
    /// How a served resource type is described.
    pub(crate) fn def(&self, res: &Resource) -> Option<&ResourceDef> {
        self.resources.iter().find(|d| &d.resource == res)
    }

    /// The `kind` of a resource's objects: its CRD's when one installed it, else derived from the plural.
    pub(crate) fn kind_of(&self, res: &Resource) -> String {
        self.def(res).map_or_else(|| res.kind(), |d| d.kind.clone())
    }
}

/// Settings fixed at start.
pub(crate) struct Settings {
    pub(crate) expired: ExpiredMode,
    pub(crate) bookmark_interval: Option<Duration>,
    pub(crate) continue_ttl: Duration,
    pub(crate) watch_list: bool,
    pub(crate) aggregated_discovery: bool,
    pub(crate) partial_metadata: bool,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled on every mutation, `end_watches`, `bookmark_now`, `compact` and shutdown: wakes watch streams.
    pub(crate) cond: Condvar,
    pub(crate) shutdown: AtomicBool,
    pub(crate) settings: Settings,
    /// A clone of every open connection's socket, so shutdown can unblock threads stuck in I/O.
    pub(crate) conns: Mutex<HashMap<u64, TcpStream>>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    next_conn: AtomicU64,
    /// Signs client certificates (TLS mode only).
    pub(crate) issuer: Option<super::tls::Issuer>,
}

impl Shared {
    /// The state lock; a panicked holder (a bug in a test) must not wedge every other thread.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wait<'a>(&self, g: MutexGuard<'a, State>, d: Duration) -> MutexGuard<'a, State> {
        match self.cond.wait_timeout(g, d) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }
}

type Started = (Arc<Shared>, SocketAddr, Option<String>, JoinHandle<()>);

pub(crate) fn start(opts: SimOptions) -> io::Result<Started> {
    let listener = TcpListener::bind(
        opts.addr
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
    )?;
    let addr = listener.local_addr()?;
    let (tls, ca_pem, issuer) = match opts.tls {
        true => {
            let (cfg, pem, issuer) = super::tls::server_config(&opts.server_names)?;
            (Some(cfg), Some(pem), Some(issuer))
        }
        false => (None, None, None),
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            store: Store::new(opts.history_limit, opts.history_max_bytes),
            token: opts.token,
            accepted_tokens: Vec::new(),
            require_auth: opts.require_auth,
            requests: Vec::new(),
            requests_trimmed: 0,
            faults: Vec::new(),
            lease_faults: Vec::new(),
            lease_fault_hits: 0,
            shape: StreamShape::default(),
            end_epoch: 0,
            bookmark_epoch: 0,
            open_watches: 0,
            resources: default_resources(),
            status_subresources: HashSet::new(),
        }),
        cond: Condvar::new(),
        shutdown: AtomicBool::new(false),
        settings: Settings {
            expired: opts.expired,
            bookmark_interval: opts.bookmark_interval,
            continue_ttl: opts.continue_ttl,
            watch_list: opts.watch_list,
            aggregated_discovery: opts.aggregated_discovery,
            partial_metadata: opts.partial_metadata,
        },
        conns: Mutex::new(HashMap::new()),
        threads: Mutex::new(Vec::new()),
        next_conn: AtomicU64::new(1),
        issuer,
    });
    let sh = shared.clone();
    let write_timeout = opts.write_timeout;
    let acceptor = std::thread::Builder::new()
        .name("sim-accept".into())
        .spawn(move || accept_loop(sh, listener, tls, write_timeout))?;
    Ok((shared, addr, ca_pem, acceptor))
}

fn accept_loop(
    sh: Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    write_timeout: Option<Duration>,
) {
    for conn in listener.incoming() {
        if sh.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match conn {
            Ok(t) => t,
            Err(e) => {
                // Typically EMFILE under a stress test: back off instead of spinning.
                log::debug!("sim: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(READ_TICK));
        let _ = tcp.set_write_timeout(write_timeout);
        let id = sh.next_conn.fetch_add(1, Ordering::SeqCst);
        let Ok(clone) = tcp.try_clone() else { continue };
        sh.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, clone);
        let sh2 = sh.clone();
        let tls = tls.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sim-conn-{id}"))
            .spawn(move || {
                let fd = tcp.as_raw_fd();
                let stream: Option<Box<dyn Stream>> = match tls {
                    Some(cfg) => match rustls::ServerConnection::new(cfg) {
                        Ok(c) => Some(Box::new(rustls::StreamOwned::new(c, tcp))),
                        Err(_) => None,
                    },
                    None => Some(Box::new(tcp)),
                };
                if let Some(s) = stream {
                    serve_conn(&sh2, s, id, fd);
                }
                sh2.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        let mut threads = sh.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(t) => threads.push(t),
            Err(_) => {
                sh.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
        }
    }
}

/// Has the peer closed its side? `POLLRDHUP` reports a FIN even when unread bytes precede it (a TLS
/// close_notify, a pipelined request), which a `MSG_PEEK` probe would not see.
pub(crate) fn peer_closed(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `fd` is the connection's socket, open for as long as the connection thread runs (it owns the
    // stream); `p` is one valid pollfd and the timeout is 0, so this never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

fn serve_conn(sh: &Shared, mut s: Box<dyn Stream>, conn_id: u64, fd: RawFd) {
    let mut buf = Vec::new();
    loop {
        match http::read_request(&mut *s, &mut buf, &sh.shutdown) {
            ReadOutcome::Request(req) => {
                let keep = handle(sh, &mut *s, &req, conn_id, fd);
                if !keep || req.close || sh.shutdown.load(Ordering::SeqCst) {
                    break;
                }
            }
            ReadOutcome::Closed => break,
            ReadOutcome::Bad(msg) => {
                let body = http::status_json(400, "BadRequest", &msg);
                let _ = Out {
                    w: &mut *s,
                    piece: None,
                    budget: None,
                }
                .send(&http::json_response(400, &body, &[], true));
                break;
            }
        }
    }
    s.close_notify();
}

/// Everything a handler needs about the request being served.
pub(crate) struct Ctx<'a> {
    pub(crate) sh: &'a Shared,
    pub(crate) req: &'a Request,
    pub(crate) record: usize,
    pub(crate) fd: RawFd,
    pub(crate) shape: StreamShape,
}

impl Ctx<'_> {
    pub(crate) fn set_status(&self, code: u16) {
        let mut st = self.sh.lock();
        // `record` counts from the start; records trimmed since are gone.
        let Some(i) = self.record.checked_sub(st.requests_trimmed) else {
            return;
        };
        if let Some(r) = st.requests.get_mut(i) {
            r.status = code;
        }
    }

    /// A streaming list's initial events show the state at `rv`.
    pub(crate) fn set_initial_events_end(&self, rv: u64) {
        let mut st = self.sh.lock();
        let Some(i) = self.record.checked_sub(st.requests_trimmed) else {
            return;
        };
        if let Some(r) = st.requests.get_mut(i) {
            r.initial_events_end = Some(rv);
        }
    }

    /// Send a Status error; returns whether the connection may be kept.
    pub(crate) fn error(&self, out: &mut Out, code: u16, message: &str) -> bool {
        self.set_status(code);
        let body = http::status_json(code, http::status_reason(code), message);
        out.send(&http::json_response(code, &body, &[], false))
            .is_ok()
    }

    pub(crate) fn json(&self, out: &mut Out, body: &str) -> bool {
        self.typed(out, "application/json", body)
    }

    /// A 200 answer of this Content-Type.
    pub(crate) fn typed(&self, out: &mut Out, content_type: &str, body: &str) -> bool {
        self.set_status(200);
        out.send(&http::typed_response(200, content_type, body, &[], false))
            .is_ok()
    }
}

/// Serve one request; returns whether the connection stays open.
fn handle(sh: &Shared, s: &mut dyn Stream, req: &Request, conn_id: u64, fd: RawFd) -> bool {
    let is_watch = req.flag("watch");
    let (record, authorized, fault, lease_action, shape) = {
        let mut st = sh.lock();
        if st.requests.len() >= MAX_RECORDS {
            st.requests.drain(..MAX_RECORDS / 2);
            st.requests_trimmed += MAX_RECORDS / 2;
        }
        st.requests.push(RequestRecord {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query_raw.clone(),
            had_auth: req.header("authorization").is_some(),
            client_cert: s.has_client_cert(),
            is_watch,
            time: SystemTime::now(),
            conn_id,
            status: 0,
            initial_events_end: None,
        });
        let bearer = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        let open = st.token.is_none() && st.accepted_tokens.is_empty() && !st.require_auth;
        let authorized = open
            || s.has_client_cert()
            || bearer.is_some_and(|b| {
                st.token.as_deref() == Some(b) || st.accepted_tokens.iter().any(|t| t == b)
            });
        let fault = if authorized {
            take_fault(&mut st.faults, &req.target, is_watch)
        } else {
            None
        };
        let st = &mut *st;
        let lease_action = if authorized {
            lease::take(&mut st.lease_faults, &mut st.lease_fault_hits, req, bearer)
        } else {
            None
        };
        (
            st.requests_trimmed + st.requests.len() - 1,
            authorized,
            fault,
            lease_action,
            st.shape.clone(),
        )
    };
    let budget = match fault {
        Some(Fault::CutAfterBytes(n)) => Some(n),
        _ => None,
    };
    let mut out = Out {
        w: s,
        piece: shape.piece_size,
        budget,
    };
    let ctx = Ctx {
        sh,
        req,
        record,
        fd,
        shape,
    };
    if !authorized {
        return ctx.error(&mut out, 401, "Unauthorized");
    }
    match lease_action {
        Some(LeaseAction::Fail { code }) => {
            return ctx.error(
                &mut out,
                code,
                "injected fault for this client's Lease requests",
            )
        }
        Some(LeaseAction::Delay(d)) => watch::sleep_unless_shutdown(sh, d),
        None => {}
    }
    match &fault {
        Some(Fault::Status { code, retry_after }) => {
            ctx.set_status(*code);
            let body = http::status_json(*code, http::status_reason(*code), "injected fault");
            let extra: Vec<_> = retry_after
                .iter()
                .map(|s| ("Retry-After", s.to_string()))
                .collect();
            return out
                .send(&http::json_response(*code, &body, &extra, false))
                .is_ok();
        }
        Some(Fault::Stall(d)) if !is_watch => {
            ctx.set_status(200);
            let head = http::head(
                200,
                &[
                    ("Content-Type", "application/json".into()),
                    ("Content-Length", "2".into()),
                ],
                false,
            );
            let _ = out.send(&head);
            watch::sleep_unless_shutdown(sh, *d);
            return false;
        }
        _ => {}
    }
    let keep = route(&ctx, &mut out, is_watch, fault);
    // A spent byte budget means the response was cut: the connection must go.
    keep && out.budget != Some(0)
}

/// The first rule matching this request (and applicable to it) is consumed.
fn take_fault(faults: &mut Vec<FaultRule>, target: &str, is_watch: bool) -> Option<Fault> {
    let i = faults.iter().position(|r| {
        r.times > 0 && target.contains(&r.path_contains) && (is_watch || !r.fault.watch_only())
    })?;
    faults[i].times -= 1;
    let fault = faults[i].fault.clone();
    if faults[i].times == 0 {
        faults.remove(i);
    }
    Some(fault)
}

/// A request path, split into what it addresses.
enum Target {
    Collection {
        res: Resource,
        namespace: Option<String>,
    },
    Object {
        res: Resource,
        namespace: String,
        name: String,
        part: Part,
    },
    /// `/api/v1` or `/apis/G/V`.
    GroupVersion(String),
    Api,
    Apis,
    Health,
    Version,
    OpenApiRoot,
    /// `/openapi/v2`: an empty protobuf document, which kubectl before 1.27 reads (to find no schema) before
    /// it edits or validates.
    OpenApiV2,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/G/V`: the group version.
    OpenApi(String),
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (gv, rest) = match segs.as_slice() {
        ["healthz" | "readyz" | "livez"] => return Some(Target::Health),
        ["version"] => return Some(Target::Version),
        ["openapi", "v3"] => return Some(Target::OpenApiRoot),
        ["openapi", "v2"] => return Some(Target::OpenApiV2),
        ["openapi", "v3", "api", v] => return Some(Target::OpenApi(v.to_string())),
        ["openapi", "v3", "apis", g, v] => return Some(Target::OpenApi(format!("{g}/{v}"))),
        ["api"] => return Some(Target::Api),
        ["apis"] => return Some(Target::Apis),
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let res = |plural: &str| Resource {
        api_version: gv.clone(),
        plural: plural.to_string(),
    };
    let bad = |s: &str| s.is_empty();
    let object = |plural: &str, namespace: &str, name: &str, part| Target::Object {
        res: res(plural),
        namespace: namespace.to_string(),
        name: name.to_string(),
        part,
    };
    Some(match rest {
        [] => Target::GroupVersion(gv.clone()),
        // The Namespace object's status, not a resource type called `status` in namespace `name`.
        ["namespaces", name, "status"] if !bad(name) => {
            object("namespaces", "", name, Part::Status)
        }
        ["namespaces", ns, plural] if !bad(ns) && !bad(plural) => Target::Collection {
            res: res(plural),
            namespace: Some(ns.to_string()),
        },
        ["namespaces", ns, plural, name] if !bad(ns) && !bad(plural) && !bad(name) => {
            object(plural, ns, name, Part::Object)
        }
        ["namespaces", ns, plural, name, "status"] if !bad(ns) && !bad(plural) && !bad(name) => {
            object(plural, ns, name, Part::Status)
        }
        ["namespaces", ns, plural, name, "scale"] if !bad(ns) && !bad(plural) && !bad(name) => {
            object(plural, ns, name, Part::Scale)
        }
        // `/api/v1/namespaces/NS` is the Namespace object NS (cluster-scoped).
        ["namespaces", name] if !bad(name) => object("namespaces", "", name, Part::Object),
        [plural] if !bad(plural) => Target::Collection {
            res: res(plural),
            namespace: None,
        },
        [plural, name] if !bad(plural) && !bad(name) => object(plural, "", name, Part::Object),
        [plural, name, "status"] if !bad(plural) && !bad(name) => {
            object(plural, "", name, Part::Status)
        }
        _ => return None,
    })
}

/// The Content-Type of an aggregated discovery answer.
const AGGREGATED_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

const NOT_FOUND: &str = "the server could not find the requested resource";

fn route(ctx: &Ctx, out: &mut Out, is_watch: bool, fault: Option<Fault>) -> bool {
    let target = match parse_path(&ctx.req.path) {
        Some(t) if ctx.req.method == "GET" => t,
        Some(t) => return route_write(ctx, out, t),
        None => return ctx.error(out, 404, NOT_FOUND),
    };
    match target {
        Target::Health => {
            ctx.set_status(200);
            let mut r = http::head(
                200,
                &[
                    ("Content-Type", "text/plain".into()),
                    ("Content-Length", "2".into()),
                ],
                false,
            );
            r.extend_from_slice(b"ok");
            out.send(&r).is_ok()
        }
        Target::Version => ctx.json(
            out,
            &json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0-kwatchd-sim"}).to_string(),
        ),
        Target::Api if wants_aggregated(ctx) => {
            ctx.typed(out, AGGREGATED_TYPE, &aggregated(ctx, true))
        }
        Target::Apis if wants_aggregated(ctx) => {
            ctx.typed(out, AGGREGATED_TYPE, &aggregated(ctx, false))
        }
        Target::Api => ctx.json(
            out,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
                .to_string(),
        ),
        Target::Apis => ctx.json(out, &api_groups(ctx)),
        Target::OpenApiRoot => ctx.json(out, &openapi_root(ctx)),
        Target::OpenApiV2 => ctx.typed(
            out,
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            "",
        ),
        Target::OpenApi(gv) => match openapi_gv(ctx, &gv) {
            Some(body) => ctx.json(out, &body),
            None => ctx.error(out, 404, NOT_FOUND),
        },
        Target::GroupVersion(gv) => match resource_list(ctx, &gv) {
            Some(body) => ctx.json(out, &body),
            None => ctx.error(out, 404, NOT_FOUND),
        },
        Target::Object {
            res,
            namespace,
            name,
            part,
        } => {
            let found = ctx.sh.lock().store.get(&res, &namespace, &name);
            match found.map(|json| write::view(&res, part, &json)) {
                Some(Some(json)) => ctx.json(out, &json),
                _ => {
                    let e = write::ApiError::not_found(&res, &name);
                    ctx.set_status(404);
                    out.send(&http::json_response(404, &e.body(), &[], false))
                        .is_ok()
                }
            }
        }
        Target::Collection { res, namespace } => {
            let filter = match filter(ctx.req, res, namespace) {
                Ok(f) => f,
                Err(msg) => return ctx.error(out, 400, &msg),
            };
            let partial = match partial_metadata(ctx) {
                Ok(p) => p,
                Err(()) => {
                    return ctx.error(
                        out,
                        406,
                        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
                    )
                }
            };
            if is_watch {
                watch::serve(ctx, out, filter, fault, partial)
            } else {
                list(ctx, out, filter, partial)
            }
        }
    }
}

/// POST to a collection; PUT, PATCH and DELETE on an object or its status. Only served resource types are
/// writable, at their scope (a namespaced type under `namespaces/NS/`, a cluster-scoped one without).
fn route_write(ctx: &Ctx, out: &mut Out, target: Target) -> bool {
    let (res, namespace, name, part) = match target {
        Target::Collection { res, namespace } if ctx.req.method == "POST" => {
            (res, namespace.unwrap_or_default(), None, Part::Object)
        }
        Target::Object {
            res,
            namespace,
            name,
            part,
        } => (res, namespace, Some(name), part),
        _ => return ctx.error(out, 404, NOT_FOUND),
    };
    let def = ctx.sh.lock().def(&res).cloned();
    let def = match def {
        Some(d) if d.namespaced != namespace.is_empty() => d,
        _ => return ctx.error(out, 404, NOT_FOUND),
    };
    let dest = Dest {
        def: &def,
        namespace: &namespace,
        name: name.as_deref(),
        part,
    };
    write::serve(ctx, out, &dest)
}
