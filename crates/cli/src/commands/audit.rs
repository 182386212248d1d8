//! The audit trail (verify, export), incident reports and post-incident reviews.

use super::common::{authed, open_dir, out, with_otp};
use crate::args::{AuditCmd, Cli, ReviewCmd};
use crate::client::urlencode;
use anyhow::{Context, Result, anyhow, bail};
use breakglass_core::audit::witness::WitnessReport;
use breakglass_core::audit::{VerifyError, VerifyReport};
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
            witness,
        } => verify(data_dir, file, key, witness, j).await?,
        AuditCmd::Streams => {
            let v = authed(cli)?.get("/audit/streams").await?;
            out(j, &v, || streams_text(&v));
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
                        &*store,
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

/// A verification's outcome, with the witness's when one was checked.
type Verified = Result<(VerifyReport, Option<WitnessReport>), VerifyError>;

async fn verify(
    data_dir: &Option<PathBuf>,
    file: &Option<PathBuf>,
    key: &Option<PathBuf>,
    witness: &Option<PathBuf>,
    j: bool,
) -> Result<()> {
    let copies = match witness {
        Some(dir) => Some(
            breakglass_server::stream::witness::read_dir(dir).map_err(|e| {
                anyhow!("{e}\ngive the witness directory the policy's `witness: dir:` copies checkpoints to")
            })?,
        ),
        None => None,
    };
    let (report, source): (Verified, String) = match (data_dir, file) {
        (Some(dir), None) => {
            let (store, keys) = open_dir(dir).await?;
            let pubkey = match key {
                Some(k) => read_key_pem(k)?,
                None => keys.audit_public(),
            };
            let r = match &copies {
                None => breakglass_server::audit::verify_store(&*store, pubkey, &keys.origin)
                    .await?
                    .map(|r| (r, None)),
                Some(c) => breakglass_server::audit::verify_store_witnessed(
                    &*store,
                    pubkey,
                    &keys.origin,
                    c,
                )
                .await?
                .map(|(r, w)| (r, Some(w))),
            };
            (r, dir.display().to_string())
        }
        (None, Some(f)) => {
            let pubkey = key.as_deref().map(read_key_pem).transpose()?;
            let fh = std::io::BufReader::new(
                std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?,
            );
            let r = match (&copies, pubkey) {
                (None, k) => {
                    if k.is_none() && !j {
                        eprintln!(
                            "warning: no --key given: trusting the public key inside the export itself"
                        );
                    }
                    breakglass_core::audit::export::verify_export(fh, k.as_ref()).map(|r| (r, None))
                }
                (Some(_), None) => bail!(
                    "--witness with --file needs --key audit-key.pem: the witness copies are checked with the trusted key, not the export's own"
                ),
                (Some(c), Some(k)) => breakglass_core::audit::export::verify_export_leaves(fh, &k)
                    .and_then(|(r, origin, leaves)| {
                        breakglass_server::audit::check_witness(leaves, &k, &origin, c)
                            .map(|w| (r, Some(w)))
                    }),
            };
            (r, f.display().to_string())
        }
        _ => bail!("say what to verify: --data-dir DIR (on the server host) or --file EXPORT"),
    };
    match report {
        Ok((r, w)) => {
            let mut doc = json!({"ok": true, "source": source, "events": r.events, "checkpoints": r.checkpoints,
                    "last_checkpoint_size": r.last_checkpoint_size, "unsigned_tail": r.unsigned_tail,
                    "recorded_sessions": r.recorded_sessions, "recorded_chunks": r.recorded_chunks,
                    "purged_chunks": r.purged_chunks});
            if let Some(w) = &w {
                doc["witness"] = json!({"copies": w.checked, "newest_size": w.newest_size});
            }
            out(j, &doc, || {
                let rec = if data_dir.is_some() {
                    format!(
                        "; {} recorded session(s), {} chunk(s) match the trail ({} deleted by retention, digests checked)",
                        r.recorded_sessions, r.recorded_chunks, r.purged_chunks
                    )
                } else {
                    String::new()
                };
                let wit = w
                    .map(|w| {
                        format!(
                            "\nwitness OK: {} checkpoint copies verified, the log's tree of {} events is consistent with each (the newest covers {} events)",
                            w.checked, r.events, w.newest_size
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "audit trail OK: {} events, {} signed checkpoints verified (last covers {} events; {} newer events not yet checkpointed){rec}{wit}",
                    r.events, r.checkpoints, r.last_checkpoint_size, r.unsigned_tail
                )
            });
        }
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
    Ok(())
}

fn streams_text(v: &Value) -> String {
    let mut lines = vec![format!(
        "audit log: {} events, newest checkpoint covers {}",
        v["head"], v["latest_checkpoint"]
    )];
    let row = |label: String, s: &Value| {
        let mut l = format!(
            "{label:<22} {:<8} {}",
            s["state"].as_str().unwrap_or(""),
            s["destination"].as_str().unwrap_or("")
        );
        if let Some(p) = s["position"].as_u64() {
            l.push_str(&format!("  at {p}, {} behind", s["behind"]));
        }
        if let Some(e) = s["last_error"].as_str() {
            l.push_str(&format!(
                "\n{:<22} {} failed attempt(s), last: {}",
                "",
                s["failures"],
                breakglass_server::alerts::one_line(e)
            ));
        }
        l
    };
    for s in v["streams"].as_array().into_iter().flatten() {
        lines.push(row(
            format!("stream {}", s["name"].as_str().unwrap_or("")),
            s,
        ));
    }
    for w in v["witnesses"].as_array().into_iter().flatten() {
        lines.push(row(
            format!("witness {}", w["kind"].as_str().unwrap_or("")),
            w,
        ));
    }
    if lines.len() == 1 {
        lines.push("no streams or witness in the policy (see `streams:` and `witness:`)".into());
    }
    lines.join("\n")
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
