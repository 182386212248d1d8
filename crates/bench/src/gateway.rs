//! The PostgreSQL gateway's cost, one run, the same PostgreSQL for both sides: pgbench
//! (select-only and simple-update, 4 clients, simple protocol) straight to PostgreSQL and through
//! the gateway with a grant's URL. Prints TPS and the ratio, latency p50/p99 from pgbench's
//! per-transaction log and the latency the gateway adds, and statements recorded per second.

use crate::targets::{code, input, who};
use crate::{fixture_with, pct};
use anyhow::{Context, Result, anyhow, ensure};
use std::path::Path;

struct Run {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn pgbench(
    pg: &breakglass_testkit::pg::Pg,
    url: &str,
    script: &str,
    secs: u64,
    dir: &Path,
) -> Result<Run> {
    for f in std::fs::read_dir(dir)? {
        std::fs::remove_file(f?.path())?;
    }
    let prefix = dir.join("tx");
    let out = std::process::Command::new(pg.program("pgbench"))
        .args([
            "-n", "-c", "4", "-j", "2", "-M", "simple", "-b", script, "-T",
        ])
        .arg(secs.to_string())
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "pgbench {script}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .context("pgbench printed no tps")?;
    let mut lat = Vec::new();
    for f in std::fs::read_dir(dir)? {
        for line in std::fs::read_to_string(f?.path())?.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<f64>().ok())
            {
                lat.push(us / 1000.0);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok(Run {
        tps,
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
    })
}

/// The machine's limit for what the write-ahead needs: durable writes per second where the
/// breakglass data directory lives (pg_test_fsync, one 8 kB write + fdatasync).
fn fsync_limit(pg: &breakglass_testkit::pg::Pg) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(pg.program("pg_test_fsync"))
        .args(["-s", "2", "-f"])
        .arg(dir.path().join("fsync.test"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("fdatasync"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "pg_test_fsync printed no fdatasync line".into());
    Ok(format!(
        "gateway: this machine's durable-write limit in {} ({line}): each statement written ahead waits for one",
        std::env::temp_dir().display()
    ))
}

pub async fn gateway(secs: u64) -> Result<()> {
    // A database that makes its commits durable, as a production one does (the test kit's
    // default is fsync=off).
    let pg = breakglass_testkit::pg::Pg::start_with(&["max_connections=100", "fsync=on"]);
    println!("{}", fsync_limit(&pg)?);
    let admin = pg.admin_url();
    let init = std::process::Command::new(pg.program("pgbench"))
        .args(["-i", "-q", "-s", "1"])
        .arg(&admin)
        .output()?;
    ensure!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    pg.sql(
        "CREATE ROLE app_admin NOLOGIN; \
         GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO app_admin",
    );
    let url_file = tempfile::NamedTempFile::new()?;
    std::fs::write(url_file.path(), &admin)?;
    let gw_port = breakglass_testkit::free_port();
    let off_port = breakglass_testkit::free_port();
    let policy = format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: prod-db
    kind: postgres
    admin_url_file: {}
    grant_roles: [app_admin]
    connection_limit: 8
    gateway: {{ listen: "127.0.0.1:{gw_port}" }}
  - name: prod-db-unrecorded
    kind: postgres
    admin_url_file: {}
    grant_roles: [app_admin]
    connection_limit: 8
    recording: off
    gateway: {{ listen: "127.0.0.1:{off_port}" }}
policies:
  - name: dba-emergency
    resources: [prod-db, prod-db-unrecorded]
    who: {{ groups: [oncall] }}
    require: {{ mfa: true }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
"#,
        url_file.path().display(),
        url_file.path().display()
    );
    let f = fixture_with(2, &policy).await?;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let _gateways = breakglass_server::gateway::start(f.engine.clone(), None, rx)
        .await
        .map_err(|(a, e)| anyhow!("gateway on {a}: {e}"))?;
    let g = f
        .engine
        .request(&who(0), input("prod-db", &code(&f), "30m", None))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let url = |g: &breakglass_server::engine::GrantView| -> Result<String> {
        Ok(g.credential
            .as_ref()
            .and_then(|c| c["url"].as_str())
            .context("url")?
            .to_string())
    };
    let via = url(&g)?;
    let role = g
        .credential
        .as_ref()
        .and_then(|c| c["user"].as_str())
        .context("user")?
        .to_string();
    let g2 = f
        .engine
        .request(&who(1), input("prod-db-unrecorded", &code(&f), "30m", None))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let via_off = url(&g2)?;
    // The write-ahead on its own: one small chunk committed (with its audit event) per
    // statement, by 1 and by 4 writers at once — what each statement through the gateway waits for.
    for writers in [1usize, 4] {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let engine = f.engine.clone();
            let role = role.clone();
            let gg = engine
                .gateway_grant(&role, "prod-db")
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let session = engine
                .gateway_open(&gg, "postgres", "127.0.0.1:1".parse()?)
                .await
                .map_err(|e| anyhow!("{e}"))?
                .context("a recorded session")?;
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for seq in 0..500u64 {
                    let mut chunk = Vec::new();
                    let json = format!(
                        "{{\"msg\":\"query\",\"text\":\"SELECT {w} {seq}\",\"redacted\":false}}"
                    );
                    breakglass_core::recording::encode_record(
                        &mut chunk,
                        breakglass_core::recording::Kind::SqlSent,
                        0,
                        json.as_bytes(),
                    );
                    let t = std::time::Instant::now();
                    engine
                        .gateway_chunk(&gg.info, &session, seq, chunk)
                        .await
                        .map_err(|e| anyhow!("{e}"))?;
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, anyhow::Error>(lat)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "gateway write-ahead alone, {writers} writer(s) × 500 chunks: commit p50 {:.3} ms, p99 {:.3} ms",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }
    let dir = tempfile::tempdir()?;
    let before = f.engine.metrics.recorded_chunks.get();
    let mut statements = 0.0;
    let mut gateway_secs = 0.0;
    for (script, per_tx) in [("select-only", 1.0), ("simple-update", 7.0)] {
        let direct = pgbench(&pg, &admin, script, secs, dir.path())?;
        let through = pgbench(&pg, &via, script, secs, dir.path())?;
        let relay = pgbench(&pg, &via_off, script, secs, dir.path())?;
        println!(
            "gateway pgbench {script}, relay only (recording: off): {:.0} tps, ratio {:.2}; p50 {:.3} ms, p99 {:.3} ms",
            relay.tps,
            relay.tps / direct.tps,
            relay.p50_ms,
            relay.p99_ms
        );
        statements += through.tps * per_tx * secs as f64;
        gateway_secs += secs as f64;
        println!(
            "gateway pgbench {script} (4 clients, {secs} s each): direct {:.0} tps, via gateway {:.0} tps, ratio {:.2} (goal ≥ 0.8); latency p50 {:.3} → {:.3} ms (+{:.3}), p99 {:.3} → {:.3} ms (+{:.3}, goal ≤ 1 ms)",
            direct.tps,
            through.tps,
            through.tps / direct.tps,
            direct.p50_ms,
            through.p50_ms,
            through.p50_ms - direct.p50_ms,
            direct.p99_ms,
            through.p99_ms,
            through.p99_ms - direct.p99_ms,
        );
    }
    let chunks = f.engine.metrics.recorded_chunks.get() - before;
    println!(
        "gateway statements recorded: {:.0}/s ({} chunks committed, each before its statements ran)",
        statements / gateway_secs,
        chunks
    );
    Ok(())
}
