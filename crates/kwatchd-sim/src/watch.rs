//! WATCH: start position, synthetic initial events, the live stream, bookmarks, endings and watch faults.
//!
//! The stream thread keeps a cursor (the last resourceVersion it has examined). Under the lock it collects the
//! history events after the cursor that concern its filter, moves the cursor to the global resourceVersion, and
//! formats and writes them after releasing the lock, so a slow client never blocks mutations.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{self, Out};
use super::list::partial_object;
use super::select::Filter;
use super::server::{peer_closed, Ctx, Shared};
use super::store::{with_rv, Ev};
use super::{EventType, ExpiredMode, Fault};

/// Longest wait between checks of shutdown and of the peer having gone.
const TICK: Duration = Duration::from_millis(100);

/// Sleep `d`, waking early on shutdown.
pub(crate) fn sleep_unless_shutdown(sh: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while !sh.shutdown.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// What a filtered watcher sees for one history event.
enum Seen {
    As(EventType),
    /// Stopped matching: DELETED carrying the state before the update, at this event's resourceVersion.
    DeletedPrev,
}

fn translate(f: &Filter, ev: &Ev) -> Option<Seen> {
    if ev.res != f.res || !f.matches_key(&ev.namespace, &ev.name) {
        return None;
    }
    let now = f.labels.matches(&ev.labels);
    match (ev.kind, &ev.prev) {
        (EventType::Modified, Some((prev_labels, _))) => match (f.labels.matches(prev_labels), now)
        {
            (true, true) => Some(Seen::As(EventType::Modified)),
            (false, true) => Some(Seen::As(EventType::Added)),
            (true, false) => Some(Seen::DeletedPrev),
            (false, false) => None,
        },
        (kind, _) => now.then_some(Seen::As(kind)),
    }
}

fn event_line(kind: &str, object: &str) -> Vec<u8> {
    let mut l = Vec::with_capacity(object.len() + 32);
    l.extend_from_slice(b"{\"type\":\"");
    l.extend_from_slice(kind.as_bytes());
    l.extend_from_slice(b"\",\"object\":");
    l.extend_from_slice(object.as_bytes());
    l.extend_from_slice(b"}\n");
    l
}

/// An event line; `partial`: its object as `PartialObjectMetadata`.
fn object_line(kind: &str, object: &str, partial: bool) -> Vec<u8> {
    if partial {
        event_line(kind, &partial_object(object))
    } else {
        event_line(kind, object)
    }
}

fn seen_line(seen: &Seen, ev: &Ev, partial: bool) -> Vec<u8> {
    match seen {
        Seen::As(kind) => object_line(kind.as_str(), &ev.json, partial),
        Seen::DeletedPrev => {
            let prev = ev
                .prev
                .as_ref()
                .map(|(_, j)| j.as_ref())
                .unwrap_or(&ev.json);
            object_line("DELETED", &with_rv(prev, ev.rv), partial)
        }
    }
}

fn bookmark_line(f: &Filter, rv: u64, initial_end: bool) -> Vec<u8> {
    let mut meta = serde_json::json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = serde_json::json!({"kind": f.res.kind(), "apiVersion": f.res.api_version, "metadata": meta});
    event_line("BOOKMARK", &obj.to_string())
}

fn expired_line(asked: u64, oldest: u64) -> Vec<u8> {
    let status = http::status_json(
        410,
        "Expired",
        &format!("too old resource version: {asked} ({oldest})"),
    );
    event_line("ERROR", &status)
}

/// A padded BOOKMARK of exactly `size` bytes (newline included) when `size` allows: valid JSON, harmless if
/// a client accepts it, since it repeats a resourceVersion the client already has.
fn oversized_line(f: &Filter, rv: u64, size: usize) -> Vec<u8> {
    let obj = serde_json::json!({"kind": f.res.kind(), "apiVersion": f.res.api_version,
        "metadata": {"resourceVersion": rv.to_string()}, "padding": ""});
    let base = event_line("BOOKMARK", &obj.to_string());
    let pad = "x".repeat(size.saturating_sub(base.len()));
    let obj = serde_json::json!({"kind": f.res.kind(), "apiVersion": f.res.api_version,
        "metadata": {"resourceVersion": rv.to_string()}, "padding": pad});
    event_line("BOOKMARK", &obj.to_string())
}

/// Counts open watches for `Sim::open_watches`, also when the thread leaves through an error.
struct OpenGuard<'a>(&'a Shared);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().open_watches -= 1;
    }
}

/// How a stream ends.
enum End {
    /// Final 0-chunk; the connection may serve another request.
    Normal,
    /// Send an expired ERROR event, then end normally.
    Expired(u64, u64),
    /// Close without a final chunk (shutdown, peer gone, fault).
    Abort,
}

/// Writes event lines as chunks, applying the stream shape and the event-count faults.
struct Emitter {
    per_chunk: usize,
    extensions: bool,
    sent: usize,
    cut_after: Option<usize>,
    garbage: bool,
}

