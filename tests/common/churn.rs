//! Pod churn on the emulator from a thread of the test: creates, updates
//! and deletes pods (two creates, two updates and one delete in every
//! five steps) until stopped, so a daemon under test sees all three kinds
//! of change while something else happens to it.

use kwatchd_sim::{Resource, SimHandle};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Churn {
    /// New pods are named `{prefix}{n}`; `live` are pods that exist
    /// already (they may be updated and deleted too); one step every
    /// `period`.
    pub fn start(sim: SimHandle, prefix: &str, live: Vec<String>, period: Duration) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let prefix = prefix.to_owned();
        let thread = thread::spawn(move || {
            let pods = Resource::pods();
            let mut live = live;
            let mut n = 0usize;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                match n % 5 {
                    0 | 1 => {
                        let name = format!("{prefix}{n}");
                        sim.create(&pods, "default", &name, &[], json!({}));
                        live.push(name);
                    }
                    4 if live.len() > 4 => {
                        let name = live.remove(n % live.len());
                        sim.delete(&pods, "default", &name);
                    }
                    _ => {
                        if let Some(name) = live.get(n % live.len().max(1)) {
                            sim.update(&pods, "default", name, json!({"spec": {"n": n}}), None);
                        }
                    }
                }
                thread::sleep(period);
            }
        });
        Churn {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the churn and waits for its thread; panics if the thread did
    /// (the test fails, as it should).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
