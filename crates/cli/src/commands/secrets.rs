//! Sealed secrets: put, rotate, show (under an active grant), list.

use super::common::{authed, out};
use crate::args::{Cli, SecretCmd};
use crate::client::urlencode;
use anyhow::{Context, Result, bail};
use serde_json::json;

pub(super) async fn secret(cli: &Cli, cmd: &SecretCmd) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    match cmd {
        SecretCmd::Put { resource } | SecretCmd::Rotate { resource } => {
            let mut value = zeroize::Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut value)
                .context("cannot read the secret from standard input")?;
            let trimmed = zeroize::Zeroizing::new(value.trim_end_matches(['\n', '\r']).to_string());
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
    Ok(())
}
