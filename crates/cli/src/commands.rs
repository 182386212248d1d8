//! What each subcommand does.

use crate::client::{self, Client, DEFAULT_SERVER, Problem, SavedSession};
use crate::{
    AdminCmd, AlertsCmd, AuditCmd, Cli, Cmd, MfaCmd, PolicyCmd, ReviewCmd, TotpCmd, UserCmd,
};
use crate::{SecretCmd, SshCmd};
use anyhow::{Context, Result, anyhow, bail};
use breakglass_core::audit::NewEvent;
use breakglass_core::{duration, time::Timestamp};
use breakglass_server::engine::{self, Clock, SystemClock};
use breakglass_server::keys::{self, DataDir};
use breakglass_store::prelude::*;
use breakglass_store::{Change, User};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

pub fn print_error(e: &anyhow::Error, json_out: bool) {
    if let Some(p) = e.downcast_ref::<Problem>() {
        if json_out {
            println!("{}", json!({"error": p}));
        } else {
            eprintln!("error: {p}");
        }
        return;
    }
    if json_out {
        println!("{}", json!({"error": {"detail": format!("{e:#}")}}));
    } else {
        eprintln!("error: {e:#}");
    }
}

fn out(json_out: bool, v: &Value, human: impl FnOnce() -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", human());
    }
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn read_stdin_line(what: &str) -> Result<zeroize::Zeroizing<String>> {
    let mut s = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut s)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let trimmed = zeroize::Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_string());
    if trimmed.is_empty() {
        bail!("empty {what} on standard input");
    }
    Ok(trimmed)
}

/// The OTP to send: the flag, or a prompt when on a terminal.
fn prompt_otp(purpose: &str) -> Result<Option<String>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    eprint!("one-time code for {purpose}: ");
    std::io::stderr().flush()?;
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(Some(s.trim().to_string()))
}

fn client(cli: &Cli) -> Result<Client> {
    let session = client::load_session()?;
    let server = cli
        .server
        .clone()
        .or_else(|| session.as_ref().map(|s| s.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let token = session.filter(|s| s.server == server).map(|s| s.token);
    Client::new(&server, token, cli.ca_file.as_deref())
}

fn authed(cli: &Cli) -> Result<Client> {
    let c = client(cli)?;
    if c.token.is_none() {
        bail!(
            "not logged in to {}: run `breakglass login --user NAME --password-stdin`",
            c.base
        );
    }
    Ok(c)
}

/// Calls `f` with the given OTP; if the server says MFA is required and we are on a terminal,
/// prompts for a code and tries once more.
async fn with_otp<F, Fut>(otp: Option<String>, purpose: &str, f: F) -> Result<Value>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    match f(otp.clone()).await {
        Err(e)
            if otp.is_none()
                && e.downcast_ref::<Problem>()
                    .is_some_and(|p| p.slug() == "mfa-required") =>
        {
            match prompt_otp(purpose)? {
                Some(code) => f(Some(code)).await,
                None => Err(e),
            }
        }
        r => r,
    }
}

fn fmt_remaining(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m{:02}s", secs / 3600, (secs / 60) % 60, secs % 60)
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

fn grant_line(g: &Value) -> String {
    let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let state = s("state");
    let mut line = format!(
        "{}  {:<10} {:<16} {:<10} {}",
        s("id"),
        state,
        s("resource"),
        s("user"),
        s("ticket")
    );
    match state.as_str() {
        "active" => {
            let rem = g.get("remaining_secs").and_then(Value::as_u64).unwrap_or(0);
            line.push_str(&format!(
                "  ends {} ({} left)",
                s("expires_at"),
                fmt_remaining(rem)
            ));
        }
        "pending" => {
            let have = g
                .get("approvals")
                .and_then(Value::as_array)
                .map(|a| a.len())
                .unwrap_or(0);
            let need = g
                .get("approvals_needed")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            line.push_str(&format!("  approvals {have}/{need}"));
        }
        _ => {
            if let Some(e) = g.get("ended_at").and_then(Value::as_str) {
                line.push_str(&format!("  ended {e}"));
            }
        }
    }
    line
}

/// How to use the credential a request returned (shown once).
fn credential_text(r: &Value) -> String {
    let c = &r["credential"];
    if let Some(url) = c["url"].as_str() {
        format!(
            "connect:       psql '{url}'\n(this password is shown once; it stops working at expiry)\n"
        )
    } else if let Some(p) = c["path"].as_str() {
        format!(
            "certificate    {p} (serial {})\nconnect:       breakglass ssh {}\n",
            c["serial"],
            r["id"].as_str().unwrap_or("")
        )
    } else if c["certificate"].is_string() {
        "certificate    (no key file to write it beside: use --json to get it)\n".into()
    } else if let Some(t) = c.as_str() {
        format!("credential:    {t}\n")
    } else if c.is_object() || c.is_array() {
        format!("credential:    {c}\n")
    } else {
        String::new()
    }
}

fn grant_detail(g: &Value) -> String {
    let s = |k: &str| g.get(k).and_then(Value::as_str).map(String::from);
    let mut o = String::new();
    let mut kv = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            o.push_str(&format!("{k:<14} {v}\n"));
        }
    };
    kv("grant", s("id"));
    kv("state", s("state"));
    kv("resource", s("resource"));
    kv("user", s("user"));
    kv("policy", s("policy"));
    kv("ticket", s("ticket"));
    kv("reason", s("reason"));
    kv("requested", s("requested_at"));
    kv("activated", s("activated_at"));
    kv("expires", s("expires_at"));
    kv(
        "remaining",
        g.get("remaining_secs")
            .and_then(Value::as_u64)
            .map(fmt_remaining),
    );
    kv("ended", s("ended_at"));
    kv("ended by", s("ended_by"));
    kv("end reason", s("end_reason"));
    if let Some(a) = g
        .get("approvals")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        let names: Vec<_> = a
            .iter()
            .filter_map(|x| x.get("by").and_then(Value::as_str))
            .collect();
        kv("approved by", Some(names.join(", ")));
    }
    if s("state").as_deref() == Some("pending") {
        kv(
            "approvals",
            Some(format!(
                "{}/{} from {}",
                g.get("approvals")
                    .and_then(Value::as_array)
                    .map(|a| a.len())
                    .unwrap_or(0),
                g.get("approvals_needed")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                g.get("approvers_from")
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            )),
        );
        kv("times out", s("approval_timeout_at"));
    }
    o.trim_end().to_string()
}

