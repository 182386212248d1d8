//! `breakglass serve`: the server, until SIGINT or SIGTERM.

use crate::args::{Cli, Cmd};
use anyhow::{Context, Result, bail};
use breakglass_core::duration;

pub(super) async fn serve(cli: &Cli) -> Result<()> {
    // The variant has too many fields to pass one by one; run() only calls this for it.
    let Cmd::Serve {
        data_dir,
        database,
        listen,
        policy,
        checkpoint_events,
        checkpoint_every,
        mfa_max_failures,
        mfa_lockout,
        alert_retries,
        alert_backoff,
        alert_lease,
        tls_cert,
        tls_key,
        public_url,
        sweep_every,
        header_timeout,
        max_connections,
        metrics_token_file,
        metrics_listen,
        trust_proxy,
    } = &cli.cmd
    else {
        unreachable!("serve() is called for `breakglass serve` only")
    };
    let mut cfg = breakglass_server::ServeConfig::new(data_dir.clone(), *listen, policy.clone());
    cfg.database = database.clone();
    cfg.checkpoint_every_events = (*checkpoint_events).max(1);
    cfg.checkpoint_every = duration::parse(checkpoint_every).context("--checkpoint-every")?;
    cfg.engine.mfa.max_failures = (*mfa_max_failures).max(1);
    cfg.engine.mfa.lockout = duration::parse(mfa_lockout).context("--mfa-lockout")?;
    cfg.alerts.max_attempts = (*alert_retries).max(1);
    cfg.alerts.base_backoff = duration::parse(alert_backoff).context("--alert-backoff")?;
    cfg.alerts.lease = duration::parse(alert_lease).context("--alert-lease")?;
    cfg.sweep_every = duration::parse(sweep_every).context("--sweep-every")?;
    cfg.tls = tls_cert.clone().zip(tls_key.clone());
    cfg.engine.public_url = public_url.clone();
    cfg.net.header_timeout = duration::parse(header_timeout).context("--header-timeout")?;
    if cfg.net.header_timeout.is_zero() {
        bail!("--header-timeout must be more than 0 (e.g. 10s)");
    }
    if *max_connections == 0 {
        bail!("--max-connections must be at least 1 (e.g. 1024)");
    }
    cfg.net.max_connections = *max_connections;
    cfg.net.trusted_proxies = trust_proxy.clone();
    cfg.metrics_token_file = metrics_token_file.clone();
    cfg.metrics_listen = *metrics_listen;
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    // Before anything says we listen: SIGTERM or SIGINT from then on stops cleanly (with the
    // final checkpoint, copied to the witness).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let running = breakglass_server::start(cfg).await?;
    let addr = running.addr;
    for (resource, a) in &running.gateways {
        eprintln!("breakglass PostgreSQL gateway for {resource} on {a} (every statement recorded)");
    }
    if let Some(m) = running.metrics_addr {
        eprintln!("breakglass metrics on http://{m}/metrics");
    }
    let p = running.engine.policy();
    let resources: Vec<String> = p.set.resources.iter().map(|r| r.name.clone()).collect();
    eprintln!(
        "breakglass listening on {scheme}://{addr}  (policy {} sha256 {:.12}; resources: {})",
        policy.display(),
        p.sha256,
        resources.join(", "),
    );
    // A fresh store: say how to add the first user, with commands that work as printed from
    // any shell on this host (this binary's and the data directory's absolute paths).
    if running
        .engine
        .store
        .users()
        .await
        .is_ok_and(|u| u.is_empty())
    {
        let prog = this_program();
        let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.clone());
        eprintln!(
            "no users yet; add one on this host, then log in (anywhere):\n  \
             echo 'PASSWORD' | {prog} admin user add NAME --group GROUP --password-stdin --data-dir {}\n  \
             echo 'PASSWORD' | {prog} login --server {scheme}://{addr} --user NAME --password-stdin",
            super::common::shell_quote(&dir.display().to_string()),
        );
    }
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("shutting down: writing a final audit checkpoint");
    running.shutdown().await;
    Ok(())
}

/// This binary as another shell on this host can run it: `breakglass` when it was found on
/// PATH, else its absolute path.
fn this_program() -> String {
    let a0 = std::env::args_os().next().unwrap_or_default();
    if !a0.to_string_lossy().contains('/') && !a0.is_empty() {
        return super::common::program();
    }
    match std::env::current_exe() {
        Ok(p) => super::common::shell_quote(&p.display().to_string()),
        Err(_) => super::common::program(),
    }
}