impl Emitter {
    /// `Err` means "stop and close" (write failure or an injected cut).
    fn emit(&mut self, out: &mut Out, lines: &[Vec<u8>]) -> Result<(), ()> {
        let per = if self.cut_after.is_some() || self.garbage {
            1
        } else {
            self.per_chunk.max(1)
        };
        for group in lines.chunks(per) {
            if self.cut_after.is_some_and(|n| self.sent >= n) {
                return Err(());
            }
            let data: Vec<u8> = group.concat();
            out.send(&http::chunk(&data, self.extensions))
                .map_err(|_| ())?;
            self.sent += group.len();
            if self.garbage {
                let _ = out.send(b"zz\r\n");
                return Err(());
            }
        }
        if self.cut_after.is_some_and(|n| self.sent >= n) {
            return Err(());
        }
        Ok(())
    }
}

/// Serve a watch; returns whether the connection stays open.
pub(crate) fn serve(
    ctx: &Ctx,
    out: &mut Out,
    filter: Filter,
    fault: Option<Fault>,
    partial: bool,
) -> bool {
    let sh = ctx.sh;
    let req = ctx.req;
    let initial_events = req.flag("sendInitialEvents");
    let allow_bookmarks = req.flag("allowWatchBookmarks");
    let rv_match = req.param("resourceVersionMatch").filter(|m| !m.is_empty());
    if initial_events {
        if !sh.settings.watch_list {
            return ctx.error(out, 422, "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled");
        }
        if rv_match != Some("NotOlderThan") {
            return ctx.error(
                out,
                422,
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan",
            );
        }
        if !allow_bookmarks {
            return ctx.error(
                out,
                422,
                "sendInitialEvents requires allowWatchBookmarks=true",
            );
        }
    } else if rv_match.is_some() {
        return ctx.error(
            out,
            422,
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        );
    }
    let timeout = match req
        .param("timeoutSeconds")
        .filter(|t| !t.is_empty())
        .map(str::parse::<u64>)
    {
        None => None,
        Some(Ok(s)) => Some(Duration::from_secs(s)),
        Some(Err(_)) => {
            return ctx.error(out, 400, "timeoutSeconds must be a non-negative integer")
        }
    };
    if let Some(Fault::InvalidResourceVersion) = fault {
        let rv = req.param("resourceVersion").unwrap_or_default();
        return ctx.error(
            out,
            400,
            &format!("resourceVersion: Invalid value: \"{rv}\": refused by an injected fault"),
        );
    }
    let asked = match req
        .param("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return ctx.error(out, 400, &format!("invalid resource version: {v}")),
        },
    };

    // Start position and initial events, decided atomically with the cursor.
    let (initial, cursor, end_epoch, bm_epoch, expired) = {
        let mut st = sh.lock();
        let cur = st.store.rv();
        let mut expired = None;
        if let Some(Fault::Expired(_)) = fault {
            expired = Some((asked.unwrap_or(cur), st.store.compacted_through() + 1));
        }
        if let Some(n) = asked.filter(|_| expired.is_none()) {
            if n > cur {
                drop(st);
                return too_large(ctx, out, n);
            }
            if n < st.store.compacted_through() {
                expired = Some((n, st.store.compacted_through() + 1));
            }
        }
        let synthetic = asked.is_none() || initial_events;
        let initial: Vec<Vec<u8>> = if synthetic && expired.is_none() {
            st.store
                .list(&filter)
                .iter()
                .map(|j| object_line("ADDED", j, partial))
                .collect()
        } else {
            Vec::new()
        };
        let cursor = if synthetic { cur } else { asked.unwrap_or(cur) };
        if expired.is_none() {
            st.open_watches += 1;
        }
        (initial, cursor, st.end_epoch, st.bookmark_epoch, expired)
    };
    let mode = match fault {
        Some(Fault::Expired(mode)) => mode,
        _ => sh.settings.expired,
    };
    if let (Some((n, oldest)), ExpiredMode::HttpStatus) = (expired, mode) {
        return ctx.error(
            out,
            410,
            &format!("too old resource version: {n} ({oldest})"),
        );
    }
    ctx.set_status(200);
    let head = http::head(
        200,
        &[
            ("Content-Type", "application/json".into()),
            ("Cache-Control", "no-cache, private".into()),
            ("Transfer-Encoding", "chunked".into()),
        ],
        false,
    );
    let ext = ctx.shape.chunk_extensions;
    if out.send(&head).is_err() {
        if expired.is_none() {
            sh.lock().open_watches -= 1;
        }
        return false;
    }
    if let Some((n, oldest)) = expired {
        return out
            .send(&http::chunk(&expired_line(n, oldest), ext))
            .is_ok()
            && out.send(http::last_chunk(ext)).is_ok();
    }
    let _guard = OpenGuard(sh);

    let mut em = Emitter {
        per_chunk: ctx.shape.events_per_chunk,
        extensions: ext,
        sent: 0,
        cut_after: None,
        garbage: false,
    };
    let mut inject = None;
    match fault {
        Some(Fault::Stall(d)) => {
            sleep_unless_shutdown(sh, d);
            return false;
        }
        Some(Fault::CutAfterEvents(n)) => em.cut_after = Some(n),
        Some(Fault::GarbageChunkSize) => em.garbage = true,
        Some(Fault::OversizedLine(n)) => inject = Some(oversized_line(&filter, cursor, n)),
        Some(Fault::InvalidJsonLine) => inject = Some(b"{not json\n".to_vec()),
        Some(Fault::UnknownEventType) => {
            let obj = serde_json::json!({"kind": filter.res.kind(), "apiVersion": filter.res.api_version,
                "metadata": {"resourceVersion": cursor.to_string()}});
            inject = Some(event_line("WEIRD", &obj.to_string()));
        }
        _ => {}
    }
    if em.cut_after == Some(0) {
        return false;
    }

    let mut lines = initial;
    if initial_events {
        lines.push(bookmark_line(&filter, cursor, true));
    }
    if em.emit(out, &lines).is_err() {
        return false;
    }
    if initial_events {
        ctx.set_initial_events_end(cursor);
    }
    if let Some(line) = inject {
        // Its own chunk, whatever the shape: the point is one bad line.
        if out.send(&http::chunk(&line, ext)).is_err() {
            return false;
        }
    }
    let end = stream(
        ctx,
        out,
        &filter,
        &mut em,
        Stream {
            cursor,
            end_epoch,
            bm_epoch,
            allow_bookmarks,
            timeout,
            partial,
        },
    );
    match end {
        End::Abort => false,
        End::Normal => out.send(http::last_chunk(ext)).is_ok(),
        End::Expired(n, oldest) => {
            out.send(&http::chunk(&expired_line(n, oldest), ext))
                .is_ok()
                && out.send(http::last_chunk(ext)).is_ok()
        }
    }
}

