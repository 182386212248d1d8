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
pub mod review;
pub mod tasks;

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
    engine
        .commit(
            vec![],
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
        tokio::spawn(tasks::policy_watcher(
            engine.clone(),
            cfg.policy_poll,
            rx.clone(),
        )),
    ];
    let app = api::router(engine.clone());
    let mut srx = rx.clone();
    handles.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = srx.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }));
    Ok(Running {
        engine,
        addr,
        shutdown: tx,
        handles,
    })
}
