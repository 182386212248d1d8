//! Audit streams: how fast a backlog drains to each kind of stream, and how long one committed
//! event takes to be delivered (cursor moved) when the stream is idle.

use crate::{POLICY, fixture_with, pct};
use anyhow::{Context, Result};
use breakglass_server::engine::{self, Engine};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A receiver that reads to the sender's end of stream, then closes (what the stream expects).
async fn receiver(tls: Option<tokio_rustls::TlsAcceptor>) -> Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(a) => {
                        if let Ok(s) = a.accept(s).await {
                            drain(s).await;
                        }
                    }
                    None => drain(s).await,
                }
            });
        }
    });
    Ok(port)
}

async fn drain<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    let _ = s.shutdown().await;
}

/// A throw-away CA and a 127.0.0.1 certificate (openssl), as the tests make them.
fn test_ca(dir: &Path) -> Result<()> {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    for args in [
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca -keyout ca.key -out ca.pem",
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr",
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem",
    ] {
        let o = std::process::Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .output()
            .context("openssl is needed for the TLS stream figure")?;
        anyhow::ensure!(
            o.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

fn acceptor(dir: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_file_iter(dir.join("cert.pem"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn head(engine: &Engine) -> Result<u64> {
    Ok(engine.store.audit_head().await?.map_or(0, |h| h.seq))
}

async fn position(engine: &Engine, name: &str) -> Result<u64> {
    Ok(engine.store.cursor(name).await?.map_or(0, |c| c.position))
}

pub async fn all(events: u64) -> Result<()> {
    let certs = tempfile::tempdir()?;
    test_ca(certs.path())?;
    let tls_port = receiver(Some(acceptor(certs.path())?)).await?;
    let tcp_port = receiver(None).await?;
    let files = tempfile::tempdir()?;
    let policy = format!(
        "{POLICY}streams:\n  - {{ name: tls, kind: syslog, host: 127.0.0.1, port: {tls_port}, ca_file: {} }}\n  - {{ name: tcp, kind: syslog, host: 127.0.0.1, port: {tcp_port}, tls: none }}\n  - {{ name: file, kind: jsonl, path: {}, max_size: 64MiB, keep: 3 }}\n",
        certs.path().join("ca.pem").display(),
        files.path().join("audit.jsonl").display()
    );
    let f = fixture_with(0, &policy).await?;
    let engine = f.engine.clone();
    // A backlog of typical events, written before the streams start.
    let mut written = 0u64;
    while written < events {
        let n = 10_000u64.min(events - written);
        let evs = (0..n)
            .map(|i| {
                breakglass_core::audit::NewEvent {
                    ts_ms: 1_700_000_000_000 + (written + i) as i64,
                    kind: "grant.requested".into(),
                    actor: Some("u1".into()),
                    grant_id: Some(format!("g-{:016x}", written + i)),
                    resource: Some("prod-db".into()),
                    data: serde_json::json!({"reason": "orders table locked, checkout down", "ticket": "INC-4711", "policy": "dba-emergency", "duration_secs": 1800}),
                }
            })
            .collect();
        engine.store.commit(vec![], evs).await?;
        written += n;
    }
    let target = head(&engine).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let task = tokio::spawn(breakglass_server::tasks::streams(engine.clone(), rx));
    let mut done: Vec<(&str, f64)> = Vec::new();
    while done.len() < 3 {
        for name in ["tls", "tcp", "file"] {
            if !done.iter().any(|(n, _)| *n == name) && position(&engine, name).await? >= target {
                done.push((name, t.elapsed().as_secs_f64()));
            }
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "streams did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (name, secs) in &done {
        println!(
            "audit stream backlog ({name}, {target} events, the three streams at once): {secs:.2} s = {:.0} events/s",
            target as f64 / secs
        );
    }
    // Idle streams: one event committed → each stream's cursor past it.
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for i in 0..200 {
        let t = Instant::now();
        let ev = engine::event(
            engine.now(),
            "bench.single",
            Some("u1"),
            None,
            serde_json::json!({"i": i}),
        );
        engine
            .commit(vec![], vec![ev])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let seq = head(&engine).await?;
        let mut left: Vec<usize> = vec![0, 1, 2];
        while !left.is_empty() {
            let mut still = Vec::new();
            for k in left {
                if position(&engine, ["tls", "tcp", "file"][k]).await? >= seq {
                    lat[k].push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    still.push(k);
                }
            }
            left = still;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (k, name) in ["tls", "tcp", "file"].iter().enumerate() {
        let l = &mut lat[k];
        l.sort_by(f64::total_cmp);
        println!(
            "audit stream latency ({name}, idle, commit → delivered and cursor moved), n={}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.len(),
            pct(l, 0.5),
            pct(l, 0.99),
            pct(l, 1.0)
        );
    }
    let _ = tx.send(true);
    let _ = task.await;
    Ok(())
}
