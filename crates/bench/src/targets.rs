//! Figures at real targets: SSH certificates (and sessions ended by a real sshd +
//! `breakglass session`) and PostgreSQL roles on a real server (breakglass-testkit).

use crate::{Fixture, fixture_with, pct};
use anyhow::{Context, Result, anyhow, ensure};
use breakglass_core::mfa;
use breakglass_server::engine::{Clock, Principal, RequestInput, SystemClock};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn who(i: usize) -> Principal {
    Principal {
        name: format!("u{i}"),
        groups: vec!["oncall".into()],
    }
}

pub(crate) fn input(resource: &str, code: &str, dur: &str, key: Option<&str>) -> RequestInput {
    RequestInput {
        resource: resource.into(),
        reason: "orders table locked, checkout down".into(),
        ticket: Some("INC-4711".into()),
        duration: Some(dur.into()),
        otp: Some(code.into()),
        ssh_public_key: key.map(String::from),
    }
}

pub(crate) fn code(f: &Fixture) -> String {
    mfa::code_for_step(&f.secret, mfa::step_at(SystemClock.now()))
}

pub(crate) fn summary(what: &str, mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{what}, n={}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.99),
        pct(&v, 1.0)
    )
}

fn ssh_policy(principal: &str, extra: &str) -> String {
    format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: bastion
    kind: ssh
    principals: [{principal}]
    recording: off   # these figures are for the certificate path; see recording.rs
{extra}
policies:
  - name: ssh-emergency
    resources: [bastion]
    who: {{ groups: [oncall] }}
    require: {{ mfa: true, ticket: "^INC-[0-9]+$", min_reason: 15 }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
"#
    )
}

/// The `breakglass` binary beside this one (it runs the sessions on the SSH host).
pub(crate) fn session_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(|d| d.join("breakglass"))
        .filter(|p| p.exists())
        .context("build the binary first: cargo build --release (target/release/breakglass runs the sessions)")
}

pub(crate) fn user_key(dir: &Path) -> Result<(PathBuf, String)> {
    let key = dir.join("id_ed25519");
    breakglass_testkit::sshd::keygen(&key);
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub"))?;
    Ok((key, public.trim().to_string()))
}

/// Milliseconds each of `n` sequential requests on `resource` took (users 0..n), each answered
/// with a credential.
async fn time_requests(
    f: &Fixture,
    n: usize,
    resource: &str,
    code: &str,
    ssh_key: Option<&str>,
) -> Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let g = f
            .engine
            .request(&who(i), input(resource, code, "30m", ssh_key))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            g.credential.is_some(),
            "{resource}: no credential in the answer"
        );
    }
    Ok(lat)
}

/// Server-side time to an SSH certificate: the whole request (policy, TOTP, certificate signed,
/// grant + audit committed durably) and the signing alone.
pub async fn ssh_time_to_credential(n: usize) -> Result<()> {
    let f = fixture_with(n, &ssh_policy("root", "")).await?;
    let (_, public) = user_key(f.dir.path())?;
    let code = code(&f);
    let lat = time_requests(&f, n, "bastion", &code, Some(&public)).await?;
    println!(
        "{}",
        summary(
            "ssh time-to-credential (request → certificate signed, grant + audit committed)",
            lat
        )
    );
    let policy = f.engine.policy();
    let r = policy.set.resource("bastion").context("bastion")?;
    let c = f.engine.connector(r).await?.context("connector")?;
    let g = f
        .engine
        .store
        .grants(&breakglass_store::GrantFilter {
            user: None,
            states: vec!["active".into()],
            limit: 1,
        })
        .await?;
    let info = g.first().context("a grant")?.info().clone();
    let mut sign = Vec::with_capacity(n);
    for _ in 0..n {
        let now = SystemClock.now();
        let t = Instant::now();
        c.issue(&breakglass_connectors::IssueRequest {
            gateway: None,
            grant: &info,
            now,
            expires_at: now.plus(Duration::from_secs(1800)),
            ssh_public_key: Some(&public),
            recorder: None,
        })
        .await?;
        sign.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{}",
        summary("ssh certificate signing alone (connector.issue)", sign)
    );
    Ok(())
}

