//! An in-process Kubernetes API server emulator with real watch semantics.
//!
//! Used by the integration tests (the real kwatchd binary talks to it over loopback), by the benchmarks and by
//! `kwatchd demo`. It is test infrastructure, not part of the daemon: it uses plain threads and blocking I/O (an
//! acceptor thread, one thread per connection) and one `Mutex` + `Condvar` around all state. That is why it is
//! its own crate: the daemon links it only for `kwatchd demo` (the default `demo` feature), and a build with
//! `--no-default-features` carries none of it (nor `rcgen`).
//!
//! What it emulates (see `docs/WATCH-PROTOCOL.md` at the top of the repository): LIST with `limit`/`continue`
//! over a consistent snapshot, WATCH from a resourceVersion with a bounded history, 410 "expired" (as an HTTP
//! status or as an ERROR event), bookmarks, streaming lists (`sendInitialEvents`), label and field selectors
//! with match/unmatch transitions, bearer tokens, TLS with a generated CA, discovery (legacy and aggregated v2,
//! with resources installable at run time like CRDs), `PartialObjectMetadata` answers, and injectable faults
//! and stream shapes for client robustness tests.
//!
//! Writes (`write/`): POST, PUT, PATCH (merge, JSON, strategic as `patch.rs` approximates it) and DELETE with
//! the API server's rules for server-owned metadata, preconditions and errors, the `status` and `scale`
//! subresources, CRDs that serve their resources once created (`crd.rs`), and OpenAPI v3 enough for kubectl
//! (`discovery.rs`): so `kubectl` can drive it (`kwatchd sim`). Leases are served like every resource, and
//! `lease.rs` fails or delays one client's Lease requests for leader-election tests.
//!
//! ```no_run
//! use kwatchd_sim::{Resource, Sim, SimOptions};
//! let sim = Sim::start(SimOptions::default()).unwrap();
//! sim.create(&Resource::pods(), "default", "web-1", &[("app", "web")], serde_json::json!({"spec": {}}));
//! println!("{}", sim.url());
//! ```

pub mod churn;
mod crd;
mod discovery;
mod http;
mod lease;
mod list;
mod patch;
mod pod;
mod select;
mod server;
mod store;
mod tls;
mod watch;
mod write;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use churn::{
    deployment, start_churn, start_rollout_churn, ChurnHandle, ChurnOptions, RolloutOptions,
};

/// A rustls server config with a freshly generated CA and a certificate for the loopback names, and the CA as
/// PEM: what the emulator serves in TLS mode, for benchmark servers of their own.
pub fn tls_server_config() -> io::Result<(Arc<rustls::ServerConfig>, String)> {
    let names = SimOptions::default().server_names;
    tls::server_config(&names).map(|(config, ca, _issuer)| (config, ca))
}
pub use lease::{LeaseAction, LeaseClient, LeaseFault};
pub use pod::pod_extra;

use server::Shared;

/// How a watch from a resourceVersion older than the retained history is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredMode {
    /// HTTP 410 with a `Status` body (what list calls and some aggregated servers do).
    HttpStatus,
    /// HTTP 200, one `ERROR` event carrying a 410 `Status`, then the end of the stream (the usual watch answer).
    ErrorEvent,
}

