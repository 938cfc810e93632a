//! A loopback TCP proxy for fault injection: put it in front of Redis or RabbitMQ, point
//! the fleet at it, then add latency ([`Proxy::set_delay`]) or cut every open connection
//! ([`Proxy::cut`]) while the service itself stays up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Chunks in flight per direction before the reader waits: bounds the memory a slow
/// direction can hold (64 × 16 KiB).
const CHUNKS_IN_FLIGHT: usize = 64;
const CHUNK_BYTES: usize = 16 * 1024;

/// What the accept loop and every connection share.
struct Shared {
    upstream: SocketAddr,
    /// One-way delay added to every chunk, in milliseconds.
    delay_ms: AtomicU64,
    /// Cancelled by [`Proxy::cut`] (and replaced), so the connections open at that moment end.
    generation: Mutex<CancellationToken>,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

/// A TCP proxy on `127.0.0.1:<free port>` forwarding to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (usually `127.0.0.1:<port>` of a private service).
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            delay_ms: AtomicU64::new(0),
            generation: Mutex::new(CancellationToken::new()),
            accepted: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy { addr, shared, accept }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Adds `delay` to every chunk in each direction (a round trip gets twice that);
    /// `Duration::ZERO` removes it. Applies to chunks read from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The current one-way delay.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.shared.delay_ms.load(Ordering::Relaxed))
    }

    /// Closes every connection open now (both sides see the socket close); new
    /// connections are accepted as before.
    pub fn cut(&self) {
        let mut generation = self.shared.generation.lock().expect("proxy lock");
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let cut = shared.generation.lock().expect("proxy lock").clone();
        tokio::spawn(serve(client, shared.clone(), cut));
    }
}

/// Forwards one connection until either side closes or the proxy cuts it.
async fn serve(client: TcpStream, shared: Arc<Shared>, cut: CancellationToken) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return; // the service is down: the client sees its connection close
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pipe(client_read, server_write, shared.clone());
    let down = pipe(server_read, client_write, shared);
    // When either direction ends (after flushing what it read), or on a cut, dropping
    // the halves closes both sockets.
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = up => {}
        _ = down => {}
    }
}

/// One direction: a reader stamps each chunk with its due time, a writer sends it then.
/// Splitting the two keeps latency from turning into a throughput limit.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let delay = Duration::from_millis(shared.delay_ms.load(Ordering::Relaxed));
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP echo server on a free port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn forwards_with_a_delay_and_cuts_open_connections() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut stream, b"plain").await.expect("echo"), b"plain");

        proxy.set_delay(Duration::from_millis(30));
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        assert_eq!(round_trip(&mut stream, &big).await.expect("delayed echo"), big);
        proxy.set_delay(Duration::ZERO);

        proxy.cut();
        let mut rest = Vec::new();
        let after_cut = match stream.read_to_end(&mut rest).await {
            Ok(n) => n == 0,
            Err(_) => true,
        };
        assert!(after_cut, "the cut connection is closed");
        let mut fresh = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        assert_eq!(round_trip(&mut fresh, b"again").await.expect("echo"), b"again");
        assert_eq!(proxy.accepted(), 2);
    }
}
