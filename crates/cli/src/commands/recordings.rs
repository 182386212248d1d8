//! `breakglass watch GRANT_ID` (the live sessions of a grant, read-only) and `breakglass
//! recording GRANT_ID` (asciicast v2 for `asciinema play`, or a plain transcript). Each opens an
//! audited view at the server first; the data reads need that view.

use super::common::{authed, out};
use crate::args::Cli;
use crate::client::{Client, urlencode};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use breakglass_core::recording::render::{Asciicast, SessionMeta, Transcript};
use breakglass_core::recording::{Kind, Record, decode_chunk};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

async fn open_view(c: &Client, grant: &str, purpose: &str) -> Result<Value> {
    c.post(
        &format!("/grants/{}/recording/view", urlencode(grant)),
        &json!({"purpose": purpose}),
    )
    .await
}

/// Every record of session `sid` from chunk `from`; returns them, the next chunk number and
/// whether the session has ended.
async fn fetch(
    c: &Client,
    view: &str,
    sid: &str,
    from: u64,
) -> Result<(Vec<Record>, u64, bool, Value)> {
    let v = c
        .get(&format!(
            "/recordings/{}/data?from={from}&view={}",
            urlencode(sid),
            urlencode(view)
        ))
        .await?;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut recs = Vec::new();
    for ch in v["chunks"].as_array().into_iter().flatten() {
        let Some(data) = ch["data"].as_str() else {
            let n = ch["chunk"].as_u64().unwrap_or(0);
            recs.push(Record {
                kind: Kind::Marker,
                ms: 0,
                data: format!("chunk {n}: deleted by the retention policy (its digest is kept)")
                    .into_bytes(),
            });
            continue;
        };
        let bytes = b64
            .decode(data)
            .context("the server sent a chunk that is not base64")?;
        recs.extend(decode_chunk(&bytes).context("the server sent a chunk that does not decode")?);
    }
    let next = v["next"].as_u64().unwrap_or(from);
    let ended = v["session"]["ended_at"].is_string() && !v["more"].as_bool().unwrap_or(false);
    Ok((recs, next, ended, v["session"].clone()))
}

fn meta(s: &Value) -> SessionMeta {
    SessionMeta {
        session: s["session"].as_str().unwrap_or("").into(),
        grant: s["grant"].as_str().unwrap_or("").into(),
        host: s["host"].as_str().unwrap_or("").into(),
        cols: s["cols"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| *c > 0)
            .unwrap_or(80),
        rows: s["rows"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| *c > 0)
            .unwrap_or(24),
        started: s["started_unix"].as_i64().unwrap_or(0),
        command: s["command"].as_str().map(String::from),
    }
}