/// PostgreSQL: time to a role, and revocation lag at the target (deadline → live backend
/// killed, then login refused) over `lag_n` grants whose deadlines fall in the same 5 seconds.
pub async fn postgres(n: usize, lag_n: usize) -> Result<()> {
    let pg = breakglass_testkit::pg::Pg::start_with(&["max_connections=400"]);
    pg.sql("CREATE ROLE app_admin NOLOGIN; CREATE TABLE orders(id int); GRANT ALL ON orders TO app_admin");
    let url_file = tempfile::NamedTempFile::new()?;
    std::fs::write(url_file.path(), pg.admin_url())?;
    let policy = format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: prod-db
    kind: postgres
    admin_url_file: {}
    grant_roles: [app_admin]
    connection_limit: 2
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: {{ groups: [oncall] }}
    require: {{ mfa: true, ticket: "^INC-[0-9]+$", min_reason: 15 }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
"#,
        url_file.path().display()
    );
    let f = fixture_with(n + lag_n, &policy).await?;
    let code = code(&f);
    let lat = time_requests(&f, n, "prod-db", &code, None).await?;
    println!(
        "{}",
        summary(
            "postgres time-to-credential (request → role created, grant + audit committed)",
            lat
        )
    );
    // Clean slate: end those grants (their roles are dropped by the revoker below).
    let (tx, rx) = tokio::sync::watch::channel(false);
    let timer = tokio::spawn(breakglass_server::tasks::expiry_timer(
        f.engine.clone(),
        rx.clone(),
    ));
    let revoker = tokio::spawn(breakglass_server::tasks::revoker(f.engine.clone(), rx));
    // Live connections for grants expiring over 5 seconds (20 per second).
    let mut live = Vec::new();
    for i in 0..lag_n {
        let dur = format!("{}s", 4 + i % 5);
        let g = f
            .engine
            .request(&who(n + i), input("prod-db", &code, &dur, None))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let url = g
            .credential
            .as_ref()
            .and_then(|c| c["url"].as_str())
            .context("url")?
            .to_string();
        let expires = g.expires_at_ms.context("expiry")?;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        live.push(tokio::spawn(async move {
            let r = sqlx::query("SELECT pg_sleep(600)").execute(&mut conn).await;
            let killed = now_ms();
            ensure!(r.is_err(), "a live backend outlived its grant");
            // Login must be refused from now on.
            ensure!(
                sqlx::PgConnection::connect(&url).await.is_err(),
                "login still works after expiry"
            );
            Ok::<_, anyhow::Error>((killed - expires) as f64)
        }));
    }
    let mut lags = Vec::new();
    for t in live {
        lags.push(t.await??);
    }
    println!(
        "{}",
        summary(
            "postgres revocation lag (deadline → live backend killed; login refused afterwards), 20 deadlines/s",
            lags
        )
    );
    let _ = tx.send(true);
    let _ = timer.await;
    let _ = revoker.await;
    Ok(())
}

/// SSH: deadline (certificate valid-before) → ssh session closed by `breakglass session` under
/// a real sshd, over `n` live sessions ending within 5 seconds.
pub async fn ssh_session_end(n: usize) -> Result<()> {
    let bin = session_binary()?;
    let tmp = tempfile::tempdir()?;
    let krl = tmp.path().join("revoked.krl");
    let user = breakglass_testkit::whoami();
    let port = breakglass_testkit::free_port();
    let extra = format!(
        "    session_command: {}\n    host_krl: {}\n",
        bin.display(),
        krl.display()
    );
    let f = fixture_with(n, &ssh_policy(&user, &extra)).await?;
    std::fs::write(&krl, f.engine.ssh_krl().await.map_err(|e| anyhow!("{e}"))?)?;
    let sshd = breakglass_testkit::sshd::Sshd::start(
        tmp.path(),
        &f.engine.keys.ssh_ca.public_line(),
        &krl,
        port,
    );
    let (key, public) = user_key(tmp.path())?;
    let mut sessions = Vec::new();
    for i in 0..n {
        // Sessions are opened one after another (the login shell's rc files may take a lock), all
        // live at once when their deadlines come.
        let dur = format!("{}s", 10 + i % 5);
        let g = f
            .engine
            .request(&who(i), input("bastion", &code(&f), &dur, Some(&public)))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let cred = g.credential.context("certificate")?;
        let cert = tmp.path().join(format!("c{i}-cert.pub"));
        std::fs::write(&cert, cred["certificate"].as_str().unwrap_or(""))?;
        let k = tmp.path().join(format!("c{i}"));
        std::fs::copy(&key, &k)?;
        let valid_before = g.expires_at_ms.context("expiry")? / 1000 * 1000;
        let mut cmd =
            tokio::process::Command::from(sshd.ssh_cmd(&k, &user, "echo open; sleep 600"));
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = lines.next_line().await?;
        let opened = now_ms();
        sessions.push(tokio::spawn(async move {
            if first.as_deref() != Some("open") || opened >= valid_before {
                let out = child.wait_with_output().await?;
                anyhow::bail!(
                    "a session did not open before its deadline ({first:?} at {} ms to the deadline): {}",
                    valid_before - opened,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            while lines.next_line().await?.is_some() {}
            child.wait().await?;
            Ok::<_, anyhow::Error>((now_ms() - valid_before) as f64)
        }));
    }
    let mut lags = Vec::new();
    for s in sessions {
        lags.push(s.await??);
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("session end lags (ms, in request order): {lags:?}");
    }
    ensure!(
        lags.iter().all(|l| *l >= 0.0),
        "a session ended before its deadline (or never opened)"
    );
    println!(
        "{}",
        summary(
            "ssh session end lag (certificate valid-before → ssh client exits, real sshd + breakglass session)",
            lags
        )
    );
    Ok(())
}
