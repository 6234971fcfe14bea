//! Persistence of one big watch: the state store (one redb file, a commit
//! per change batch) against the per-watch checkpoint file of older
//! versions (the whole index rendered, written, fsynced and renamed every
//! time the watch moved), for the same objects and the same churn, measured
//! in the same run.
//!
//! `cargo bench --bench state_store` (`KWATCHD_BENCH_STORE_OBJECTS`, default
//! 250000; `KWATCHD_BENCH_STORE_CHURN`, changes per second, default 500;
//! `KWATCHD_BENCH_STORE_SECS`, seconds of churn, default 10).
//!
//! The store's side is written as the daemon writes it: handled entries
//! in `Op::Puts` buffers (`push_put`), the position in the watch's row.
//!
//! Reports, per second of churn, the CPU time and wall time persistence
//! takes (checkpoint: one full file a second, as the daemon wrote at most
//! once a second; store: one commit of that second's changes and an fsync,
//! as `sync = "interval"` does), and the time a restart needs to read the
//! state back (decode the checkpoint / load the watch's rows).

use kwatchd::config::SyncMode;
use kwatchd::state::checkpoint::{decode, encode_map, Fingerprint};
use kwatchd::state::db::{self, push_put, Op, WatchRow, PUTS_PER_OP};
use kwatchd::watch::index::IndexEntry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of this process (user + system).
fn cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn fingerprint() -> Fingerprint {
    Fingerprint {
        cluster: "c".into(),
        server: "https://10.0.0.1:6443".into(),
        api_version: "v1".into(),
        resource: "pods".into(),
        path: "/api/v1/pods".into(),
        namespace: None,
        label_selector: None,
        field_selector: None,
        filter: String::new(),
    }
}

fn uid(i: usize) -> String {
    format!("3f0c9a2e-0000-4000-8000-{i:012}")
}

/// The older versions' write: temp file, fsync, rename, fsync the directory.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .expect("tmp");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    std::fs::rename(&tmp, path).expect("rename");
    File::open(path.parent().expect("dir"))
        .and_then(|d| d.sync_all())
        .expect("dir fsync");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_or("KWATCHD_BENCH_STORE_OBJECTS", 250_000);
    let churn = env_or("KWATCHD_BENCH_STORE_CHURN", 500);
    let secs = env_or("KWATCHD_BENCH_STORE_SECS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut objects: HashMap<String, IndexEntry> = (0..n)
        .map(|i| {
            let e = IndexEntry::new(Some("default"), &format!("pod-{i}"), &i.to_string());
            (uid(i), e)
        })
        .collect();
    let mut rv = n;

    // Checkpoint files: one full rendering per second of churn.
    let path = dir.path().join("pods.checkpoint");
    let mut buf = Vec::new();
    let (c0, t0) = (cpu(), Instant::now());
    for _ in 0..secs {
        for _ in 0..churn {
            rv += 1;
            let i = rv % n;
            objects.insert(
                uid(i),
                IndexEntry::new(Some("default"), &format!("pod-{i}"), &rv.to_string()),
            );
        }
        encode_map("pods", &fingerprint(), &rv.to_string(), &objects, &mut buf);
        write_atomic(&path, &buf);
    }
    let (old_cpu, old_wall) = (
        (cpu() - c0) / secs as f64,
        t0.elapsed().as_secs_f64() / secs as f64,
    );
    let t = Instant::now();
    let bytes = std::fs::read(&path).expect("read");
    let loaded = decode(&bytes).expect("decode");
    let old_load = t.elapsed();
    assert_eq!(loaded.objects.len(), n);
    let file_mb = bytes.len() as f64 / 1e6;
    drop(loaded);

    // The store: the initial list in one commit, then a commit per second
    // of the second's changes, fsynced (sync = "interval").
    let path = dir.path().join(db::FILE_NAME);
    let (database, sync) = db::open(&path, SyncMode::Interval).expect("open");
    let watch: Arc<str> = Arc::from("pods");
    let commit = |ops: &[Op]| {
        let txn = database.begin_write().expect("txn");
        db::apply(&txn, ops).expect("apply");
        txn.commit().expect("commit");
        sync.sync().expect("fsync");
    };
    let mut ops: Vec<Op> = vec![Op::Watch {
        watch: Arc::clone(&watch),
        row: WatchRow {
            fingerprint: fingerprint(),
            resource_version: Some(rv.to_string()),
        },
    }];
    // As the daemon saves: handled entries in buffers of at most
    // `PUTS_PER_OP` objects (`Persistence::save_at_most`).
    let keys: Vec<&String> = objects.keys().collect();
    for part in keys.chunks(PUTS_PER_OP) {
        let mut entries = Vec::new();
        for key in part {
            push_put(&mut entries, key, &objects[*key]);
        }
        ops.push(Op::Puts {
            watch: Arc::clone(&watch),
            entries,
        });
    }
    let t = Instant::now();
    commit(&ops);
    let initial = t.elapsed();
    let (c0, t0) = (cpu(), Instant::now());
    for _ in 0..secs {
        let mut entries = Vec::new();
        for _ in 0..churn {
            rv += 1;
            let i = rv % n;
            let e = IndexEntry::new(Some("default"), &format!("pod-{i}"), &rv.to_string());
            push_put(&mut entries, &uid(i), &e);
        }
        let mut ops = vec![Op::Puts {
            watch: Arc::clone(&watch),
            entries,
        }];
        ops.push(Op::Watch {
            watch: Arc::clone(&watch),
            row: WatchRow {
                fingerprint: fingerprint(),
                resource_version: Some(rv.to_string()),
            },
        });
        commit(&ops);
    }
    let (new_cpu, new_wall) = (
        (cpu() - c0) / secs as f64,
        t0.elapsed().as_secs_f64() / secs as f64,
    );
    // The file is locked while open (the backend and the fsync handle).
    drop(sync);
    drop(database);
    let t = Instant::now();
    let (database, _) = db::open(&path, SyncMode::Interval).expect("reopen");
    let saved = db::load_all(&database).expect("load");
    let new_load = t.elapsed();
    assert_eq!(saved["pods"].objects.len(), n);
    let store_mb = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;

    let ms = |d: f64| d * 1000.0;
    println!(
        "{n} objects, {churn} changes/s for {secs} s; per second of churn: checkpoint file {:.1} ms CPU, {:.1} ms wall ({file_mb:.1} MB each); state store {:.2} ms CPU, {:.2} ms wall: CPU ratio {:.0}x less",
        ms(old_cpu),
        ms(old_wall),
        ms(new_cpu),
        ms(new_wall),
        old_cpu / new_cpu.max(1e-9),
    );
    println!(
        "state store: initial commit of {n} objects {:.0} ms, file {store_mb:.1} MB; restart read: checkpoint {:.0} ms, store {:.0} ms",
        initial.as_secs_f64() * 1000.0,
        old_load.as_secs_f64() * 1000.0,
        new_load.as_secs_f64() * 1000.0,
    );
}
