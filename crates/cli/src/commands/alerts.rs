//! The alert outbox: list, retry a dead-lettered alert.

use super::common::{authed, out};
use crate::args::{AlertsCmd, Cli};
use crate::client::urlencode;
use anyhow::Result;
use serde_json::json;

pub(super) async fn alerts(
    cli: &Cli,
    state: &Option<String>,
    cmd: &Option<AlertsCmd>,
) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
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
    Ok(())
}
