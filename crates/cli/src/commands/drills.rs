//! Drills: run now, history, status, people drills (admins; HTTP client of `/api/v1/drills…`).

use super::common::{authed, out};
use crate::args::{Cli, DrillCmd};
use crate::client::urlencode;
use anyhow::{Result, bail};
use serde_json::{Value, json};

fn ms(v: &Value) -> String {
    v.as_u64()
        .map(|m| format!("{:.2}s", m as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// One drill on one line (text from the server is shown as data: control characters dropped).
fn line(d: &Value) -> String {
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let t = &d["timings"];
    let mut s = format!(
        "{}  {:<16} {:<7} {:<9} glass={} first-use={} revocation-lag={} alert={} total={}",
        d["started_at"].as_str().unwrap_or(""),
        clean(d["resource"].as_str().unwrap_or("")),
        d["verdict"].as_str().unwrap_or(""),
        d["trigger"].as_str().unwrap_or(""),
        ms(&t["time_to_glass_ms"]),
        ms(&t["time_to_first_use_ms"]),
        ms(&t["revocation_lag_ms"]),
        ms(&t["alert_latency_ms"]),
        ms(&t["total_ms"]),
    );
    if let Some(step) = d["failed_step"].as_str() {
        s.push_str(&format!(
            "\n    failed at {}: {}",
            clean(step),
            clean(d["error"].as_str().unwrap_or(""))
        ));
    }
    s
}

pub(super) async fn drill(cli: &Cli, cmd: &DrillCmd) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    match cmd {
        DrillCmd::Run { resource } => {
            let r = c
                .post_slow("/drills/run", &json!({"resource": resource}))
                .await?;
            let list = r.as_array().cloned().unwrap_or_default();
            out(j, &r, || {
                list.iter().map(line).collect::<Vec<_>>().join("\n")
            });
            let failed = list.iter().filter(|d| d["verdict"] != "passed").count();
            if failed > 0 {
                bail!(
                    "{failed} drill(s) failed: see the failing step above and `breakglass drill history`"
                );
            }
        }
        DrillCmd::History { resource, limit } => {
            let mut path = format!("/drills?limit={limit}");
            if let Some(r) = resource {
                path.push_str(&format!("&resource={}", urlencode(r)));
            }
            let r = c.get(&path).await?;
            out(j, &r, || {
                let list = r.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    return "no drills yet: `breakglass drill run`".into();
                }
                list.iter().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        DrillCmd::Status => {
            let r = c.get("/drills/status").await?;
            out(j, &r, || {
                r.as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        format!(
                            "{:<16} every {:<6} last={} last-success={} next-due={}{}",
                            s["resource"].as_str().unwrap_or(""),
                            s["every"].as_str().unwrap_or(""),
                            s["last"]["verdict"].as_str().unwrap_or("never"),
                            s["last_success"].as_str().unwrap_or("never"),
                            s["next_due"].as_str().unwrap_or(""),
                            if s["overdue"] == true {
                                "  OVERDUE"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        DrillCmd::Start {
            people,
            duration,
            resources,
            reason,
        } => {
            if !people {
                bail!(
                    "`drill start` opens a people drill: add --people (scheduled drills run with `breakglass drill run`)"
                );
            }
            let body = json!({"for": duration, "resources": resources, "reason": reason});
            let r = c.post("/drills/people", &body).await?;
            out(j, &r, || {
                format!(
                    "{}\nuntil then, grants requested on these resources are marked TRAINING; end it early with `breakglass drill stop`",
                    window_line(&r)
                )
            });
        }
        DrillCmd::Stop { window } => {
            let r = c
                .post("/drills/people/stop", &json!({"window": window}))
                .await?;
            out(j, &r, || lines(&r));
        }
        DrillCmd::Windows { limit } => {
            let r = c.get(&format!("/drills/people?limit={limit}")).await?;
            out(j, &r, || {
                if r.as_array().is_none_or(|a| a.is_empty()) {
                    return "no people drills yet: `breakglass drill start --people --reason …`"
                        .into();
                }
                lines(&r)
            });
        }
    }
    Ok(())
}

fn lines(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .map(window_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A people-drill window on one line (its reason is shown as data: control characters dropped).
fn window_line(w: &Value) -> String {
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let resources: Vec<String> = w["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(clean)
        .collect();
    format!(
        "people drill {} {}  {} → {}  on {}  by {}  \"{}\"",
        w["id"].as_str().unwrap_or(""),
        if w["open"] == true { "OPEN" } else { "ended" },
        w["opened_at"].as_str().unwrap_or(""),
        w["until"].as_str().unwrap_or(""),
        if resources.is_empty() {
            "every resource".to_string()
        } else {
            resources.join(", ")
        },
        clean(w["opened_by"].as_str().unwrap_or("")),
        clean(w["reason"].as_str().unwrap_or("")),
    )
}
