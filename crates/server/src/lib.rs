//! The breakglass server: HTTP API ([`api`]), the [`engine`] with every use case, the expiry
//! timer and checkpointer ([`tasks`]), audit export/verification over a store ([`audit`]) and
//! the data directory's keys ([`keys`]).
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod audit;
pub mod backoff;
pub mod clock;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod hash_pool;
pub mod keys;
pub mod login_throttle;
pub mod metrics;
pub mod net;
pub mod report_render;
pub mod stream;
pub mod tasks;
pub mod text;
pub mod web;

use engine::{Clock, Engine, EngineConfig, SystemClock};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// The PostgreSQL store's URL (None: as the data directory records, else SQLite).
    pub database: Option<String>,
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
    /// Header timeout and connection limit (both listeners).
    pub net: net::NetConfig,
    /// `/metrics` needs `Authorization: Bearer <the token in this file>`.
    pub metrics_token_file: Option<PathBuf>,
    /// Serve `/metrics` on this address only (not on `listen`).
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr, policy: PathBuf) -> Self {
        ServeConfig {
            data_dir,
            database: None,
            listen,
            policy,
            checkpoint_every_events: 1000,
            checkpoint_every: Duration::from_secs(10),
            policy_poll: Duration::from_secs(1),
            engine: EngineConfig::default(),
            alerts: alerts::AlertConfig::default(),
            tls: None,
            sweep_every: Duration::from_secs(60),
            net: net::NetConfig::default(),
            metrics_token_file: None,
            metrics_listen: None,
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
    #[error("{0}")]
    Config(String),
}

/// A running server.
pub struct Running {
    pub engine: Arc<Engine>,
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `metrics_listen` was given.
    pub metrics_addr: Option<SocketAddr>,
    /// The PostgreSQL gateways listening (resource, address).
    pub gateways: Vec<(String, SocketAddr)>,
    shutdown: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    /// The streams and witness stop last: the witness copies the final checkpoint first.
    streams_shutdown: tokio::sync::watch::Sender<bool>,
    streams: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, writes a final checkpoint, copies it to the witness (for a few
    /// seconds at most) and waits for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for h in self.handles {
            let _ = h.await;
        }
        let _ = self.streams_shutdown.send(true);
        let _ = self.streams.await;
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
    let metrics_access = match &cfg.metrics_token_file {
        Some(path) => api::MetricsAccess::token_from_file(path).map_err(ServeError::Config)?,
        None => api::MetricsAccess::Public,
    };
    let dir = keys::DataDir::new(&cfg.data_dir).with_database(cfg.database.clone());
    let (store, keys) = keys::open(&dir).await?;
    // Several nodes on one database: the database's clock decides every deadline and lease.
    let db_clock = match store.backend() {
        "sqlite" => None,
        _ => {
            let c = Arc::new(clock::DbClock::new(clock.clone()));
            let mut measured = None;
            for _ in 0..5 {
                measured = c.sync(store.as_ref()).await.map_err(keys::KeyError::from)?;
                if measured.is_some() {
                    break;
                }
            }
            if let Some(offset) = measured {
                tracing::info!(offset_ms = offset, "on the database's clock");
            }
            Some(c)
        }
    };
    let clock: Arc<dyn Clock> = match &db_clock {
        Some(c) => c.clone(),
        None => clock,
    };
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
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|err| ServeError::Listen {
            addr: cfg.listen,
            err,
        })?;
    let addr = listener.local_addr()?;
    let now = clock.now();
    let mut engine_cfg = cfg.engine.clone();
    engine_cfg.checkpoint_every_events = cfg.checkpoint_every_events;
    if engine_cfg.recorder_url.is_none() {
        // Session recorders on SSH hosts stream here: the public URL, else where we listen.
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        engine_cfg.recorder_url = Some(
            engine_cfg
                .public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}")),
        );
    }
    let sha = policy.sha256.clone();
    let engine = Arc::new(Engine::new(store, keys, policy, clock, engine_cfg));
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
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (streams_tx, streams_rx) = tokio::sync::watch::channel(false);
    let streams = tokio::spawn(tasks::streams(engine.clone(), streams_rx));
    let mut handles = vec![
        tokio::spawn(tasks::expiry_timer(engine.clone(), rx.clone())),
        tokio::spawn(tasks::checkpointer(
            engine.clone(),
            cfg.checkpoint_every_events,
            cfg.checkpoint_every,
            rx.clone(),
        )),
        tokio::spawn(tasks::dispatcher(
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
        tokio::spawn(tasks::drill_scheduler(engine.clone(), rx.clone())),
    ];
    if let Some(c) = db_clock {
        engine.metrics.clock_offset(c.offset_ms());
        handles.push(tokio::spawn(tasks::clock_sync(
            engine.clone(),
            c,
            rx.clone(),
        )));
    }
    tasks::seed_drill_metrics(&engine).await;
    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|err| ServeError::Listen { addr, err })?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let app = match metrics_listener {
        Some(l) => {
            let metrics_app = api::metrics_router(engine.clone(), metrics_access);
            handles.push(tokio::spawn(net::serve(
                l,
                metrics_app,
                None,
                cfg.net.clone(),
                rx.clone(),
            )));
            api::router_with(engine.clone(), None)
        }
        None => api::router_with(engine.clone(), Some(metrics_access)),
    };
    // The web UI beside the API (its routes live under `/`, the API's under `/api/v1`).
    let app = app.merge(web::router(
        engine.clone(),
        web::WebConfig {
            tls: cfg.tls.is_some(),
        },
    ));
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(tls_config(cert, key)?),
        None => None,
    };
    let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let gateways = gateway::start(engine.clone(), tls, rx.clone())
        .await
        .map_err(|(addr, err)| ServeError::Listen { addr, err })?;
    let gateway_addrs = gateways.iter().map(|(r, a, _)| (r.clone(), *a)).collect();
    handles.extend(gateways.into_iter().map(|(_, _, h)| h));
    handles.push(tokio::spawn(net::serve(
        listener,
        app,
        acceptor,
        cfg.net.clone(),
        rx.clone(),
    )));
    Ok(Running {
        engine,
        addr,
        metrics_addr,
        gateways: gateway_addrs,
        shutdown: tx,
        handles,
        streams_shutdown: streams_tx,
        streams,
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