/// Per-stream position and settings.
struct Stream {
    cursor: u64,
    end_epoch: u64,
    bm_epoch: u64,
    allow_bookmarks: bool,
    timeout: Option<Duration>,
    partial: bool,
}

fn stream(ctx: &Ctx, out: &mut Out, filter: &Filter, em: &mut Emitter, mut s: Stream) -> End {
    let sh = ctx.sh;
    let started = Instant::now();
    // `checked_add`: an absurd timeoutSeconds means no deadline rather than an overflow panic.
    let deadline = s.timeout.and_then(|t| started.checked_add(t));
    let interval = sh.settings.bookmark_interval.filter(|_| s.allow_bookmarks);
    let mut next_bookmark = interval.map(|i| started + i);
    loop {
        let mut found: Vec<(Seen, Arc<Ev>)> = Vec::new();
        let mut bookmark = None;
        {
            let mut st = sh.lock();
            loop {
                if sh.shutdown.load(Ordering::SeqCst) {
                    return End::Abort;
                }
                if st.end_epoch != s.end_epoch || deadline.is_some_and(|d| Instant::now() >= d) {
                    return End::Normal;
                }
                match st.store.events_after(s.cursor) {
                    Err(oldest) => return End::Expired(s.cursor, oldest),
                    Ok(evs) => found
                        .extend(evs.filter_map(|e| translate(filter, e).map(|t| (t, e.clone())))),
                }
                s.cursor = st.store.rv();
                if !found.is_empty() {
                    break;
                }
                let now = Instant::now();
                if s.allow_bookmarks
                    && (st.bookmark_epoch != s.bm_epoch || next_bookmark.is_some_and(|b| now >= b))
                {
                    s.bm_epoch = st.bookmark_epoch;
                    next_bookmark = interval.map(|i| now + i);
                    bookmark = Some(bookmark_line(filter, s.cursor, false));
                    break;
                }
                if peer_closed(ctx.fd) {
                    return End::Abort;
                }
                let mut wait = TICK;
                for t in [deadline, next_bookmark].into_iter().flatten() {
                    wait = wait.min(t.saturating_duration_since(now));
                }
                st = sh.wait(st, wait.max(Duration::from_millis(1)));
            }
        }
        let mut lines: Vec<Vec<u8>> = found
            .iter()
            .map(|(seen, ev)| seen_line(seen, ev, s.partial))
            .collect();
        lines.extend(bookmark);
        if em.emit(out, &lines).is_err() {
            return End::Abort;
        }
    }
}

/// The client is ahead of this server (e.g. after a failover): 504 with ResourceVersionTooLarge, as the real server.
fn too_large(ctx: &Ctx, out: &mut Out, n: u64) -> bool {
    ctx.set_status(504);
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("Too large resource version: {n}, current: {}", ctx.sh.lock().store.rv()),
        "reason": "Timeout", "code": 504,
        "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1},
    });
    out.send(&http::json_response(
        504,
        &body.to_string(),
        &[("Retry-After", "1".into())],
        false,
    ))
    .is_ok()
}
