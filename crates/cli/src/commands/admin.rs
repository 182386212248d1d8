//! On the server host: the data directory, users, and checking a policy file.

use super::common::{admin_event, now, open_dir, operator, out, read_stdin_line};
use crate::args::UserCmd;
use anyhow::{Context, Result, anyhow, bail};
use breakglass_server::engine::{self, SystemClock};
use breakglass_server::keys::{self, DataDir};
use breakglass_store::{Change, User};
use serde_json::{Value, json};
use std::path::Path;

pub(super) async fn init(j: bool, data_dir: &Path, database: Option<&str>) -> Result<()> {
    let dir = DataDir::new(data_dir).with_database(database.map(str::to_string));
    let r = keys::init(&dir, now()).await?;
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
    Ok(())
}

pub(super) async fn admin_user(u: &UserCmd, j: bool) -> Result<()> {
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
        store,
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

pub(super) fn policy_check(j: bool, file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
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
            &json!({"valid": true, "file": file.display().to_string(), "resources": set.resources.len(), "policies": set.policies.len(),
                    "streams": set.streams.len(), "witness": set.witness.is_some()}),
            || {
                let mut more = String::new();
                if !set.streams.is_empty() {
                    more.push_str(&format!(", {} audit stream(s)", set.streams.len()));
                }
                if set.witness.is_some() {
                    more.push_str(", a checkpoint witness");
                }
                format!(
                    "{}: valid ({} resources, {} policies{more})",
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
    Ok(())
}
