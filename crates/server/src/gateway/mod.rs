//! The PostgreSQL gateway: one listener per postgres resource with `gateway: { listen }`.
//! A responder's client logs in with the grant's own credential ([`login`]); the gateway logs
//! in upstream as the grant's role and relays, writing every statement on record before it is
//! forwarded ([`relay`]), and closes the connection when the grant ends.
//!
//! Limits (an attacker may reach the listener before logging in): at most
//! [`MAX_CONNECTIONS`] connections per listener, [`MAX_LOGINS_PER_ADDRESS`] of them logging
//! in from one address, [`STARTUP_TIMEOUT`] to log in, at most
//! [`MAX_KEY_DERIVATIONS`] SCRAM key derivations at once, messages up to
//! [`MAX_MESSAGE`] bytes. Gateways are bound at start-up: a `gateway:` added or changed by a
//! policy reload takes effect at the next restart (the reload logs this).

mod login;
mod relay;

use crate::engine::Engine;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

pub const MAX_CONNECTIONS: usize = 256;
/// Connections one address may have between accept and login: a stranger flooding the
/// gateway from one address cannot take the slots responders need.
pub const MAX_LOGINS_PER_ADDRESS: usize = 16;
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
pub const MAX_KEY_DERIVATIONS: usize = 4;
pub const MAX_MESSAGE: u32 = 16 * 1024 * 1024;

/// A client or upstream byte stream (TCP, or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a cancel key the gateway handed out leads.
#[derive(Debug, Clone)]
pub(crate) struct CancelTarget {
    pub upstream: SocketAddr,
    pub pid: u32,
    pub secret: u32,
}

/// What all connections of all gateways share.
pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub cancels: Mutex<HashMap<(u32, u32), CancelTarget>>,
    pub derivations: Semaphore,
    /// Connections not yet logged in, per client address.
    pub logging_in: Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// A place among an address's connections that are logging in; given back when dropped.
pub(crate) struct LoginSlot {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
}

impl LoginSlot {
    fn take(shared: &Arc<Shared>, ip: std::net::IpAddr) -> Option<LoginSlot> {
        let mut m = shared.logging_in.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_LOGINS_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(LoginSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shared.logging_in.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Binds every gateway of the policy; each accept loop runs until `shutdown` turns true.
pub async fn start(
    engine: Arc<Engine>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<(String, SocketAddr, tokio::task::JoinHandle<()>)>, (SocketAddr, std::io::Error)> {
    let tls = tls.map(|c| {
        let mut c = (*c).clone();
        // libpq 17 offers ALPN "postgresql" and refuses any other answer.
        c.alpn_protocols = vec![b"postgresql".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(c))
    });
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        tls,
        cancels: Mutex::new(HashMap::new()),
        derivations: Semaphore::new(MAX_KEY_DERIVATIONS),
        logging_in: Mutex::new(HashMap::new()),
    });
    let mut out = Vec::new();
    for (resource, g) in engine.gateways() {
        let listener = tokio::net::TcpListener::bind(g.listen)
            .await
            .map_err(|e| (g.listen, e))?;
        let addr = listener.local_addr().map_err(|e| (g.listen, e))?;
        tracing::info!(%resource, %addr, "PostgreSQL gateway listening");
        let h = tokio::spawn(accept_loop(
            shared.clone(),
            resource.clone(),
            listener,
            shutdown.clone(),
        ));
        out.push((resource, addr, h));
    }
    Ok(out)
}

async fn accept_loop(
    shared: Arc<Shared>,
    resource: String,
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("gateway accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, %resource, "gateway connection refused: {MAX_CONNECTIONS} open");
            drop(tcp);
            continue;
        };
        let Some(slot) = LoginSlot::take(&shared, peer.ip()) else {
            tracing::warn!(%peer, %resource, "gateway connection refused: {MAX_LOGINS_PER_ADDRESS} logins in progress from this address");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let resource = resource.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            login::connection(shared, resource, tcp, peer, slot, shutdown).await;
            drop(permit);
        });
    }
}

/// Forwards a client's CancelRequest to the upstream backend its key stands for.
async fn cancel(shared: &Shared, pid: u32, secret: u32) {
    let target = shared
        .cancels
        .lock()
        .ok()
        .and_then(|m| m.get(&(pid, secret)).cloned());
    // An unknown key: nothing to say, as PostgreSQL says nothing.
    if let Some(t) = target {
        send_cancel(&t).await;
    }
}

/// Sends a CancelRequest for the backend `t` on a connection of its own.
pub(crate) async fn send_cancel(t: &CancelTarget) {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::new();
    breakglass_core::pgwire::encode::cancel_request(&mut out, t.pid, t.secret);
    if let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(t.upstream),
    )
    .await
    {
        let _ = s.write_all(&out).await;
        let _ = s.shutdown().await;
    }
}