/// `breakglass watch GRANT_ID`.
pub(super) async fn watch(cli: &Cli, grant: &str) -> Result<()> {
    let c = authed(cli)?;
    let v = open_view(&c, grant, "watch").await?;
    let view = v["view"].as_str().unwrap_or("").to_string();
    let mut next: std::collections::BTreeMap<String, (u64, bool)> = Default::default();
    // The holder's output must not command this terminal (clipboard, title, hyperlinks).
    let mut safe = breakglass_core::recording::render::SafeTerminal::default();
    let mut stdout = std::io::stdout();
    eprintln!("watching grant {grant} (read-only; Ctrl-C to stop; this view is audited)");
    let mut idle_rounds = 0u32;
    loop {
        let list = c
            .get(&format!(
                "/grants/{}/recording/sessions?view={}",
                urlencode(grant),
                urlencode(&view)
            ))
            .await?;
        let grant_over = !matches!(list["state"].as_str(), Some("active") | Some("pending"));
        for s in list["sessions"].as_array().into_iter().flatten() {
            let sid = s["session"].as_str().unwrap_or("").to_string();
            let entry = next.entry(sid.clone()).or_insert_with(|| {
                eprintln!(
                    "\r\n--- session {sid} on {} from {} ({}) ---\r",
                    s["host"].as_str().unwrap_or("?"),
                    s["client"].as_str().unwrap_or("?"),
                    s["kind"].as_str().unwrap_or("?")
                );
                (0, false)
            });
            if entry.1 {
                continue;
            }
            loop {
                let (recs, n, ended, _) = fetch(&c, &view, &sid, entry.0).await?;
                for r in &recs {
                    match r.kind {
                        Kind::Output | Kind::Stderr => stdout.write_all(&safe.filter(&r.data))?,
                        Kind::Marker | Kind::Exit | Kind::HiddenInput | Kind::SqlStatement => {
                            if let Some(n) = breakglass_core::recording::render::note(r) {
                                write!(
                                    stdout,
                                    "\r\n[breakglass: {}]\r\n",
                                    breakglass_core::recording::render::plain(&n)
                                )?;
                            }
                        }
                        _ => {}
                    }
                }
                stdout.flush()?;
                let progressed = n > entry.0;
                entry.0 = n;
                if ended {
                    entry.1 = true;
                    eprintln!(
                        "\r\n--- session {sid} ended: {} ---\r",
                        s["end_reason"].as_str().unwrap_or("ended")
                    );
                }
                if !progressed || ended {
                    break;
                }
            }
        }
        let all_ended = next.values().all(|(_, e)| *e);
        if grant_over && all_ended {
            idle_rounds += 1;
            if idle_rounds > 2 {
                eprintln!("grant {grant} is over and every session has ended");
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `breakglass recording GRANT_ID [--session SID] [--format cast|text] [--out FILE]`.
pub(super) async fn recording(
    cli: &Cli,
    grant: &str,
    session: Option<&str>,
    format: &str,
    path: Option<&Path>,
    j: bool,
) -> Result<()> {
    if format != "cast" && format != "text" {
        bail!("unknown format {format:?}: use --format cast (asciinema) or --format text");
    }
    let c = authed(cli)?;
    let v = open_view(&c, grant, if format == "cast" { "export" } else { "text" }).await?;
    let view = v["view"].as_str().unwrap_or("").to_string();
    let all: Vec<Value> = v["sessions"].as_array().cloned().unwrap_or_default();
    let chosen: Vec<Value> = match session {
        Some(sid) => all.into_iter().filter(|s| s["session"] == sid).collect(),
        None => all,
    };
    if chosen.is_empty() {
        bail!(
            "grant {grant} has no recorded session{}",
            session.map(|s| format!(" {s}")).unwrap_or_default()
        );
    }
    if format == "cast" && chosen.len() > 1 {
        let ids: Vec<_> = chosen
            .iter()
            .filter_map(|s| s["session"].as_str())
            .collect();
        bail!(
            "grant {grant} has {} sessions; an asciicast holds one: pick one with --session ({})",
            chosen.len(),
            ids.join(", ")
        );
    }
    let mut sink: Box<dyn Write> = match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut bytes = 0u64;
    for s in &chosen {
        let m = meta(s);
        let sid = m.session.clone();
        let mut from = 0;
        let mut last_ms = 0;
        if format == "cast" {
            let (mut cast, head) = Asciicast::start(&m);
            writeln!(sink, "{head}")?;
            loop {
                let (recs, n, _, _) = fetch(&c, &view, &sid, from).await?;
                for r in &recs {
                    last_ms = last_ms.max(r.ms);
                    bytes += r.data.len() as u64;
                    if let Some(l) = cast.line(r) {
                        writeln!(sink, "{l}")?;
                    }
                }
                if n == from {
                    break;
                }
                from = n;
            }
            if let Some(l) = cast.finish(last_ms) {
                writeln!(sink, "{l}")?;
            }
        } else {
            let (mut t, head) = Transcript::start(&m);
            write!(sink, "{head}")?;
            loop {
                let (recs, n, _, _) = fetch(&c, &view, &sid, from).await?;
                for r in &recs {
                    bytes += r.data.len() as u64;
                    write!(sink, "{}", t.text(r))?;
                }
                if n == from {
                    break;
                }
                from = n;
            }
            writeln!(sink)?;
        }
    }
    sink.flush()?;
    drop(sink);
    if let Some(p) = path {
        out(
            j,
            &json!({"grant": grant, "format": format, "out": p.display().to_string(), "sessions": chosen.len(), "bytes": bytes}),
            || {
                let play = if format == "cast" {
                    format!("; replay it with `asciinema play {}`", p.display())
                } else {
                    String::new()
                };
                format!(
                    "recording of grant {grant} written to {}{play}",
                    p.display()
                )
            },
        );
    }
    Ok(())
}
