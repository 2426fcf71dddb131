//! A TCP proxy on 127.0.0.1 in front of a real server, whose connections a test can kill —
//! on demand, or the moment chosen traffic passes (a byte count or a byte pattern in one
//! direction) so that the cut lands in the middle of a request.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → server.
    ToServer,
    /// Server → client.
    ToClient,
}

/// When to cut. The chunk that trips the wire is not forwarded.
#[derive(Debug, Clone)]
pub enum Trip {
    /// Once more than this many bytes went this way since arming.
    Bytes(Dir, u64),
    /// When a chunk going this way contains the pattern.
    Pattern(Dir, Vec<u8>),
}

struct State {
    upstream: String,
    up: AtomicBool,
    conns: Mutex<Vec<AbortHandle>>,
    trip: Mutex<Option<Trip>>,
    tripped: AtomicBool,
    to_server: AtomicU64,
    to_client: AtomicU64,
}

impl State {
    fn kill(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn counter(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::ToServer => &self.to_server,
            Dir::ToClient => &self.to_client,
        }
    }

    /// Count a chunk; true when it trips the wire (the connections are then killed).
    fn pass(&self, dir: Dir, chunk: &[u8]) -> bool {
        let before = self
            .counter(dir)
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        let mut trip = self.trip.lock().unwrap();
        let hit = match trip.as_ref() {
            Some(Trip::Bytes(d, n)) => *d == dir && before + chunk.len() as u64 > *n,
            Some(Trip::Pattern(d, p)) => *d == dir && chunk.windows(p.len()).any(|w| w == p),
            None => false,
        };
        if hit {
            *trip = None;
            drop(trip);
            self.tripped.store(true, Ordering::SeqCst);
            self.kill();
        }
        hit
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.kill();
    }
}

async fn pipe(
    state: Arc<State>,
    dir: Dir,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if state.pass(dir, &buf[..n]) {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    /// Listen on 127.0.0.1 (a free port) and forward to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            up: AtomicBool::new(true),
            conns: Mutex::new(Vec::new()),
            trip: Mutex::new(None),
            tripped: AtomicBool::new(false),
            to_server: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !st.up.load(Ordering::SeqCst) {
                    drop(client); // down: accept and hang up at once
                    continue;
                }
                let Ok(server) = TcpStream::connect(&st.upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let st2 = st.clone();
                let task = tokio::spawn(async move {
                    tokio::join!(
                        pipe(st2.clone(), Dir::ToServer, cr, sw),
                        pipe(st2, Dir::ToClient, sr, cw)
                    );
                });
                st.conns.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Kill every connection and refuse new ones (accepted and closed at once) until
    /// [`Proxy::restore`].
    pub fn kill(&self) {
        self.state.kill();
    }

    /// Forward new connections again.
    pub fn restore(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }

    /// Kill the connections the moment `trip` matches (and stay down until restored).
    pub fn arm(&self, trip: Trip) {
        self.reset_counters();
        self.state.tripped.store(false, Ordering::SeqCst);
        *self.state.trip.lock().unwrap() = Some(trip);
    }

    /// Whether the armed wire tripped; disarms it.
    pub fn take_tripped(&self) -> bool {
        *self.state.trip.lock().unwrap() = None;
        self.state.tripped.swap(false, Ordering::SeqCst)
    }

    pub fn reset_counters(&self) {
        self.state.to_server.store(0, Ordering::SeqCst);
        self.state.to_client.store(0, Ordering::SeqCst);
    }

    /// Bytes forwarded (client → server, server → client) since the last reset.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.state.to_server.load(Ordering::SeqCst),
            self.state.to_client.load(Ordering::SeqCst),
        )
    }
}
