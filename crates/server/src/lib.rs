//! The breakglass server: HTTP API ([`api`]), the [`engine`] with every use case, the expiry
//! timer and checkpointer ([`tasks`]), audit export/verification over a store ([`audit`]) and
//! the data directory's keys ([`keys`]).
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod audit;
pub mod engine;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod report_render;
pub mod review;
pub mod secrets;
pub mod tasks;
pub mod text;

use engine::{Clock, Engine, EngineConfig, SystemClock};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub policy: PathBuf,
    /// Sign a checkpoint after this many new events…
    pub checkpoint_every_events: u64,
    /// …or this long after the first unsigned event.
    pub checkpoint_every: Duration,
    /// How often the policy file is checked for changes (SIGHUP reloads at once).
    pub policy_poll: Duration,
    pub engine: EngineConfig,
    pub alerts: alerts::AlertConfig,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often targets are swept for credentials no grant owns (also once at start-up).
    pub sweep_every: Duration,
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr, policy: PathBuf) -> Self {
        ServeConfig {
            data_dir,
            listen,
            policy,
            checkpoint_every_events: 1000,
            checkpoint_every: Duration::from_secs(10),
            policy_poll: Duration::from_secs(1),
            engine: EngineConfig::default(),
            alerts: alerts::AlertConfig::default(),
            tls: None,
            sweep_every: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error(
        "policy file {path}: {error}\nfix the file (check it with `breakglass policy check {path}`) and start again"
    )]
    Policy { path: String, error: String },
    #[error(
        "cannot listen on {addr}: {err} (is another server running there? pick another with --listen)"
    )]
    Listen {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "TLS: {0}\ngive a PEM certificate chain with --tls-cert and its private key with --tls-key"
    )]
    Tls(String),
    #[error(transparent)]
    Api(#[from] error::ApiError),
}

/// A running server.
pub struct Running {
    pub engine: Arc<Engine>,
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, writes a final checkpoint and waits for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for h in self.handles {
            let _ = h.await;
        }
    }
}

/// Opens the data dir, loads the policy, expires everything overdue, and starts serving.
/// Where the server records the path of the policy it serves (for commands run on its host).
pub const POLICY_PATH_META: &str = "policy_path";

pub async fn start(cfg: ServeConfig) -> Result<Running, ServeError> {
    start_with_clock(cfg, Arc::new(SystemClock)).await
}

pub async fn start_with_clock(
    cfg: ServeConfig,
    clock: Arc<dyn Clock>,
) -> Result<Running, ServeError> {
    let dir = keys::DataDir::new(&cfg.data_dir);
    let (store, keys) = keys::open(&dir).await?;
    let text = std::fs::read_to_string(&cfg.policy).map_err(|e| ServeError::Policy {
        path: cfg.policy.display().to_string(),
        error: e.to_string(),
    })?;
    let policy = engine::load_policy_text(&text, Some(cfg.policy.clone())).map_err(|error| {
        ServeError::Policy {
            path: cfg.policy.display().to_string(),
            error,
        }
    })?;
    let now = clock.now();
    let mut engine_cfg = cfg.engine.clone();
    engine_cfg.checkpoint_every_events = cfg.checkpoint_every_events;
    let sha = policy.sha256.clone();
    let engine = Arc::new(Engine::new(
        Arc::new(store),
        keys,
        policy,
        clock,
        engine_cfg,
    ));
    // Host-side commands (`admin user disable`) load the same policy as the server.
    let policy_path = std::fs::canonicalize(&cfg.policy).unwrap_or_else(|_| cfg.policy.clone());
    engine
        .commit(
            vec![breakglass_store::Change::PutMeta {
                key: POLICY_PATH_META.into(),
                value: policy_path.display().to_string().into_bytes(),
            }],
            vec![engine::event(
                now,
                "server.started",
                Some("system"),
                None,
                serde_json::json!({"policy_sha256": sha, "policy_path": cfg.policy.display().to_string(), "version": env!("CARGO_PKG_VERSION")}),
            )],
        )
        .await?;
    // Everything overdue ends now, before we accept a request.
    let n = engine.run_due().await?;
    if n > 0 {
        tracing::info!(count = n, "expired overdue grants at start-up");
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|err| ServeError::Listen {
            addr: cfg.listen,
            err,
        })?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut handles = vec![
        tokio::spawn(tasks::expiry_timer(engine.clone(), rx.clone())),
        tokio::spawn(tasks::checkpointer(
            engine.clone(),
            cfg.checkpoint_every_events,
            cfg.checkpoint_every,
            rx.clone(),
        )),
        tokio::spawn(alerts::dispatcher(
            engine.clone(),
            cfg.alerts.clone(),
            rx.clone(),
        )),
        tokio::spawn(tasks::revoker(engine.clone(), rx.clone())),
        tokio::spawn(tasks::sweeper(engine.clone(), cfg.sweep_every, rx.clone())),
        tokio::spawn(tasks::policy_watcher(
            engine.clone(),
            cfg.policy_poll,
            rx.clone(),
        )),
    ];
    let app = api::router(engine.clone());
    let mut srx = rx.clone();
    let acceptor = match &cfg.tls {
        Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(tls_config(cert, key)?)),
        None => None,
    };
    handles.push(tokio::spawn(async move {
        match acceptor {
            Some(acceptor) => serve_tls(listener, app, acceptor, srx).await,
            None => {
                let shutdown = async move {
                    let _ = srx.wait_for(|v| *v).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            }
        }
    }));
    Ok(Running {
        engine,
        addr,
        shutdown: tx,
        handles,
    })
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) from PEM files.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ServeError::Tls(format!(
                "cannot read certificates from {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        ServeError::Tls(format!(
            "cannot read the private key from {}: {e}",
            key.display()
        ))
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| {
        ServeError::Tls(format!(
            "certificate and key do not match or are unusable: {e}"
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections and serves the router on each until shutdown.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    acceptor: tokio_rustls::TlsAcceptor,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that never finishes the handshake is dropped after 10 s.
                    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
            _ = shutdown.wait_for(|v| *v) => return,
        }
    }
}
