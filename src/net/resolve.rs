//! Name resolution off the loop. `getaddrinfo` blocks, so names are resolved
//! on one helper thread that wakes the loop through a `mio::Waker`. IP
//! literals never leave the loop.

use mio::Waker;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;

struct Query {
    id: u64,
    host: String,
    port: u16,
}

/// The answer to one query.
#[derive(Debug)]
pub struct Answer {
    pub id: u64,
    pub result: io::Result<Vec<SocketAddr>>,
}

pub struct Resolver {
    waker: Arc<Waker>,
    worker: Option<(Sender<Query>, Receiver<Answer>)>,
    next_id: u64,
}

/// What `resolve` could say at once.
#[derive(Debug)]
pub enum Resolution {
    Ready(Vec<SocketAddr>),
    /// The answer with this id arrives through `answers()` after a wake-up.
    Pending(u64),
}

impl Resolver {
    pub fn new(waker: Arc<Waker>) -> Self {
        Resolver {
            waker,
            worker: None,
            next_id: 0,
        }
    }

    pub fn resolve(&mut self, host: &str, port: u16) -> io::Result<Resolution> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolution::Ready(vec![SocketAddr::new(ip, port)]));
        }
        if self.worker.is_none() {
            self.worker = Some(spawn_worker(self.waker.clone())?);
        }
        self.next_id += 1;
        let id = self.next_id;
        let sent = self.worker.as_ref().map(|(tx, _)| {
            tx.send(Query {
                id,
                host: host.to_owned(),
                port,
            })
        });
        match sent {
            Some(Ok(())) => Ok(Resolution::Pending(id)),
            _ => {
                self.worker = None;
                Err(io::Error::other(
                    "the resolver thread is gone; it is restarted on the next attempt",
                ))
            }
        }
    }

    /// Answers that arrived since the last call.
    pub fn answers(&mut self) -> Vec<Answer> {
        match &self.worker {
            Some((_, rx)) => rx.try_iter().collect(),
            None => Vec::new(),
        }
    }
}

fn spawn_worker(waker: Arc<Waker>) -> io::Result<(Sender<Query>, Receiver<Answer>)> {
    let (qtx, qrx) = channel::<Query>();
    let (atx, arx) = channel::<Answer>();
    thread::Builder::new()
        .name("kwatchd-resolver".into())
        .spawn(move || {
            for q in qrx {
                let result = (q.host.as_str(), q.port)
                    .to_socket_addrs()
                    .map(|addrs| addrs.collect::<Vec<_>>())
                    .and_then(|addrs| {
                        if addrs.is_empty() {
                            Err(io::Error::new(
                                io::ErrorKind::NotFound,
                                "the name has no address",
                            ))
                        } else {
                            Ok(addrs)
                        }
                    });
                if atx.send(Answer { id: q.id, result }).is_err() {
                    return;
                }
                // A failed wake only delays the answer to the next poll turn.
                let _ = waker.wake();
            }
        })?;
    Ok((qtx, arx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn literals_resolve_inline_and_names_through_the_waker() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut r = Resolver::new(waker);
        match r.resolve("::1", 443).unwrap() {
            Resolution::Ready(a) => assert_eq!(a, vec!["[::1]:443".parse().unwrap()]),
            other => panic!("{other:?}"),
        }
        let Resolution::Pending(id) = r.resolve("localhost", 80).unwrap() else {
            panic!("localhost should go to the thread")
        };
        let mut events = Events::with_capacity(4);
        let mut got = Vec::new();
        for _ in 0..50 {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            got.extend(r.answers());
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, id);
        assert!(got[0]
            .result
            .as_ref()
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback()));
    }
}
