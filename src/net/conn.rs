//! One client connection: a non-blocking TCP socket and, for https, its
//! rustls state. It reacts to readiness; it never waits.

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ClientConnection;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Keepalive probes find peers that vanished without FIN or RST (load
/// balancers, VPNs): first probe after 30 s idle, then every 10 s, 3 tries.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Established,
}

/// The result of one read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Data(usize),
    WouldBlock,
    /// The peer closed. `clean` is false for TLS without close_notify.
    Closed {
        clean: bool,
    },
}

pub struct Connection {
    token: Token,
    peer: SocketAddr,
    stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    state: State,
    /// Plain-TCP bytes not yet written (TLS buffers inside rustls).
    out: Vec<u8>,
    out_pos: usize,
    interest: Interest,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("token", &self.token)
            .field("peer", &self.peer)
            .field("tls", &self.tls.is_some())
            .field("state", &self.state)
            .finish()
    }
}

impl Connection {
    /// Starts a non-blocking connect and registers the socket.
    pub fn connect(
        registry: &Registry,
        token: Token,
        peer: SocketAddr,
        tls: Option<(
            Arc<rustls::ClientConfig>,
            rustls_pki_types::ServerName<'static>,
        )>,
    ) -> io::Result<Connection> {
        let socket = Socket::new(
            Domain::for_address(peer),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        let keepalive = TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_RETRIES);
        socket.set_tcp_keepalive(&keepalive)?;
        match socket.connect(&peer.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        let tls = match tls {
            Some((config, name)) => {
                let mut tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
                // rustls buffers 64 KiB of outgoing plaintext by default;
                // `send` hands over whole requests (webhook batches can be
                // megabytes), as the plain-TCP path does.
                tls.set_buffer_limit(None);
                Some(Box::new(tls))
            }
            None => None,
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        registry.register(&mut stream, token, interest)?;
        Ok(Connection {
            token,
            peer,
            stream,
            tls,
            state: State::Connecting,
            out: Vec::new(),
            out_pos: 0,
            interest,
        })
    }

    /// Switches an established plain connection to TLS, for protocols
    /// that agree on it in plaintext first (NATS sends INFO, then expects
    /// the handshake). Plaintext sent from now on waits inside rustls until
    /// the handshake is over.
    pub fn start_tls(
        &mut self,
        registry: &Registry,
        config: Arc<rustls::ClientConfig>,
        name: rustls_pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        if self.tls.is_some() || self.out_pos < self.out.len() {
            return Err(io::Error::other(
                "TLS can only start on a plain connection with nothing left to send",
            ));
        }
        let mut tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        tls.set_buffer_limit(None);
        self.tls = Some(Box::new(tls));
        self.flush(registry)
    }

    pub fn token(&self) -> Token {
        self.token
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Connected, and the TLS handshake (if any) is over.
    pub fn is_ready(&self) -> bool {
        self.state == State::Established && self.tls.as_ref().is_none_or(|t| !t.is_handshaking())
    }

    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// After a readiness event while connecting: `Ok(true)` once connected,
    /// `Ok(false)` while still in progress.
    pub fn finish_connect(&mut self) -> io::Result<bool> {
        if self.state == State::Established {
            return Ok(true);
        }
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.state = State::Established;
                Ok(true)
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Queues plaintext (a request) and tries to send it at once: the socket
    /// may already be writable, and then no new event would come.
    pub fn send(&mut self, registry: &Registry, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => tls.writer().write_all(bytes)?,
            None => self.out.extend_from_slice(bytes),
        }
        self.flush(registry)
    }

    /// [`send`](Self::send) taking the bytes out of `bytes` (left empty,
    /// with some capacity): over plain TCP with nothing pending the buffers
    /// trade places instead of copying (the NATS sink hands over a turn's
    /// publishes, megabytes at a time).
    pub fn send_from(&mut self, registry: &Registry, bytes: &mut Vec<u8>) -> io::Result<()> {
        if self.tls.is_none() && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            std::mem::swap(&mut self.out, bytes);
            return self.flush(registry);
        }
        let sent = self.send(registry, bytes);
        bytes.clear();
        sent
    }

    /// Writes what is pending until done or `WouldBlock`, and keeps the
    /// WRITABLE registration only while something is left.
    pub fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        if self.state == State::Established {
            match &mut self.tls {
                Some(tls) => {
                    while tls.wants_write() {
                        match tls.write_tls(&mut self.stream) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                None => {
                    while self.out_pos < self.out.len() {
                        match self.stream.write(&self.out[self.out_pos..]) {
                            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                            Ok(n) => self.out_pos += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                    if self.out_pos == self.out.len() {
                        self.out.clear();
                        self.out_pos = 0;
                    }
                }
            }
        }
        self.update_interest(registry)
    }

    fn wants_write(&self) -> bool {
        match (&self.state, &self.tls) {
            (State::Connecting, _) => true,
            (State::Established, Some(tls)) => tls.wants_write(),
            (State::Established, None) => self.out_pos < self.out.len(),
        }
    }

    fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let wanted = if self.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != self.interest {
            registry.reregister(&mut self.stream, self.token, wanted)?;
            self.interest = wanted;
        }
        Ok(())
    }

    /// Reads plaintext into `buf`. TLS records are pulled from the socket
    /// only when rustls has no plaintext left, so its buffer never overflows.
    pub fn read(&mut self, registry: &Registry, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        if self.tls.is_none() {
            return self.read_plain(buf);
        }
        // rustls hands out at most one record (16 KiB) per step: keep going
        // until `buf` is full or the socket is dry, so the layers above see
        // one large read rather than a stream of record-sized ones.
        let mut filled = 0;
        loop {
            let step = self.tls_read_step(&mut buf[filled..]);
            // Handshake progress or an alert may have produced bytes to send.
            if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
                if let Err(e) = self.flush(registry) {
                    return if filled > 0 {
                        Ok(ReadOutcome::Data(filled))
                    } else {
                        Err(e)
                    };
                }
            }
            match step {
                Ok(None) => {}
                Ok(Some(ReadOutcome::Data(n))) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(ReadOutcome::Data(filled));
                    }
                }
                // What ended this read (no more bytes for now, end of
                // stream, an error) comes again on the next call, after
                // the bytes already read are handed over.
                _ if filled > 0 => return Ok(ReadOutcome::Data(filled)),
                Ok(Some(outcome)) => return Ok(outcome),
                Err(e) => return Err(e),
            }
        }
    }

    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => Ok(ReadOutcome::Closed { clean: true }),
                Ok(n) => Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
                Err(e) => Err(e),
            };
        }
    }

    /// One round of "plaintext, else records from the socket". `None`: go
    /// round again.
    fn tls_read_step(&mut self, buf: &mut [u8]) -> io::Result<Option<ReadOutcome>> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(Some(ReadOutcome::Closed { clean: true }));
        };
        match tls.reader().read(buf) {
            Ok(0) => return Ok(Some(ReadOutcome::Closed { clean: true })),
            Ok(n) => return Ok(Some(ReadOutcome::Data(n))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Some(ReadOutcome::Closed { clean: false }))
            }
            Err(e) => return Err(e),
        }
        match tls.read_tls(&mut self.stream) {
            // TCP EOF: whatever rustls held was read above.
            Ok(0) => return Ok(Some(ReadOutcome::Closed { clean: false })),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Some(ReadOutcome::WouldBlock))
            }
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            // Send the alert if we can; the connection is over either way.
            let _ = tls.write_tls(&mut self.stream);
            return Err(io::Error::new(io::ErrorKind::InvalidData, TlsFailure(e)));
        }
        Ok(None)
    }

    pub fn close(&mut self, registry: &Registry) {
        // Deregistering a socket that is about to be dropped cannot leave
        // anything behind; an error here has nothing to act on.
        let _ = registry.deregister(&mut self.stream);
        let _ = SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both);
    }
}

/// A rustls error, with a hint for the commonest operator mistake.
#[derive(Debug)]
pub struct TlsFailure(pub rustls::Error);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS failure: {}", self.0)?;
        if let rustls::Error::InvalidCertificate(_) = self.0 {
            write!(
                f,
                " (is certificate_authority the CA that signed the server's certificate, and does the certificate name the server's host or IP?)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for TlsFailure {}
