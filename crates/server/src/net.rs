//! The accept loop, for plain HTTP and HTTPS alike (hyper-util's connection builder; axum's own
//! `serve` cannot bound header reads). What it guarantees against clients that may be hostile:
//!
//! - **Header timeout**: a request's head must arrive within `header_timeout` (default 10 s),
//!   and an idle keep-alive connection is closed after the same time (hyper starts the timer
//!   whenever the connection waits for a request head). The TLS handshake has the same bound.
//! - **Connection limit**: at most `max_connections` connections (default 1024) are served at
//!   once. Beyond it a new connection is closed at once, without reading from it (the choice: a
//!   refused client learns immediately and retries, and a flood holds no memory here). The
//!   refusals are logged once per streak, with their count when accepting resumes.
//! - **Accept errors** (e.g. out of file descriptors) back off (10 ms doubling to 1 s) instead
//!   of spinning, logged once per streak.
//! - **Graceful shutdown**: on shutdown the listener closes, open connections finish their
//!   current request (idle ones close at once), and after `SHUTDOWN_GRACE` the rest are dropped.
//!
//! HTTP/1.1 only (as before: the router was built without HTTP/2). The TCP peer address is
//! handed to handlers as axum's `ConnectInfo<SocketAddr>`; [`client_ip`] believes
//! X-Forwarded-For only from `--trust-proxy` addresses.

use crate::backoff::Backoff;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tower::Layer;

/// How long shutdown waits for open connections before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Connection limits (`serve --header-timeout`, `--max-connections`).
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Reverse proxies whose X-Forwarded-For is believed (`serve --trust-proxy`); empty: none.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cfg: NetConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let mut accept_errors = Backoff::new(
        "accepting connections",
        Duration::from_millis(10),
        Duration::from_secs(1),
    );
    let mut refused: u64 = 0;
    let proxies = TrustedProxies(Arc::new(cfg.trusted_proxies.clone()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|v| *v) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => {
                accept_errors.succeeded();
                x
            }
            Err(e) => {
                let wait = accept_errors.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|v| *v) => break,
                }
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused == 1 {
                tracing::warn!(
                    limit = cfg.max_connections,
                    "connection limit reached: closing new connections until some end (raise --max-connections if this is legitimate load)"
                );
            }
            drop(tcp);
            continue;
        };
        if refused > 0 {
            tracing::info!(refused, "accepting connections again");
            refused = 0;
        }
        let service = axum::Extension(ConnectInfo(peer)).layer(app.clone());
        let service = TowerToHyperService::new(axum::Extension(proxies.clone()).layer(service));
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let handshake_timeout = cfg.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            match tls {
                Some(acceptor) => {
                    // A client that never finishes the handshake is dropped.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after shutdown began: dropping them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

#[derive(Clone)]
struct TrustedProxies(Arc<Vec<IpAddr>>);

/// The peer address a connection came from, when served by [`serve`] (`None` in-process).
pub fn peer(ext: &axum::http::Extensions) -> Option<SocketAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the rightmost
/// X-Forwarded-For entry that is not itself a trusted proxy (entries further left were written
/// by the client and prove nothing). `None` in-process.
pub fn client_ip(parts: &axum::http::request::Parts) -> Option<IpAddr> {
    let peer = peer(&parts.extensions)?.ip();
    let Some(TrustedProxies(trusted)) = parts.extensions.get::<TrustedProxies>() else {
        return Some(peer);
    };
    forwarded_client(peer, trusted, &parts.headers)
}

fn forwarded_client(
    peer: IpAddr,
    trusted: &[IpAddr],
    headers: &axum::http::HeaderMap,
) -> Option<IpAddr> {
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return Some(ip),
            // Unparsable: stop at the last proxy we trust.
            Err(_) => return Some(client),
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let inner: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = [proxy, inner];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let other = ip("192.0.2.7");
        // Not from a proxy: the header is ignored.
        assert_eq!(
            forwarded_client(other, &trusted, &xff(&["1.2.3.4"])),
            Some(other)
        );
        // From a proxy: the rightmost untrusted hop; a client's forged entries on the left lose.
        assert_eq!(
            forwarded_client(proxy, &trusted, &xff(&["6.6.6.6, 203.0.113.9"])),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            forwarded_client(proxy, &trusted, &xff(&["203.0.113.9", "10.0.0.2"])),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(forwarded_client(proxy, &trusted, &xff(&[])), Some(proxy));
        assert_eq!(
            forwarded_client(proxy, &trusted, &xff(&["junk, 10.0.0.2"])),
            Some(inner)
        );
    }
}
