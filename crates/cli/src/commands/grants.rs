//! Grants: request, status (and watching it), approve, deny, revoke, extend, the credential
//! and SSH access with it.

use super::common::{authed, client, now, out, program, with_otp};
use crate::args::{Cli, SshCmd};
use crate::client::{Client, urlencode};
use anyhow::{Result, bail};
use breakglass_core::time::Timestamp;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

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
            "certificate    {p} (serial {})\nconnect:       {} ssh {}\n",
            c["serial"],
            program(),
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

pub(super) async fn request(
    cli: &Cli,
    resource: &str,
    reason: &str,
    ticket: &Option<String>,
    duration: &Option<String>,
    otp: &Option<String>,
    ssh_key: &Option<PathBuf>,
) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    // The public key goes along when there is one; the server uses it only for SSH
    // resources (and says so when one is needed and missing). A user without one gets a key
    // of breakglass's own for an SSH resource.
    let mut key = crate::ssh::key_path(ssh_key.as_deref())?;
    if key.is_none() && is_ssh_resource(&c, resource).await {
        let (k, created) = crate::ssh::ensure_own_key()?;
        if created {
            let private = k.with_extension("");
            eprintln!(
                "no SSH key in ~/.ssh: created one for breakglass: {} (private, mode 0600) and {}",
                private.display(),
                k.display()
            );
        }
        key = Some(k);
    }
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
                "request pending approval ({} needed from {}); once approved, `{} credential {}` hands you the credential",
                r["approvals_needed"].as_u64().unwrap_or(0),
                r["approvers_from"],
                program(),
                r["id"].as_str().unwrap_or("")
            ),
            other => format!("grant is {other}"),
        };
        format!(
            "{head}\n{}\n{}watch it: {} status {} --watch",
            grant_detail(&r),
            credential_text(&r),
            program(),
            r["id"].as_str().unwrap_or("")
        )
    });
    Ok(())
}

/// Whether the server's policy names `resource` as an SSH resource (false when it cannot say:
/// the request then tells).
async fn is_ssh_resource(c: &Client, resource: &str) -> bool {
    let Ok(p) = c.get("/policy").await else {
        return false;
    };
    p["policy"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["name"].as_str() == Some(resource) && r["kind"].as_str() == Some("ssh"))
}

/// `ssh ca-key`, `ssh krl --out FILE`, or `ssh GRANT_ID`: connect with the grant's certificate.
pub(super) async fn ssh(
    cli: &Cli,
    cmd: &Option<SshCmd>,
    grant_id: &Option<String>,
    ssh_key: &Option<PathBuf>,
    login: &Option<String>,
    options: &[String],
    args: &[String],
) -> Result<()> {
    let j = cli.json;
    match cmd {
        Some(SshCmd::CaKey) => {
            let text = client(cli)?.get_text("/ssh/ca-key").await?.text().await?;
            out(j, &json!({"public_key": text.trim()}), || {
                text.trim().to_string()
            });
        }
        Some(SshCmd::Krl { out: file }) => {
            let n = crate::ssh::fetch_krl(&client(cli)?, file).await?;
            out(
                j,
                &json!({"path": file.display().to_string(), "revoked": n}),
                || format!("{}: {n} revoked certificate(s)", file.display()),
            );
        }
        None => {
            let Some(id) = grant_id else {
                bail!(
                    "give a grant id (`breakglass ssh GRANT_ID`), or `ssh ca-key` / `ssh krl --out FILE`"
                );
            };
            crate::ssh::connect(
                &authed(cli)?,
                id,
                ssh_key.as_deref(),
                login.as_deref(),
                options,
                args,
            )
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn credential(cli: &Cli, grant_id: &str, ssh_key: &Option<PathBuf>) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    let mut r = c
        .post(
            &format!("/grants/{}/credential", urlencode(grant_id)),
            &json!({}),
        )
        .await?;
    r["id"] = json!(grant_id);
    if r["credential"]["certificate"].is_string() {
        let Some(k) = crate::ssh::key_path(ssh_key.as_deref())? else {
            bail!(
                "no SSH key found in ~/.ssh or {}: give the one you requested with --ssh-key",
                crate::ssh::own_key_path()?.display()
            );
        };
        crate::ssh::store_certificate(&mut r, &k)?;
    }
    out(j, &r, || credential_text(&r));
    Ok(())
}

pub(super) async fn status(
    cli: &Cli,
    grant_id: &Option<String>,
    all: bool,
    watch: bool,
) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    match grant_id {
        Some(id) => {
            let path = format!("/grants/{}", urlencode(id));
            let mut r = c.get(&path).await?;
            if watch && !j {
                watch_countdown(&c, &path, &mut r).await?;
            } else {
                out(j, &r, || grant_detail(&r));
            }
        }
        None => {
            let r = c
                .get(if all { "/grants?all=true" } else { "/grants" })
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
    Ok(())
}

pub(super) async fn approve(cli: &Cli, grant_id: &str, otp: &Option<String>) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    let path = format!("/grants/{}/approve", urlencode(grant_id));
    let r = with_otp(otp.clone(), "this approval", |otp| {
        let (c, path) = (&c, &path);
        async move { c.post(path, &json!({"otp": otp})).await }
    })
    .await?;
    out(j, &r, || format!("approved.\n{}", grant_detail(&r)));
    Ok(())
}

pub(super) async fn deny(cli: &Cli, grant_id: &str, reason: &str) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    let r = c
        .post(
            &format!("/grants/{}/deny", urlencode(grant_id)),
            &json!({"reason": reason}),
        )
        .await?;
    out(j, &r, || format!("denied.\n{}", grant_detail(&r)));
    Ok(())
}

pub(super) async fn revoke(cli: &Cli, grant_id: &str, reason: &Option<String>) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
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
    Ok(())
}

pub(super) async fn extend(
    cli: &Cli,
    grant_id: &str,
    by: &str,
    otp: &Option<String>,
) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    let path = format!("/grants/{}/extend", urlencode(grant_id));
    let r = with_otp(otp.clone(), "this extension", |otp| {
        let (c, path) = (&c, &path);
        async move { c.post(path, &json!({"by": by, "otp": otp})).await }
    })
    .await?;
    out(j, &r, || format!("extended.\n{}", grant_detail(&r)));
    Ok(())
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
