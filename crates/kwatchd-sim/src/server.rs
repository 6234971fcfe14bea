//! Acceptor, connection threads, routing, LIST, GET and discovery. WATCH lives in `watch.rs`.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::http::{self, Out, ReadOutcome, Request, Stream};
use super::select::{FieldSelector, Filter, LabelSelector};
use super::store::{self, ContinueError, SnapshotPage, Store, KNOWN};
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
    pub(crate) shape: StreamShape,
    /// Bumped by `end_watches`: a watch that started at an older epoch ends.
    pub(crate) end_epoch: u64,
    /// Bumped by `bookmark_now`.
    pub(crate) bookmark_epoch: u64,
    pub(crate) open_watches: usize,
    /// What discovery serves (besides resources that have objects).
    pub(crate) resources: Vec<ResourceDef>,
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
            shape: StreamShape::default(),
            end_epoch: 0,
            bookmark_epoch: 0,
            open_watches: 0,
            resources: default_resources(),
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
        self.set_status(200);
        out.send(&http::json_response(200, body, &[], false))
            .is_ok()
    }
}

/// Serve one request; returns whether the connection stays open.
fn handle(sh: &Shared, s: &mut dyn Stream, req: &Request, conn_id: u64, fd: RawFd) -> bool {
    let is_watch = req.flag("watch");
    let (record, authorized, fault, shape) = {
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
        (
            st.requests_trimmed + st.requests.len() - 1,
            authorized,
            fault,
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
    },
    /// `/api/v1` or `/apis/G/V`.
    GroupVersion(String),
    Api,
    Apis,
    Health,
    Version,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (gv, rest) = match segs.as_slice() {
        ["healthz" | "readyz" | "livez"] => return Some(Target::Health),
        ["version"] => return Some(Target::Version),
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
    Some(match rest {
        [] => Target::GroupVersion(gv.clone()),
        ["namespaces", ns, plural] if !bad(ns) && !bad(plural) => Target::Collection {
            res: res(plural),
            namespace: Some(ns.to_string()),
        },
        ["namespaces", ns, plural, name] if !bad(ns) && !bad(plural) && !bad(name) => {
            Target::Object {
                res: res(plural),
                namespace: ns.to_string(),
                name: name.to_string(),
            }
        }
        // `/api/v1/namespaces/NS` is the Namespace object NS (cluster-scoped).
        ["namespaces", name] if !bad(name) => Target::Object {
            res: res("namespaces"),
            namespace: String::new(),
            name: name.to_string(),
        },
        [plural] if !bad(plural) => Target::Collection {
            res: res(plural),
            namespace: None,
        },
        [plural, name] if !bad(plural) && !bad(name) => Target::Object {
            res: res(plural),
            namespace: String::new(),
            name: name.to_string(),
        },
        _ => return None,
    })
}

const NOT_FOUND: &str = "the server could not find the requested resource";

fn route(ctx: &Ctx, out: &mut Out, is_watch: bool, fault: Option<Fault>) -> bool {
    let target = match parse_path(&ctx.req.path) {
        Some(t) if ctx.req.method == "GET" => t,
        _ => return ctx.error(out, 404, NOT_FOUND),
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
        Target::Api if wants_aggregated(ctx) => ctx.json(out, &aggregated(ctx, true)),
        Target::Apis if wants_aggregated(ctx) => ctx.json(out, &aggregated(ctx, false)),
        Target::Api => ctx.json(
            out,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
                .to_string(),
        ),
        Target::Apis => ctx.json(out, &api_groups(ctx)),
        Target::GroupVersion(gv) => match resource_list(ctx, &gv) {
            Some(body) => ctx.json(out, &body),
            None => ctx.error(out, 404, NOT_FOUND),
        },
        Target::Object {
            res,
            namespace,
            name,
        } => {
            let found = ctx.sh.lock().store.get(&res, &namespace, &name);
            match found {
                Some(json) => ctx.json(out, &json),
                None => ctx.error(out, 404, &format!("{} \"{name}\" not found", res.plural)),
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

fn filter(req: &Request, res: Resource, namespace: Option<String>) -> Result<Filter, String> {
    Ok(Filter {
        res,
        namespace,
        labels: LabelSelector::parse(req.param("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(req.param("fieldSelector").unwrap_or(""))?,
    })
}

/// Whether to answer `PartialObjectMetadata`: `Err` when the client asks for it only and it is switched off (406).
fn partial_metadata(ctx: &Ctx) -> Result<bool, ()> {
    let accept = ctx.req.header("accept").unwrap_or("");
    if !accept.contains("as=PartialObjectMetadata") {
        return Ok(false);
    }
    if ctx.sh.settings.partial_metadata {
        return Ok(true);
    }
    let plain = accept
        .split(',')
        .any(|t| matches!(t.trim(), "application/json" | "*/*" | "application/*"));
    if plain {
        Ok(false)
    } else {
        Err(())
    }
}

/// An object as `PartialObjectMetadata`: its metadata only.
pub(crate) fn partial_object(json: &str) -> String {
    let meta = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|mut v| v.get_mut("metadata").map(serde_json::Value::take))
        .unwrap_or_else(|| json!({}));
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
        .to_string()
}

fn list(ctx: &Ctx, out: &mut Out, filter: Filter, partial: bool) -> bool {
    let req = ctx.req;
    let limit = match req
        .param("limit")
        .filter(|l| !l.is_empty())
        .map(str::parse::<usize>)
    {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return ctx.error(out, 400, "limit must be a non-negative integer"),
    };
    let cont = req.param("continue").filter(|c| !c.is_empty());
    if req
        .param("resourceVersionMatch")
        .is_some_and(|m| !m.is_empty())
    {
        if cont.is_some() {
            return ctx.error(
                out,
                422,
                "resourceVersionMatch is forbidden when continue is provided",
            );
        }
        if req.param("resourceVersion").is_none_or(str::is_empty) {
            return ctx.error(
                out,
                422,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            );
        }
    }
    let ttl = ctx.sh.settings.continue_ttl;
    let page = {
        let mut st = ctx.sh.lock();
        match cont {
            Some(token) => match st.store.snapshot(token, ttl) {
                Ok(SnapshotPage {
                    items,
                    rv,
                    offset,
                    id,
                }) => {
                    let end = if limit == 0 {
                        items.len()
                    } else {
                        offset.saturating_add(limit).min(items.len())
                    };
                    let offset = offset.min(end);
                    let next = (end < items.len()).then(|| store::continue_token(id, end));
                    Ok((items[offset..end].to_vec(), rv, next, items.len() - end))
                }
                Err(e) => Err(e),
            },
            None => {
                let items = st.store.list(&filter);
                let rv = st.store.rv();
                if limit > 0 && items.len() > limit {
                    let page = items[..limit].to_vec();
                    let remaining = items.len() - limit;
                    let token = st.store.save_snapshot(items, rv, limit, ttl);
                    Ok((page, rv, Some(token), remaining))
                } else {
                    Ok((items, rv, None, 0))
                }
            }
        }
    };
    let (items, rv, next, remaining) = match page {
        Ok(p) => p,
        Err(ContinueError::Malformed) => return ctx.error(out, 400, "invalid continue token"),
        Err(ContinueError::Expired) => {
            let msg =
                "The provided continue parameter is too old to display a consistent list result. \
                       You can start a new list without the continue parameter.";
            return ctx.error(out, 410, msg);
        }
    };
    // Assembled by hand: the items are already serialised and may be large.
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(t) = &next {
        meta["continue"] = json!(t);
        meta["remainingItemCount"] = json!(remaining);
    }
    let items: Vec<std::sync::Arc<str>> = if partial {
        items.iter().map(|i| partial_object(i).into()).collect()
    } else {
        items
    };
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    let mut body = String::with_capacity(size + 128);
    let (list_kind, list_version) = if partial {
        ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1")
    } else {
        (filter.res.kind(), filter.res.api_version.as_str())
    };
    body.push_str(&format!(
        "{{\"kind\":\"{list_kind}List\",\"apiVersion\":\"{list_version}\",\"metadata\":{meta},\"items\":["
    ));
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    ctx.json(out, &body)
}

/// The resources served before any is installed: the well-known table and `gadgets` in two groups (a name that
/// is ambiguous without its group).
fn default_resources() -> Vec<ResourceDef> {
    let mut defs: Vec<ResourceDef> = KNOWN
        .iter()
        .map(|(gv, p, _, n)| ResourceDef::new(gv, p, *n, store::short_names_for(p)))
        .collect();
    defs.push(ResourceDef::new("example.com/v1", "gadgets", true, &["gd"]));
    defs.push(ResourceDef::new("acme.io/v1", "gadgets", true, &[]));
    defs
}

/// Resources to advertise: the installed ones plus everything objects were created under, by group version.
fn known_resources(ctx: &Ctx) -> Vec<ResourceDef> {
    let st = ctx.sh.lock();
    let mut defs = st.resources.clone();
    for res in st.store.resources() {
        if !defs.iter().any(|d| d.resource == res) {
            defs.push(ResourceDef {
                kind: res.kind(),
                resource: res,
                namespaced: true,
                short_names: Vec::new(),
            });
        }
    }
    defs.sort_by(|a, b| a.resource.cmp(&b.resource));
    defs
}

fn wants_aggregated(ctx: &Ctx) -> bool {
    ctx.sh.settings.aggregated_discovery
        && ctx
            .req
            .header("accept")
            .is_some_and(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2"))
}

/// An `APIGroupDiscoveryList` (v2) of the core group (`core`) or of every other group.
fn aggregated(ctx: &Ctx, core: bool) -> String {
    let defs = known_resources(ctx);
    let mut groups: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for d in defs
        .iter()
        .filter(|d| d.resource.api_version.contains('/') != core)
    {
        let gv = &d.resource.api_version;
        let (g, v) = gv.split_once('/').unwrap_or(("", gv));
        let resource = json!({
            "resource": d.resource.plural,
            "responseKind": {"group": g, "version": v, "kind": d.kind},
            "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": d.kind.to_lowercase(),
            "shortNames": d.short_names,
            "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
        });
        match groups.iter_mut().find(|(name, _)| name == g) {
            Some((_, versions)) => match versions.iter_mut().find(|x| x["version"] == v) {
                Some(x) => {
                    if let Some(list) = x["resources"].as_array_mut() {
                        list.push(resource);
                    }
                }
                None => versions
                    .push(json!({"version": v, "resources": [resource], "freshness": "Current"})),
            },
            None => groups.push((
                g.to_string(),
                vec![json!({"version": v, "resources": [resource], "freshness": "Current"})],
            )),
        }
    }
    let items: Vec<_> = groups
        .into_iter()
        .map(|(name, versions)| {
            let meta = if name.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": name, "creationTimestamp": null})
            };
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
        .to_string()
}

fn api_groups(ctx: &Ctx) -> String {
    let gvs: BTreeSet<String> = known_resources(ctx)
        .into_iter()
        .map(|d| d.resource.api_version)
        .filter(|gv| gv.contains('/'))
        .collect();
    let groups: Vec<_> = gvs
        .iter()
        .map(|gv| {
            let (g, v) = gv.split_once('/').unwrap_or((gv, ""));
            let ver = json!({"groupVersion": gv, "version": v});
            json!({"name": g, "versions": [ver], "preferredVersion": ver})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}).to_string()
}

fn resource_list(ctx: &Ctx, gv: &str) -> Option<String> {
    let resources: Vec<_> = known_resources(ctx)
        .into_iter()
        .filter(|d| d.resource.api_version == gv)
        .map(|d| {
            json!({
                "name": d.resource.plural, "singularName": d.kind.to_lowercase(), "namespaced": d.namespaced,
                "kind": d.kind, "verbs": ["get", "list", "watch"], "shortNames": d.short_names,
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}).to_string())
}
