//! A loopback HTTP/1.1 receiver for webhook tests: answers each POST with
//! the next scripted response (then 200s), records every body.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    script: Vec<(u16, Option<u32>)>,
    received: Vec<Received>,
}

pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// `script`: (status, Retry-After seconds) for the first POSTs, in order.
    pub fn start(script: &[(u16, Option<u32>)]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            script: script.iter().rev().copied().collect(),
            received: Vec::new(),
        }));
        let s = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let s = s.clone();
                thread::spawn(move || serve(conn, s));
            }
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every body received, as JSON, in order.
    pub fn json_bodies(&self) -> Vec<serde_json::Value> {
        self.received()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{r:?}: {e}")))
            .collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }
}

fn serve(conn: TcpStream, state: Arc<Mutex<State>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, retry_after) = {
            let Ok(mut s) = state.lock() else { return };
            let next = s.script.pop().unwrap_or((200, None));
            s.received.push(Received {
                at: Instant::now(),
                path: request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_owned(),
                headers,
                body,
                status: next.0,
            });
            next
        };
        let mut response = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n");
        if let Some(ra) = retry_after {
            response.push_str(&format!("Retry-After: {ra}\r\n"));
        }
        response.push_str("\r\nok");
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