async fn open_dir(dir: &Path) -> Result<(breakglass_store::sqlite::SqliteStore, keys::Keys)> {
    Ok(keys::open(&DataDir::new(dir)).await?)
}

/// Who runs an admin command on the server host, as the audit trail names them.
fn operator() -> String {
    let actor = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".into());
    format!("operator:{actor}")
}

/// Disables a user through the engine (so their grants end with revocation, reviews and alerts,
/// exactly as when the server ends them). Returns the grants it ended.
async fn disable_user(name: &str, data_dir: &Path, policy: Option<&Path>) -> Result<Vec<String>> {
    let (store, keys) = open_dir(data_dir).await?;
    let path = match policy {
        Some(p) => Some(p.to_path_buf()),
        None => store
            .meta(breakglass_server::POLICY_PATH_META)
            .await?
            .map(|v| std::path::PathBuf::from(String::from_utf8_lossy(&v).into_owned())),
    };
    let Some(path) = path else {
        // The server never ran here, so nobody holds a grant: disabling is all there is to do.
        let open = store
            .grants(&breakglass_store::GrantFilter {
                user: Some(name.to_string()),
                states: vec!["pending".into(), "active".into()],
                limit: 1,
            })
            .await?;
        if !open.is_empty() {
            bail!(
                "{name} holds grants but the policy the server runs with is unknown: pass --policy FILE"
            );
        }
        store
            .commit(
                vec![
                    Change::SetUserDisabled {
                        name: name.to_string(),
                        disabled: true,
                    },
                    Change::DeleteUserSessions {
                        user: name.to_string(),
                    },
                ],
                vec![admin_event("admin.user_disabled", name, json!({}))],
            )
            .await
            .map_err(|e| match e {
                breakglass_store::StoreError::NotFound(_) => {
                    anyhow!("no user {name}: see `breakglass admin user list`")
                }
                e => e.into(),
            })?;
        return Ok(vec![]);
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the policy {} (pass --policy FILE with the one the server runs with)",
            path.display()
        )
    })?;
    let loaded = engine::load_policy_text(&text, Some(path.clone()))
        .map_err(|e| anyhow!("the policy {} is invalid: {e}", path.display()))?;
    let engine = engine::Engine::new(
        std::sync::Arc::new(store),
        keys,
        loaded,
        std::sync::Arc::new(SystemClock),
        engine::EngineConfig::default(),
    );
    engine
        .disable_user(name, &operator())
        .await
        .map_err(|e| anyhow!("{e}"))
}

