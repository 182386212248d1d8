//! Check (1), at the targets themselves: no PostgreSQL role of breakglass's naming scheme
//! without an active grant once the sweep grace has passed, and no certificate of an ended
//! grant that the SSH host would still accept (the KRL the server publishes lists it, and a
//! real login with it is refused).

use super::api::Admin;
use super::checks::{Findings, SETTLE};
use super::load::{Cred, Load, now_ms};
use super::rig::Rig;
use anyhow::Result;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Tagged roles whose grant the server does not report active are orphans, unless the sweep
/// (every second, grace 1 s) or the revoker drops them before the deadline. Returns the roles
/// present at the end.
pub async fn pg_orphans(
    rig: &Rig,
    admin: &Admin,
    f: &mut Findings,
) -> Result<Vec<(String, String)>> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let roles = rig.pg_roles().await?;
        let mut bad = Vec::new();
        for (role, grant) in &roles {
            match admin.grant(grant).await? {
                Some(v) if v["state"] == "active" => {}
                Some(v) => bad.push(format!(
                    "role {role} at PostgreSQL, its grant {grant} is {}",
                    v["state"].as_str().unwrap_or("?")
                )),
                None => bad.push(format!(
                    "role {role} at PostgreSQL, the server has no grant {grant}"
                )),
            }
        }
        if bad.is_empty() || Instant::now() >= deadline {
            f.roles_checked = roles.len();
            f.orphans.extend(bad);
            return Ok(roles);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct HeldCert {
    grant: String,
    state: String,
    valid_before_ms: i64,
    key: PathBuf,
}

/// Writes the certificate beside a copy of the user's key (`ssh -i KEY` finds `KEY-cert.pub`).
fn cert_files(rig: &Rig, grant: &str, certificate: &str) -> Result<PathBuf> {
    let dir = rig.ssh_dir.join("held");
    std::fs::create_dir_all(&dir)?;
    let key = dir.join(grant);
    if !key.exists() {
        std::fs::copy(&rig.key, &key)?;
        std::fs::write(
            dir.join(format!("{grant}-cert.pub")),
            format!("{}\n", certificate.trim()),
        )?;
    }
    Ok(key)
}

fn cert_path(key: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

/// Which of `certs` `ssh-keygen -Q` finds revoked in `krl`.
async fn revoked_in(krl: &std::path::Path, certs: &[PathBuf]) -> Result<Vec<bool>> {
    let out = tokio::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .args(certs)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(certs
        .iter()
        .map(|c| {
            let p = c.display().to_string();
            text.lines()
                .any(|l| l.starts_with(&p) && l.trim_end().ends_with(": REVOKED"))
        })
        .collect())
}

/// SSH logs in with `key` and runs `true`; (logged in, stderr).
async fn login(rig: &Rig, key: &std::path::Path) -> Result<(bool, String)> {
    let user = breakglass_testkit::whoami();
    let out = tokio::process::Command::from(rig.sshd.ssh_cmd(key, &user, "true"))
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// Certificates clients hold for grants that ended while the certificate is still valid by
/// its dates: each must be in the KRL, and one of them (per round) is tried against sshd. One
/// certificate of an active grant is tried too, so a refusal means something.
pub async fn ssh(
    rig: &Rig,
    load: &Load,
    views: &HashMap<&str, &Value>,
    f: &mut Findings,
) -> Result<()> {
    let now = now_ms();
    let held: Vec<(String, String, i64)> = load
        .ledger
        .lock()
        .map(|l| {
            l.grants
                .iter()
                .flat_map(|(id, g)| {
                    g.creds.iter().filter_map(move |c| match c {
                        Cred::Ssh {
                            certificate,
                            valid_before_ms,
                        } => Some((id.clone(), certificate.clone(), *valid_before_ms)),
                        Cred::Pg { .. } => None,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ended = Vec::new();
    let mut active = Vec::new();
    for (grant, cert, vb) in held {
        let Some(v) = views.get(grant.as_str()) else {
            continue;
        };
        let state = v["state"].as_str().unwrap_or("").to_string();
        // A margin: a certificate about to lapse proves nothing either way.
        if vb < now + 3_000 {
            continue;
        }
        let c = HeldCert {
            key: cert_files(rig, &grant, &cert)?,
            grant,
            state,
            valid_before_ms: vb,
        };
        if matches!(c.state.as_str(), "active") {
            active.push(c);
        } else if c.state != "pending" {
            ended.push(c);
        }
    }
    if !ended.is_empty() {
        let certs: Vec<PathBuf> = ended.iter().map(|c| cert_path(&c.key)).collect();
        let deadline = Instant::now() + SETTLE;
        let revoked = loop {
            rig.refresh_krl().await?;
            let r = revoked_in(&rig.krl, &certs).await?;
            if r.iter().all(|x| *x) || Instant::now() >= deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        f.krl_certs_checked = certs.len();
        for (c, r) in ended.iter().zip(&revoked) {
            if !r {
                f.orphans.push(format!(
                    "ssh certificate of grant {} ({}, valid for {} s more) is not in the KRL",
                    c.grant,
                    c.state,
                    (c.valid_before_ms - now_ms()) / 1000
                ));
            }
        }
        if let Some(c) = ended.first() {
            let (ok, err) = login(rig, &c.key).await?;
            if ok {
                f.orphans.push(format!(
                    "ssh login with the certificate of ended grant {} ({}) succeeded",
                    c.grant, c.state
                ));
            } else {
                f.ssh_refusals += 1;
                if !err.contains("Permission denied") {
                    f.notes
                        .push(format!("ssh refusal for ended grant {}: {err}", c.grant));
                }
            }
        }
    }
    if let Some(c) = active
        .iter()
        .find(|c| c.valid_before_ms > now_ms() + 15_000)
    {
        let (ok, err) = login(rig, &c.key).await?;
        if ok {
            f.ssh_control_logins += 1;
        } else {
            f.notes.push(format!(
                "control: ssh with the certificate of active grant {} failed: {err}",
                c.grant
            ));
        }
    }
    Ok(())
}
