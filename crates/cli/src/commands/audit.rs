//! The audit trail (verify, export), incident reports and post-incident reviews.

use super::common::{authed, open_dir, out, with_otp};
use crate::args::{AuditCmd, Cli, ReviewCmd};
use crate::client::urlencode;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

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

pub(super) async fn audit(cli: &Cli, a: &AuditCmd, j: bool) -> Result<()> {
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
                    &json!({"ok": true, "source": source, "events": r.events, "checkpoints": r.checkpoints,
                            "last_checkpoint_size": r.last_checkpoint_size, "unsigned_tail": r.unsigned_tail,
                            "recorded_sessions": r.recorded_sessions, "recorded_chunks": r.recorded_chunks,
                            "purged_chunks": r.purged_chunks}),
                    || {
                        let rec = if data_dir.is_some() {
                            format!(
                                "; {} recorded session(s), {} chunk(s) match the trail ({} deleted by retention, digests checked)",
                                r.recorded_sessions, r.recorded_chunks, r.purged_chunks
                            )
                        } else {
                            String::new()
                        };
                        format!(
                            "audit trail OK: {} events, {} signed checkpoints verified (last covers {} events; {} newer events not yet checkpointed){rec}",
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

pub(super) async fn review(
    cli: &Cli,
    cmd: &Option<ReviewCmd>,
    grant_id: &Option<String>,
    verdict: &Option<String>,
    notes: &Option<String>,
    otp: &Option<String>,
) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
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
    Ok(())
}

pub(super) async fn report(
    cli: &Cli,
    grant_id: &Option<String>,
    since: &Option<String>,
    format: &str,
    path: &Option<PathBuf>,
) -> Result<()> {
    use breakglass_server::report_render as review;
    type Render = fn(&Value) -> String;
    let c = authed(cli)?;
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
    let text = match format {
        "json" => serde_json::to_string_pretty(&r)?,
        "md" | "markdown" => md(&r),
        "html" => html(&r),
        other => bail!("unknown report format {other:?}: use md, html or json"),
    };
    match path {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("report written to {}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