fn admin_event(kind: &str, user: &str, data: Value) -> NewEvent {
    NewEvent {
        ts_ms: now().0,
        kind: kind.into(),
        actor: Some(operator()),
        grant_id: None,
        resource: None,
        data: json!({"user": user, "details": data}),
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let j = cli.json;
    match &cli.cmd {
        Cmd::Init { data_dir } => {
            let r = keys::init(&DataDir::new(data_dir), now()).await?;
            out(j, &serde_json::to_value(&r)?, || {
                format!(
                    "data directory {} ready ({}; {}).\naudit public key: {}/audit-key.pem (give it to your auditors)",
                    r.data_dir,
                    if r.created_kek {
                        "new key-encryption key"
                    } else {
                        "existing key-encryption key kept"
                    },
                    if r.created_signing_key {
                        "new audit signing key"
                    } else {
                        "existing audit signing key kept"
                    },
                    r.data_dir
                )
            });
        }
        Cmd::Serve {
            data_dir,
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
        } => {
            let mut cfg =
                breakglass_server::ServeConfig::new(data_dir.clone(), *listen, policy.clone());
            cfg.checkpoint_every_events = (*checkpoint_events).max(1);
            cfg.checkpoint_every =
                duration::parse(checkpoint_every).context("--checkpoint-every")?;
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
            let running = breakglass_server::start(cfg).await?;
            let addr = running.addr;
            if let Some(m) = running.metrics_addr {
                eprintln!("breakglass metrics on http://{m}/metrics");
            }
            let p = running.engine.policy();
            let resources: Vec<String> = p.set.resources.iter().map(|r| r.name.clone()).collect();
            eprintln!(
                "breakglass listening on {scheme}://{addr}  (policy {} sha256 {:.12}; resources: {})\n\
                 To break glass:\n  \
                 breakglass admin user add alice --group oncall --password-stdin --data-dir {}   (on this host)\n  \
                 breakglass --server {scheme}://{addr} login --user alice --password-stdin\n  \
                 breakglass mfa totp enroll && breakglass mfa totp confirm CODE\n  \
                 breakglass request bastion --reason \"orders table locked, checkout down\" --ticket INC-4711 --for 30m\n  \
                 breakglass ssh GRANT_ID      (hosts trust `breakglass ssh ca-key` in sshd's TrustedUserCAKeys)\n  \
                 breakglass status",
                policy.display(),
                p.sha256,
                resources.join(", "),
                data_dir.display()
            );
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("shutting down: writing a final audit checkpoint");
            running.shutdown().await;
        }
        Cmd::Admin(AdminCmd::User(u)) => admin_user(u, j).await?,
        Cmd::Login {
            user,
            password_stdin,
            otp,
        } => {
            if !password_stdin && !std::io::stdin().is_terminal() {
                bail!("give the password on standard input with --password-stdin");
            }
            if !password_stdin {
                eprint!("password for {user}: ");
                std::io::stderr().flush()?;
            }
            let pw = read_stdin_line("password")?;
            let c = client(&cli)?;
            let c = Client::new(&c.base, None, c.ca.as_deref())?;
            let mut body = json!({"user": user, "password": pw.as_str()});
            if let Some(o) = otp {
                body["otp"] = json!(o);
            }
            let r = c.post("/login", &body).await?;
            let token = r
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("server sent no token"))?;
            let saved = SavedSession {
                server: c.base.clone(),
                user: user.clone(),
                token: token.to_string(),
                expires_at: r
                    .get("expires_at")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            };
            let path = client::save_session(&saved)?;
            let mut shown = r.clone();
            if let Some(o) = shown.as_object_mut() {
                o.remove("token");
                o.insert("session_file".into(), json!(path.display().to_string()));
            }
            out(j, &shown, || {
                let enrolled = r
                    .get("totp_enrolled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                format!(
                    "logged in as {user} until {}{}",
                    saved.expires_at,
                    if enrolled {
                        ""
                    } else {
                        "\nno authenticator yet: run `breakglass mfa totp enroll`"
                    }
                )
            });
        }
        Cmd::Logout => {
            let c = authed(&cli)?;
            let r = c.post("/logout", &json!({})).await;
            client::delete_session()?;
            if let Err(e) = r
                && e.downcast_ref::<Problem>()
                    .is_none_or(|p| p.slug() != "unauthenticated")
            {
                return Err(e);
            }
            out(j, &json!({"logged_out": true}), || "logged out".into());
        }
        Cmd::Whoami => {
            let c = authed(&cli)?;
            let r = c.get("/me").await?;
            out(j, &r, || {
                format!(
                    "{} (groups: {}){}",
                    r["user"].as_str().unwrap_or(""),
                    r["groups"]
                        .as_array()
                        .map(|g| g
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default(),
                    if r["totp_enrolled"].as_bool() == Some(true) {
                        ""
                    } else {
                        "; no authenticator enrolled"
                    }
                )
            });
        }
        Cmd::Mfa(MfaCmd::Totp(t)) => {
            let c = authed(&cli)?;
            match t {
                TotpCmd::Enroll => {
                    let r = c.post("/mfa/totp/enroll", &json!({})).await?;
                    out(j, &r, || {
                        format!(
                            "Add this to your authenticator app (scan it as a QR code or paste it):\n\n  {}\n\nsecret (for manual entry): {}\nThen run: breakglass mfa totp confirm CODE",
                            r["otpauth_uri"].as_str().unwrap_or(""),
                            r["secret_base32"].as_str().unwrap_or("")
                        )
                    });
                }
                TotpCmd::Confirm { code } => {
                    let r = c.post("/mfa/totp/confirm", &json!({"code": code})).await?;
                    out(j, &r, || "authenticator confirmed: MFA is on".into());
                }
            }
        }
        Cmd::Request {
            resource,
            reason,
            ticket,
            duration,
            otp,
            ssh_key,
        } => {
            let c = authed(&cli)?;
            // The public key goes along when there is one; the server uses it only for SSH
            // resources (and says so when one is needed and missing).
            let key = crate::ssh::key_path(ssh_key.as_deref())?;
            let pubkey = match &key {
                Some(k) => Some(crate::ssh::read_public_key(k)?),
                None => None,
            };
            let mut r = with_otp(otp.clone(), "this request", |otp| {
                let body = json!({"resource": resource, "reason": reason, "ticket": ticket, "duration": duration, "otp": otp, "ssh_public_key": pubkey});
                let c = &c;
                async move { c.post("/grants", &body).await }
            })
            .await?;
            if let Some(k) = &key {
                crate::ssh::store_certificate(&mut r, k)?;
            }
            out(j, &r, || {
                let state = r["state"].as_str().unwrap_or("");
                let head = match state {
                    "active" => format!(
                        "ACCESS GRANTED to {} until {} ({})",
                        r["resource"].as_str().unwrap_or(""),
                        r["expires_at"].as_str().unwrap_or(""),
                        fmt_remaining(r["remaining_secs"].as_u64().unwrap_or(0))
                    ),
                    "pending" => format!(
                        "request pending approval ({} needed from {}); once approved, `breakglass credential {}` hands you the credential",
                        r["approvals_needed"].as_u64().unwrap_or(0),
                        r["approvers_from"],
                        r["id"].as_str().unwrap_or("")
                    ),
                    other => format!("grant is {other}"),
                };
                format!(
                    "{head}\n{}{}watch it: breakglass status {} --watch",
                    grant_detail(&r),
                    credential_text(&r),
                    r["id"].as_str().unwrap_or("")
                )
            });
        }
        Cmd::Ssh {
            cmd: Some(SshCmd::CaKey),
            ..
        } => {
            let text = client(&cli)?.get_text("/ssh/ca-key").await?.text().await?;
            out(j, &json!({"public_key": text.trim()}), || {
                text.trim().to_string()
            });
        }
        Cmd::Ssh {
            cmd: Some(SshCmd::Krl { out: file }),
            ..
        } => {
            let n = crate::ssh::fetch_krl(&client(&cli)?, file).await?;
            out(
                j,
                &json!({"path": file.display().to_string(), "revoked": n}),
                || format!("{}: {n} revoked certificate(s)", file.display()),
            );
        }
        Cmd::Ssh {
            cmd: None,
            grant_id,
            ssh_key,
            login,
            options,
            args,
        } => {
            let Some(id) = grant_id else {
                bail!(
                    "give a grant id (`breakglass ssh GRANT_ID`), or `ssh ca-key` / `ssh krl --out FILE`"
                );
            };
            crate::ssh::connect(
                &authed(&cli)?,
                id,
                ssh_key.as_deref(),
                login.as_deref(),
                options,
                args,
            )
            .await?;
        }
        Cmd::Credential { grant_id, ssh_key } => {
            let c = authed(&cli)?;
            let mut r = c
                .post(
                    &format!("/grants/{}/credential", urlencode(grant_id)),
                    &json!({}),
                )
                .await?;
            r["id"] = json!(grant_id);
            if r["credential"]["certificate"].is_string() {
                let Some(k) = crate::ssh::key_path(ssh_key.as_deref())? else {
                    bail!("no SSH key found in ~/.ssh: give the one you requested with --ssh-key");
                };
                crate::ssh::store_certificate(&mut r, &k)?;
            }
            out(j, &r, || credential_text(&r));
        }
        Cmd::Session {
            grant,
            serial,
            until,
            krl,
        } => {
            let code = crate::session::run(grant, *serial, *until, krl.clone()).await?;
            std::process::exit(code);
        }
        Cmd::Status {
            grant_id,
            all,
            watch,
        } => {
            let c = authed(&cli)?;
            match grant_id {
                Some(id) => {
                    let path = format!("/grants/{}", urlencode(id));
                    let mut r = c.get(&path).await?;
                    if *watch && !j {
                        watch_countdown(&c, &path, &mut r).await?;
                    } else {
                        out(j, &r, || grant_detail(&r));
                    }
                }
                None => {
                    let r = c
                        .get(if *all { "/grants?all=true" } else { "/grants" })
                        .await?;
                    out(j, &r, || {
                        let list = r.as_array().cloned().unwrap_or_default();
                        if list.is_empty() {
                            "no grants".into()
                        } else {
                            list.iter().map(grant_line).collect::<Vec<_>>().join("\n")
                        }
                    });
                }
            }
        }
        Cmd::Approve { grant_id, otp } => {
            let c = authed(&cli)?;
            let path = format!("/grants/{}/approve", urlencode(grant_id));
            let r = with_otp(otp.clone(), "this approval", |otp| {
                let (c, path) = (&c, &path);
                async move { c.post(path, &json!({"otp": otp})).await }
            })
            .await?;
            out(j, &r, || format!("approved.\n{}", grant_detail(&r)));
        }
        Cmd::Deny { grant_id, reason } => {
            let c = authed(&cli)?;
            let r = c
                .post(
                    &format!("/grants/{}/deny", urlencode(grant_id)),
                    &json!({"reason": reason}),
                )
                .await?;
            out(j, &r, || format!("denied.\n{}", grant_detail(&r)));
        }
        Cmd::Revoke { grant_id, reason } => {
            let c = authed(&cli)?;
            let r = c
                .post(
                    &format!("/grants/{}/revoke", urlencode(grant_id)),
                    &json!({"reason": reason}),
                )
                .await?;
            out(j, &r, || {
                format!(
                    "{}.\n{}",
                    r["state"].as_str().unwrap_or("revoked"),
                    grant_detail(&r)
                )
            });
        }
        Cmd::Extend { grant_id, by, otp } => {
            let c = authed(&cli)?;
            let path = format!("/grants/{}/extend", urlencode(grant_id));
            let r = with_otp(otp.clone(), "this extension", |otp| {
                let (c, path) = (&c, &path);
                async move { c.post(path, &json!({"by": by, "otp": otp})).await }
            })
            .await?;
            out(j, &r, || format!("extended.\n{}", grant_detail(&r)));
        }
        Cmd::Alerts { state, cmd } => {
            let c = authed(&cli)?;
            match cmd {
                Some(AlertsCmd::Retry { id }) => {
                    let r = c.post(&format!("/alerts/{id}/retry"), &json!({})).await?;
                    out(j, &r, || format!("alert {id} queued again"));
                }
                None => {
                    let path = match state {
                        Some(s) => format!("/alerts?state={}", urlencode(s)),
                        None => "/alerts".into(),
                    };
                    let r = c.get(&path).await?;
                    out(j, &r, || {
                        let list = r.as_array().cloned().unwrap_or_default();
                        if list.is_empty() {
                            return "no alerts".into();
                        }
                        list.iter()
                            .map(|a| {
                                format!(
                                    "{:>6}  {:<9} {:<18} {:<14} attempts={} {}{}",
                                    a["id"],
                                    a["state"].as_str().unwrap_or(""),
                                    a["kind"].as_str().unwrap_or(""),
                                    a["sink"].as_str().unwrap_or(""),
                                    a["attempts"],
                                    a["grant"].as_str().unwrap_or(""),
                                    a["last_error"]
                                        .as_str()
                                        .map(|e| format!("  last error: {e}"))
                                        .unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    });
                }
            }
        }
        Cmd::Review {
            cmd,
            grant_id,
            verdict,
            notes,
            otp,
        } => {
            let c = authed(&cli)?;
            match (cmd, grant_id) {
                (Some(ReviewCmd::List { .. }), _) | (None, None) => {
                    let all = matches!(cmd, Some(ReviewCmd::List { all: true }));
                    let r = c
                        .get(if all { "/reviews?all=true" } else { "/reviews" })
                        .await?;
                    out(j, &r, || {
                        let list = r.as_array().cloned().unwrap_or_default();
                        if list.is_empty() {
                            return "no reviews".into();
                        }
                        list.iter()
                            .map(|v| {
                                format!(
                                    "{}  {:<5} requester={:<12} due {}{}{}",
                                    v["grant"].as_str().unwrap_or(""),
                                    v["state"].as_str().unwrap_or(""),
                                    v["requester"].as_str().unwrap_or(""),
                                    v["due_at"].as_str().unwrap_or(""),
                                    if v["overdue"].as_bool() == Some(true) {
                                        "  OVERDUE"
                                    } else {
                                        ""
                                    },
                                    v["entries"]
                                        .as_array()
                                        .and_then(|e| e.last())
                                        .map(|e| format!(
                                            "  verdict: {}",
                                            e["verdict"].as_str().unwrap_or("")
                                        ))
                                        .unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    });
                }
                (_, Some(id)) => {
                    let (Some(verdict), Some(notes)) = (verdict, notes) else {
                        bail!("give --verdict appropriate|inappropriate and --notes TEXT");
                    };
                    let path = format!("/grants/{}/review", urlencode(id));
                    let r = with_otp(otp.clone(), "this review", |otp| {
                        let (c, path) = (&c, &path);
                        async move {
                            c.post(
                                path,
                                &json!({"verdict": verdict, "notes": notes, "otp": otp}),
                            )
                            .await
                        }
                    })
                    .await?;
                    out(j, &r, || format!("review of {id} recorded: {verdict}"));
                }
            }
        }
        Cmd::Report {
            grant_id,
            since,
            format,
            out: path,
        } => {
            use breakglass_server::review;
            type Render = fn(&Value) -> String;
            let c = authed(&cli)?;
            let (r, md, html): (Value, Render, Render) = match (grant_id, since) {
                (_, Some(since)) => (
                    c.get(&format!("/reports/summary?since={}", urlencode(since)))
                        .await?,
                    review::summary_markdown,
                    review::summary_html,
                ),
                (Some(id), None) => (
                    c.get(&format!("/grants/{}/report", urlencode(id))).await?,
                    review::report_markdown,
                    review::report_html,
                ),
                (None, None) => bail!("give a GRANT_ID or --since DATE"),
            };
            let text = match format.as_str() {
                "json" => serde_json::to_string_pretty(&r)?,
                "md" | "markdown" => md(&r),
                "html" => html(&r),
                other => bail!("unknown report format {other:?}: use md, html or json"),
            };
            match path {
                Some(p) => {
                    std::fs::write(p, &text)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!("report written to {}", p.display());
                }
                None => print!("{text}"),
            }
        }
        Cmd::Secret(cmd) => {
            let c = authed(&cli)?;
            match cmd {
                SecretCmd::Put { resource } | SecretCmd::Rotate { resource } => {
                    let mut value = zeroize::Zeroizing::new(String::new());
                    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut value)
                        .context("cannot read the secret from standard input")?;
                    let trimmed =
                        zeroize::Zeroizing::new(value.trim_end_matches(['\n', '\r']).to_string());
                    if trimmed.is_empty() {
                        bail!(
                            "no secret on standard input: pipe it in, e.g. `breakglass secret put {resource} < file`"
                        );
                    }
                    let r = c
                        .post(
                            &format!("/secrets/{}", urlencode(resource)),
                            &json!({"value": trimmed.as_str()}),
                        )
                        .await?;
                    out(j, &r, || {
                        format!("secret {resource} stored (version {})", r["version"])
                    });
                }
                SecretCmd::Show { grant_id } => {
                    let r = c
                        .get(&format!("/grants/{}/secret", urlencode(grant_id)))
                        .await?;
                    out(j, &r, || r["secret"].as_str().unwrap_or("").to_string());
                }
                SecretCmd::List => {
                    let r = c.get("/secrets").await?;
                    out(j, &r, || {
                        r.as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|x| {
                                        format!(
                                            "{:<20} v{:<4} {}",
                                            x["resource"].as_str().unwrap_or(""),
                                            x["version"],
                                            if x["must_rotate"].as_bool() == Some(true) {
                                                "MUST ROTATE"
                                            } else {
                                                "ok"
                                            }
                                        )
                                    })
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            })
                            .unwrap_or_default()
                    });
                }
            }
        }
        Cmd::Audit(a) => audit(&cli, a, j).await?,
        Cmd::Policy(PolicyCmd::Check { file }) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let parsed = breakglass_core::policy::PolicySet::parse(&text);
            if let Ok(set) = &parsed {
                // Connector settings are checked as the server will (without touching targets).
                let bad = breakglass_connectors::check_all(&set.resources);
                if !bad.is_empty() {
                    if j {
                        println!(
                            "{}",
                            json!({"valid": false, "file": file.display().to_string(), "errors": bad.iter().map(|m| json!({"message": m})).collect::<Vec<_>>()})
                        );
                    } else {
                        for m in &bad {
                            eprintln!("{}: {m}", file.display());
                        }
                    }
                    std::process::exit(1);
                }
            }
            match parsed {
                Ok(set) => out(
                    j,
                    &json!({"valid": true, "file": file.display().to_string(), "resources": set.resources.len(), "policies": set.policies.len()}),
                    || {
                        format!(
                            "{}: valid ({} resources, {} policies)",
                            file.display(),
                            set.resources.len(),
                            set.policies.len()
                        )
                    },
                ),
                Err(errs) => {
                    if j {
                        let list: Vec<Value> = errs
                            .errors
                            .iter()
                            .map(|e| json!({"line": e.line, "column": e.column, "message": e.message, "hint": e.hint}))
                            .collect();
                        println!(
                            "{}",
                            json!({"valid": false, "file": file.display().to_string(), "errors": list})
                        );
                        std::process::exit(1);
                    }
                    bail!("{}: invalid policy\n{errs}", file.display());
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn watch_countdown(c: &Client, path: &str, r: &mut Value) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    loop {
        let state = r["state"].as_str().unwrap_or("").to_string();
        let line = match state.as_str() {
            "active" => {
                let ends = r["expires_at_ms"].as_i64().unwrap_or(0);
                let left = now().until(Timestamp(ends)).as_secs();
                format!(
                    "{} on {}: {} left (ends {})",
                    r["id"].as_str().unwrap_or(""),
                    r["resource"].as_str().unwrap_or(""),
                    fmt_remaining(left),
                    r["expires_at"].as_str().unwrap_or("")
                )
            }
            "pending" => format!("{} pending approval", r["id"].as_str().unwrap_or("")),
            s => {
                println!(
                    "{}grant {} is {s}",
                    if tty { "\r\x1b[2K" } else { "" },
                    r["id"].as_str().unwrap_or("")
                );
                return Ok(());
            }
        };
        if tty {
            print!("\r\x1b[2K{line}");
        } else {
            println!("{line}");
        }
        std::io::stdout().flush()?;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        *r = c.get(path).await?;
    }
}

async fn admin_user(u: &UserCmd, j: bool) -> Result<()> {
    match u {
        UserCmd::Add {
            name,
            groups,
            password_stdin,
            dir,
        } => {
            if !engine::valid_name(name) {
                bail!(
                    "bad user name {name:?}: use lower-case letters, digits, '.', '_' or '-' (at most 64)"
                );
            }
            for g in groups {
                if !engine::valid_name(g) {
                    bail!("bad group name {g:?}: use lower-case letters, digits, '.', '_' or '-'");
                }
            }
            if !password_stdin {
                bail!("give the new password on standard input with --password-stdin");
            }
            let pw = read_stdin_line("password")?;
            if pw.chars().count() < 12 {
                bail!("password too short: use at least 12 characters");
            }
            let (store, _) = open_dir(&dir.data_dir).await?;
            if store.user(name).await?.is_some() {
                bail!(
                    "user {name} already exists (disable it with `breakglass admin user disable {name}`)"
                );
            }
            let hash = engine::hash_password(&pw).map_err(|e| anyhow!("{e}"))?;
            store
                .commit(
                    vec![Change::AddUser(User {
                        name: name.clone(),
                        password_hash: hash,
                        groups: groups.clone(),
                        disabled: false,
                        created_at: now(),
                    })],
                    vec![admin_event(
                        "admin.user_added",
                        name,
                        json!({"groups": groups}),
                    )],
                )
                .await?;
            out(j, &json!({"user": name, "groups": groups}), || {
                format!("user {name} added (groups: {})", groups.join(", "))
            });
        }
        UserCmd::List { dir } => {
            let (store, _) = open_dir(&dir.data_dir).await?;
            let users = store.users().await?;
            let mut list = Vec::new();
            for u in &users {
                let mfa = store.mfa(&u.name).await?;
                list.push(json!({"user": u.name, "groups": u.groups, "disabled": u.disabled, "totp_enrolled": mfa.totp_confirmed,
                    "mfa_locked_until": mfa.state.locked_until.filter(|t| *t > now()).map(breakglass_core::time::rfc3339)}));
            }
            let v = Value::Array(list);
            out(j, &v, || {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|u| {
                                format!(
                                    "{:<20} groups={:<30} {}{}{}",
                                    u["user"].as_str().unwrap_or(""),
                                    u["groups"]
                                        .as_array()
                                        .map(|g| g
                                            .iter()
                                            .filter_map(Value::as_str)
                                            .collect::<Vec<_>>()
                                            .join(","))
                                        .unwrap_or_default(),
                                    if u["totp_enrolled"].as_bool() == Some(true) {
                                        "mfa=totp"
                                    } else {
                                        "mfa=none"
                                    },
                                    if u["disabled"].as_bool() == Some(true) {
                                        " DISABLED"
                                    } else {
                                        ""
                                    },
                                    u["mfa_locked_until"]
                                        .as_str()
                                        .map(|t| format!(" MFA-LOCKED until {t}"))
                                        .unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        UserCmd::Disable { name, dir, policy } => {
            let ended = disable_user(name, &dir.data_dir, policy.as_deref()).await?;
            out(
                j,
                &json!({"user": name, "disabled": true, "ended_grants": ended}),
                || {
                    let mut line = format!("user {name} disabled; their sessions are ended");
                    if !ended.is_empty() {
                        line.push_str(&format!(
                            "\n{} grant(s) ended: {}\ntheir credentials are revoked at the targets by the server (within a second while it runs, else as it starts); follow with `breakglass status`",
                            ended.len(),
                            ended.join(", ")
                        ));
                    }
                    line
                },
            );
        }
        UserCmd::ResetMfa { name, dir } | UserCmd::Unlock { name, dir } => {
            let reset = matches!(u, UserCmd::ResetMfa { .. });
            let (store, _) = open_dir(&dir.data_dir).await?;
            if store.user(name).await?.is_none() {
                bail!("no user {name}: see `breakglass admin user list`");
            }
            let rec = store.mfa(name).await?;
            let mut state = rec.state;
            state.locked_until = None;
            state.failures = 0;
            // The state first: its compare-and-swap names the version just read.
            let mut changes = vec![Change::PutMfaState {
                user: name.clone(),
                expected_version: rec.version,
                state,
            }];
            if reset {
                changes.push(Change::PutTotp {
                    user: name.clone(),
                    sealed: None,
                    confirmed: false,
                });
            }
            store
                .commit(
                    changes,
                    vec![admin_event(
                        if reset {
                            "admin.mfa_reset"
                        } else {
                            "admin.mfa_unlocked"
                        },
                        name,
                        json!({}),
                    )],
                )
                .await?;
            out(
                j,
                &json!({"user": name, "mfa_reset": reset, "unlocked": true}),
                || {
                    if reset {
                        format!("{name}'s authenticator removed; they must enrol again")
                    } else {
                        format!("{name}'s MFA lock-out lifted")
                    }
                },
            );
        }
    }
    Ok(())
}

fn read_key_pem(path: &Path) -> Result<ed25519_dalek::VerifyingKey> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key {}", path.display()))?;
    ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        anyhow!(
            "{} is not an Ed25519 public key in PEM form: {e}",
            path.display()
        )
    })
}

async fn audit(cli: &Cli, a: &AuditCmd, j: bool) -> Result<()> {
    match a {
        AuditCmd::Verify {
            data_dir,
            file,
            key,
        } => {
            let (report, source) = match (data_dir, file) {
                (Some(dir), None) => {
                    let (store, keys) = open_dir(dir).await?;
                    let pubkey = match key {
                        Some(k) => read_key_pem(k)?,
                        None => keys.audit_public(),
                    };
                    let r = breakglass_server::audit::verify_store(&store, pubkey, &keys.origin)
                        .await?;
                    (r, dir.display().to_string())
                }
                (None, Some(f)) => {
                    let pubkey = key.as_deref().map(read_key_pem).transpose()?;
                    if pubkey.is_none() && !j {
                        eprintln!(
                            "warning: no --key given: trusting the public key inside the export itself"
                        );
                    }
                    let fh = std::fs::File::open(f)
                        .with_context(|| format!("cannot open {}", f.display()))?;
                    let r = breakglass_core::audit::export::verify_export(
                        std::io::BufReader::new(fh),
                        pubkey.as_ref(),
                    );
                    (r, f.display().to_string())
                }
                _ => bail!(
                    "say what to verify: --data-dir DIR (on the server host) or --file EXPORT"
                ),
            };
            match report {
                Ok(r) => out(
                    j,
                    &json!({"ok": true, "source": source, "events": r.events, "checkpoints": r.checkpoints, "last_checkpoint_size": r.last_checkpoint_size, "unsigned_tail": r.unsigned_tail}),
                    || {
                        format!(
                            "audit trail OK: {} events, {} signed checkpoints verified (last covers {} events; {} newer events not yet checkpointed)",
                            r.events, r.checkpoints, r.last_checkpoint_size, r.unsigned_tail
                        )
                    },
                ),
                Err(e) => {
                    if j {
                        println!(
                            "{}",
                            json!({"ok": false, "source": source, "error": e.to_string(), "seq": e.seq})
                        );
                        std::process::exit(1);
                    }
                    bail!("AUDIT VERIFICATION FAILED for {source}: {e}");
                }
            }
        }
        AuditCmd::Export {
            format,
            out: path,
            data_dir,
        } => {
            if format != "jsonl" {
                bail!("unknown export format {format:?}: use --format jsonl");
            }
            let mut sink: Box<dyn Write> = match path {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            match data_dir {
                Some(dir) => {
                    let (store, keys) = open_dir(dir).await?;
                    breakglass_server::audit::export_to(
                        &store,
                        &keys.audit_public(),
                        &keys.origin,
                        &mut sink,
                    )
                    .await?;
                }
                None => {
                    let c = authed(cli)?;
                    let mut resp = c.get_text("/audit/export").await?;
                    while let Some(chunk) = resp.chunk().await? {
                        sink.write_all(&chunk)?;
                    }
                }
            }
            sink.flush()?;
            if let Some(p) = path {
                eprintln!("audit export written to {}", p.display());
            }
        }
    }
    Ok(())
}
