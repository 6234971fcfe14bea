//! Object index memory: heap bytes per object of a watch's index at N
//! realistic objects (UUID uids, integer resourceVersions, ~100
//! namespaces, names of 20–60 characters), counted by a global allocator
//! (bytes requested, live at the end; malloc's own overhead per allocation
//! is not counted, which flatters the index that allocates more often: the
//! baseline), for the index as it was at 4a577ad (`index_memory/main_index.rs`)
//! and today's, in the same run. Three loads each: a plain watch; a watch with
//! `select` (every object's filter memory says `reported`, no projection);
//! a watch with `changes` (a projection of ~45 bytes per object, like
//! `[.spec.containers[].image]`). Then the CPU time to build and to relist
//! (look up every object again) each, as a ratio.
//!
//! `cargo bench --bench index_memory` (`KWATCHD_BENCH_INDEX_OBJECTS`,
//! default 250000).

#[path = "index_memory/main_index.rs"]
mod main_index;

use kwatchd::filter::Memory;
use kwatchd::kube::ObjectMeta;
use kwatchd::watch::index::ObjectIndex;
use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Live heap bytes (as requested) and allocations made.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting on the way.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Object {
    uid: String,
    namespace: String,
    name: String,
    rv: String,
}

/// splitmix64: the same objects in every run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn objects(n: usize) -> Vec<Object> {
    let mut s = 7u64;
    (0..n)
        .map(|i| {
            let (a, b) = (next(&mut s), next(&mut s));
            // A version-4 UUID, as the API server makes them.
            let a = (a & !0xf000) | 0x4000;
            let b = (b & !(0xc << 60)) | (0x8 << 60);
            let uid = format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xffff,
                b >> 48,
                b & 0xffff_ffff_ffff
            );
            let namespace = format!("team-{:02}-prod", next(&mut s) % 100);
            // 20–60 characters: a deployment, its ReplicaSet hash, a pod suffix.
            let len = 20 + (next(&mut s) % 41) as usize;
            let stem = "checkout-service-frontend-worker-batch-ingest-api-gateway-x";
            let name = format!(
                "{}-{:07x}-{:05x}",
                &stem[..len - 14],
                next(&mut s) & 0xfff_ffff,
                next(&mut s) & 0xfffff
            );
            let rv = (40_000_000 + i * 3 + (next(&mut s) % 3) as usize).to_string();
            Object {
                uid,
                namespace,
                name,
                rv,
            }
        })
        .collect()
}

fn meta(o: &Object) -> ObjectMeta<'_> {
    ObjectMeta {
        name: Some(Cow::Borrowed(&o.name)),
        namespace: Some(Cow::Borrowed(&o.namespace)),
        uid: Some(Cow::Borrowed(&o.uid)),
        resource_version: Some(Cow::Borrowed(&o.rv)),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Load {
    Plain,
    Select,
    Changes,
}

fn memory(load: Load, i: usize) -> Option<Memory> {
    match load {
        Load::Plain => None,
        Load::Select => Some(Memory {
            reported: true,
            projection: None,
        }),
        Load::Changes => Some(Memory {
            reported: true,
            projection: Some(
                format!("[\"registry.example.com/team/app:v1.{}.0\"]", i % 40)
                    .into_bytes()
                    .into_boxed_slice(),
            ),
        }),
    }
}

/// What one index cost: bytes and allocations per object, CPU seconds to
/// build it and to look every object up again (a relist of nothing changed).
struct Cost {
    bytes: f64,
    allocs: f64,
    build: f64,
    relist: f64,
}

fn cpu_now() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

macro_rules! measure {
    ($index:ty, $objs:expr, $load:expr) => {{
        let objs: &[Object] = $objs;
        let (live0, allocs0) = (LIVE.load(Ordering::Relaxed), ALLOCS.load(Ordering::Relaxed));
        let t = cpu_now();
        let mut idx = <$index>::default();
        for (i, o) in objs.iter().enumerate() {
            idx.upsert(&o.uid, &meta(o));
            if $load != Load::Plain {
                idx.set_memory(&o.uid, memory($load, i));
            }
        }
        let build = cpu_now() - t;
        let n = objs.len() as f64;
        let bytes = (LIVE.load(Ordering::Relaxed) - live0) as f64 / n;
        let allocs = (ALLOCS.load(Ordering::Relaxed) - allocs0) as f64 / n;
        let t = cpu_now();
        let mut unchanged = 0usize;
        for o in objs {
            if idx.get(&o.uid).is_some() {
                unchanged += 1;
            }
        }
        assert_eq!(unchanged, objs.len());
        let relist = cpu_now() - t;
        drop(idx);
        Cost {
            bytes,
            allocs,
            build,
            relist,
        }
    }};
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = std::env::var("KWATCHD_BENCH_INDEX_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let objs = objects(n);
    let avg_name = objs.iter().map(|o| o.name.len()).sum::<usize>() as f64 / n as f64;
    println!(
        "index of {n} objects (UUID uids, integer versions, 100 namespaces, names of 20-60 chars, mean {avg_name:.1})"
    );
    for (label, load) in [
        ("plain", Load::Plain),
        ("select (reported, no projection)", Load::Select),
        ("changes (~45 B projection)", Load::Changes),
    ] {
        let before = measure!(main_index::ObjectIndex, &objs, load);
        let after = measure!(ObjectIndex, &objs, load);
        println!(
            "{label}: main {:.1} B/object ({:.2} allocations), now {:.1} B/object ({:.2} allocations): {:.2}x less; CPU to build {:.3} s vs {:.3} s ({:.2}x), to look every object up {:.3} s vs {:.3} s ({:.2}x)",
            before.bytes,
            before.allocs,
            after.bytes,
            after.allocs,
            before.bytes / after.bytes,
            before.build,
            after.build,
            after.build / before.build,
            before.relist,
            after.relist,
            after.relist / before.relist,
        );
    }
}