/// Options for [`Sim::start`].
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Serve HTTPS with a freshly generated CA (see [`Sim::ca_pem`]).
    pub tls: bool,
    /// Required bearer token; `None` accepts every request. Changeable later with [`Sim::set_token`].
    pub token: Option<String>,
    /// Number of events kept for watches from a resourceVersion; older ones are forgotten (→ expired).
    pub history_limit: usize,
    /// Bytes of object JSON kept in the history, on top of `history_limit` (protects memory with 1 MiB objects).
    pub history_max_bytes: usize,
    /// How an expired resourceVersion is reported on a watch.
    pub expired: ExpiredMode,
    /// Send a BOOKMARK this often on watches that ask for bookmarks; `None`: only on [`Sim::bookmark_now`].
    pub bookmark_interval: Option<Duration>,
    /// Lifetime of a `continue` token (the snapshot it refers to).
    pub continue_ttl: Duration,
    /// Address to listen on; `None`: 127.0.0.1 with an ephemeral port.
    pub addr: Option<SocketAddr>,
    /// Accept streaming lists (`sendInitialEvents=true`); when false they get 422 as on servers without WatchList.
    pub watch_list: bool,
    /// Close a connection whose writes block this long (the real server drops slow watchers); `None`: never.
    pub write_timeout: Option<Duration>,
    /// Answer aggregated discovery (`as=APIGroupDiscoveryList` in Accept) on `/api` and `/apis`; when false those
    /// paths always answer the legacy documents, as servers before 1.26 do.
    pub aggregated_discovery: bool,
    /// Answer `PartialObjectMetadata` requests (`as=PartialObjectMetadata[List]` in Accept); when false they get
    /// full objects if the Accept header offers plain `application/json` too, else 406 Not Acceptable.
    pub partial_metadata: bool,
    /// Subject alternative names of the TLS server certificate; IP addresses become IP SANs.
    pub server_names: Vec<String>,
    /// Answer 401 to requests that carry neither an accepted bearer token nor a client certificate signed by the
    /// emulator's CA, even when no `token` is set. (With a `token` set, a client certificate is accepted too.)
    pub require_auth: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tls: false,
            token: None,
            history_limit: 10_000,
            history_max_bytes: 512 << 20,
            expired: ExpiredMode::ErrorEvent,
            bookmark_interval: None,
            continue_ttl: Duration::from_secs(300),
            addr: None,
            watch_list: true,
            write_timeout: None,
            aggregated_discovery: true,
            partial_metadata: true,
            server_names: vec![
                "127.0.0.1".to_string(),
                "::1".to_string(),
                "localhost".to_string(),
            ],
            require_auth: false,
        }
    }
}

/// A resource type: `api_version` is `v1` for the core group or `GROUP/VERSION`, `plural` the URL name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// `v1` or `GROUP/VERSION`, as in an object's `apiVersion`.
    pub api_version: String,
    /// Lower-case plural, as in the URL (`pods`, `deployments`).
    pub plural: String,
}

impl Resource {
    /// A resource by API version and plural, e.g. `Resource::new("apps/v1", "deployments")`.
    pub fn new(api_version: &str, plural: &str) -> Resource {
        Resource {
            api_version: api_version.to_string(),
            plural: plural.to_string(),
        }
    }

    /// Core v1 pods.
    pub fn pods() -> Resource {
        Resource::new("v1", "pods")
    }

    /// Core v1 configmaps.
    pub fn configmaps() -> Resource {
        Resource::new("v1", "configmaps")
    }

    /// `apps/v1` deployments.
    pub fn deployments() -> Resource {
        Resource::new("apps/v1", "deployments")
    }

    /// Core v1 secrets.
    pub fn secrets() -> Resource {
        Resource::new("v1", "secrets")
    }

    /// Core v1 namespaces (cluster-scoped: their namespace is "").
    pub fn namespaces() -> Resource {
        Resource::new("v1", "namespaces")
    }

    /// `coordination.k8s.io/v1` leases, as leader election uses them.
    pub fn leases() -> Resource {
        Resource::new("coordination.k8s.io/v1", "leases")
    }

    /// The `kind` of this resource's objects: from a table of well-known resources, else the capitalised singular.
    pub fn kind(&self) -> String {
        store::kind_for(&self.plural)
    }

    /// The URL path of the collection, for `namespace` (`None`: all namespaces).
    pub fn path(&self, namespace: Option<&str>) -> String {
        let base = if self.api_version.contains('/') {
            format!("/apis/{}", self.api_version)
        } else {
            format!("/api/{}", self.api_version)
        };
        match namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.plural),
            None => format!("{base}/{}", self.plural),
        }
    }
}

/// The state of one object right after a mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `metadata.uid`, stable across updates of the object.
    pub uid: String,
    /// `metadata.resourceVersion` of this version (for a delete: the deletion's resourceVersion).
    pub resource_version: String,
    /// The serialised object as the server sends it.
    pub json: String,
}

/// Type of a mutation, as it appears in watch events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object updated.
    Modified,
    /// Object deleted.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One mutation, as recorded for checkers (never trimmed, unlike the watch history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    /// What happened.
    pub event_type: EventType,
    /// Which resource type.
    pub resource: Resource,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Object uid.
    pub uid: String,
    /// resourceVersion of the mutation.
    pub resource_version: String,
}

/// One HTTP request the server received, for assertions about client behaviour.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Request method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (without `?`), still URL-encoded.
    pub query: String,
    /// The request carried an `Authorization` header.
    pub had_auth: bool,
    /// The connection presented a client certificate the emulator's CA signed.
    pub client_cert: bool,
    /// `watch=true` or `watch=1`.
    pub is_watch: bool,
    /// When it arrived.
    pub time: SystemTime,
    /// Which connection carried it (to check keep-alive reuse); counts from 1.
    pub conn_id: u64,
    /// Status code of the response (0 while not yet decided).
    pub status: u16,
    /// For a streaming list (`sendInitialEvents`): the resourceVersion of
    /// the snapshot its initial events show (the initial-events-end
    /// bookmark's), once they were sent.
    pub initial_events_end: Option<u64>,
}

/// How watch responses are cut into writes and chunks, to exercise client framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamShape {
    /// Write every response in writes of at most this many bytes, each flushed (1 works).
    pub piece_size: Option<usize>,
    /// Put up to this many ready events in one chunk (≥ 1; 0 is taken as 1).
    pub events_per_chunk: usize,
    /// Add `;ext=1`-style chunk extensions to every chunk-size line.
    pub chunk_extensions: bool,
}

impl Default for StreamShape {
    fn default() -> Self {
        StreamShape {
            piece_size: None,
            events_per_chunk: 1,
            chunk_extensions: false,
        }
    }
}

/// A fault injected into the next `times` requests whose request target contains `path_contains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Substring of the request target (path and query, e.g. `"watch=1"` or `"/pods"`).
    pub path_contains: String,
    /// How many matching requests get the fault.
    pub times: usize,
    /// What happens to them.
    pub fault: Fault,
}

/// What goes wrong. Faults marked "watch only" are only consumed by watch requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a `Status` body, with `Retry-After` when given.
    Status {
        /// HTTP status code.
        code: u16,
        /// Seconds for the `Retry-After` header.
        retry_after: Option<u32>,
    },
    /// Close the connection after this many bytes of the response (head included), mid-chunk if so.
    CutAfterBytes(usize),
    /// Watch only: close abruptly (no final chunk) after this many events.
    CutAfterEvents(usize),
    /// Send the response head, stay silent this long, then close.
    Stall(Duration),
    /// Watch only: after the first event, write `zz\r\n` where a chunk size belongs, then close.
    GarbageChunkSize,
    /// Watch only: one valid JSON event line of this many bytes (a padded BOOKMARK), then continue.
    OversizedLine(usize),
    /// Watch only: one line `{not json` as its own chunk, then continue.
    InvalidJsonLine,
    /// Watch only: one event with type `WEIRD`, then continue.
    UnknownEventType,
    /// Watch only: refuse the watch as if its resourceVersion were older than the history, in this mode
    /// (whatever `SimOptions::expired` says). Pair it with [`SimHandle::compact`] to make the loss real.
    Expired(ExpiredMode),
    /// Watch only: refuse the watch's resourceVersion as invalid, as an API server does for a position it cannot
    /// parse (`400 BadRequest`, `resourceVersion: Invalid value: …`). Target one position with a
    /// `path_contains` of `resourceVersion=N&`.
    InvalidResourceVersion,
}

impl Fault {
    fn watch_only(&self) -> bool {
        !matches!(
            self,
            Fault::Status { .. } | Fault::CutAfterBytes(_) | Fault::Stall(_)
        )
    }
}

/// A resource type as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    pub resource: Resource,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
}

impl ResourceDef {
    /// A resource type; `kind` is derived from the plural as objects get it.
    pub fn new(
        api_version: &str,
        plural: &str,
        namespaced: bool,
        short_names: &[&str],
    ) -> ResourceDef {
        let resource = Resource::new(api_version, plural);
        ResourceDef {
            kind: resource.kind(),
            resource,
            namespaced,
            short_names: short_names.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The custom resource `widgets.example.com` (`example.com/v1`, kind Widget, short name `wd`), not served until
    /// installed with [`SimHandle::install_resource`].
    pub fn widgets() -> ResourceDef {
        ResourceDef::new("example.com/v1", "widgets", true, &["wd"])
    }
}

/// A cloneable, thread-safe handle on a running emulator's state: everything but shutdown.
///
/// Obtained with [`Sim::handle`]; keeps working (as an in-memory store) after the server is shut down.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl SimHandle {
    /// Create an object (ADDED). If it already exists this is an update (MODIFIED) that keeps its uid.
    pub fn create(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        extra: serde_json::Value,
    ) -> ObjectRef {
        self.mutate(|s| s.store.create(res, namespace, name, labels, extra))
    }

    /// Replace an object's extra fields (and its labels when given): MODIFIED. `None` if it does not exist.
    pub fn update(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        extra: serde_json::Value,
        labels: Option<&[(&str, &str)]>,
    ) -> Option<ObjectRef> {
        self.mutate(|s| s.store.update(res, namespace, name, extra, labels))
    }

    /// Create an object as a client's POST would (`kubectl create`): the server sets uid, creationTimestamp,
    /// resourceVersion and (in named API groups) generation; an existing name is an error. `namespace` is empty
    /// for cluster-scoped resources. `Err`: the API server's message.
    pub fn create_object(
        &self,
        res: &Resource,
        namespace: &str,
        object: serde_json::Value,
    ) -> Result<ObjectRef, String> {
        let write = write::OwnerWrite::Create(object);
        self.owner_write(res, namespace, None, write::Part::Object, write)
    }

    /// Apply a JSON merge patch as a client's PATCH would: a resource with a `status` subresource keeps its
    /// status, `generation` moves when the spec changes, a patch that changes nothing is no event.
    pub fn patch(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<ObjectRef, String> {
        let write = write::OwnerWrite::MergePatch(patch);
        self.owner_write(res, namespace, Some(name), write::Part::Object, write)
    }

    /// Apply a JSON merge patch to the `status` subresource, as a controller reporting progress does: only the
    /// status changes (a MODIFIED event with the same `generation`).
    pub fn patch_status(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<ObjectRef, String> {
        let write = write::OwnerWrite::MergePatch(patch);
        self.owner_write(res, namespace, Some(name), write::Part::Status, write)
    }

    fn owner_write(
        &self,
        res: &Resource,
        namespace: &str,
        name: Option<&str>,
        part: write::Part,
        w: write::OwnerWrite,
    ) -> Result<ObjectRef, String> {
        self.mutate(|s| write::owner_write(s, res, namespace, name, part, w))
            .map_err(|e| e.message)
    }

    /// Changes the shared state under its lock, then wakes every watch
    /// stream so it sends what the change produced.
    fn mutate<T>(&self, f: impl FnOnce(&mut server::State) -> T) -> T {
        let r = f(&mut self.shared.lock());
        self.shared.cond.notify_all();
        r
    }

    /// Delete an object: DELETED, carrying its last state with the deletion's resourceVersion.
    pub fn delete(&self, res: &Resource, namespace: &str, name: &str) -> Option<ObjectRef> {
        self.mutate(|s| s.store.delete(res, namespace, name))
    }

    /// The current state of one object, as served.
    pub fn get(&self, res: &Resource, namespace: &str, name: &str) -> Option<String> {
        self.shared
            .lock()
            .store
            .get(res, namespace, name)
            .map(|j| j.to_string())
    }

    /// Forget the whole watch history and every continue token: any watch from an older resourceVersion, and
    /// every open watch that has not caught up, gets "expired".
    pub fn compact(&self) {
        self.mutate(|s| s.store.compact());
    }

    /// End every open watch stream normally (final 0-chunk), as a server-side timeout does.
    pub fn end_watches(&self) {
        self.mutate(|s| s.end_epoch += 1);
    }

    /// Send a BOOKMARK now on every open watch that allows bookmarks.
    pub fn bookmark_now(&self) {
        self.mutate(|s| s.bookmark_epoch += 1);
    }

    /// Accept this bearer token too (besides `token` and earlier ones).
    pub fn accept_token(&self, token: &str) {
        self.shared.lock().accepted_tokens.push(token.to_string());
    }

    /// Forget the tokens added with [`accept_token`](Self::accept_token).
    pub fn clear_accepted_tokens(&self) {
        self.shared.lock().accepted_tokens.clear();
    }

    /// See [`SimOptions::require_auth`].
    pub fn set_require_auth(&self, require: bool) {
        self.shared.lock().require_auth = require;
    }

    /// A client certificate for `user` (CN) in `groups` (O), signed by the emulator's CA, and its private key:
    /// `(cert_pem, key_pem)`. TLS mode only.
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> io::Result<(String, String)> {
        match &self.shared.issuer {
            Some(issuer) => issuer.client_cert(user, groups),
            None => Err(io::Error::other("client certificates need SimOptions::tls")),
        }
    }

    /// Change the required bearer token (`None`: no authentication).
    pub fn set_token(&self, token: Option<String>) {
        self.shared.lock().token = token;
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> String {
        self.shared.lock().store.rv().to_string()
    }

    /// Every mutation since start, oldest first.
    pub fn history(&self) -> Vec<HistoryEvent> {
        self.shared.lock().store.log().to_vec()
    }

    /// Every request received since start, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Number of watch streams currently open (a client that went away is noticed within about 100 ms).
    pub fn open_watches(&self) -> usize {
        self.shared.lock().open_watches
    }

    /// Set how responses are written from now on (applies to requests that start afterwards).
    pub fn set_stream_shape(&self, shape: StreamShape) {
        self.shared.lock().shape = shape;
    }

    /// Add a fault rule; rules are tried in the order added.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    /// Remove every pending fault rule.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Serve a resource type in discovery from now on, as creating a CustomResourceDefinition does (replaces a
    /// definition of the same group version and plural).
    pub fn install_resource(&self, def: ResourceDef) {
        let mut st = self.shared.lock();
        st.resources.retain(|d| d.resource != def.resource);
        st.resources.push(def);
    }

    /// Add a fault for one client's Lease requests (see [`LeaseFault`]); faults are tried in the order added.
    pub fn add_lease_fault(&self, fault: LeaseFault) {
        self.shared.lock().lease_faults.push(fault);
    }

    /// Remove every Lease fault (a partition heals).
    pub fn clear_lease_faults(&self) {
        self.shared.lock().lease_faults.clear();
    }

    /// The Lease faults still in force.
    pub fn lease_faults(&self) -> Vec<LeaseFault> {
        self.shared.lock().lease_faults.clone()
    }

    /// How many requests Lease faults have hit since start.
    pub fn lease_fault_hits(&self) -> u64 {
        self.shared.lock().lease_fault_hits
    }

    /// The fault rules not yet used up, in the order they are tried.
    pub fn pending_faults(&self) -> Vec<FaultRule> {
        self.shared.lock().faults.clone()
    }
}

/// A running emulator. Dropping it (or [`Sim::shutdown`]) stops every thread and closes the listener.
pub struct Sim {
    handle: SimHandle,
    addr: SocketAddr,
    ca_pem: Option<String>,
    acceptor: Option<JoinHandle<()>>,
}

impl Sim {
    /// Bind, generate TLS material if asked, and start serving.
    pub fn start(opts: SimOptions) -> io::Result<Sim> {
        let (shared, addr, ca_pem, acceptor) = server::start(opts)?;
        Ok(Sim {
            handle: SimHandle { shared },
            addr,
            ca_pem,
            acceptor: Some(acceptor),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// PEM of the CA that signed the server certificate (TLS mode only).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// A cloneable handle on the state, for other threads (e.g. churn).
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stop serving: end every connection, join every thread, close the listener.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        let shared = &self.handle.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        shared.cond.notify_all();
        // The acceptor blocks in accept(): a connection of our own wakes it, and it sees the flag.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = acceptor.join();
        // Unblock connection threads stuck in a read or a write, then wait for them.
        for (_, s) in shared
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let threads: Vec<_> = shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Everything but starting and stopping is the handle's: `sim.create(…)`, `sim.history()`, … on a [`Sim`] are
/// [`SimHandle`]'s methods.
impl std::ops::Deref for Sim {
    type Target = SimHandle;

    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl From<&Sim> for SimHandle {
    fn from(sim: &Sim) -> SimHandle {
        sim.handle()
    }
}
