//! Logging in and out, who am I, and enrolling an authenticator.

use super::common::{authed, client, out, program, read_stdin_line};
use crate::args::{Cli, TotpCmd};
use crate::client::{self, Client, Problem, SavedSession};
use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};

pub(super) async fn login(
    cli: &Cli,
    user: &str,
    password_stdin: bool,
    otp: &Option<String>,
) -> Result<()> {
    let j = cli.json;
    if !password_stdin && !std::io::stdin().is_terminal() {
        bail!("give the password on standard input with --password-stdin");
    }
    if !password_stdin {
        eprint!("password for {user}: ");
        std::io::stderr().flush()?;
    }
    let pw = read_stdin_line("password")?;
    let c = client(cli)?;
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
        user: user.to_string(),
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
                String::new()
            } else {
                format!(
                    "\nno authenticator yet: run `{} mfa totp enroll`",
                    program()
                )
            }
        )
    });
    Ok(())
}

pub(super) async fn logout(cli: &Cli) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    let r = c.post("/logout", &json!({})).await;
    client::delete_session()?;
    if let Err(e) = r
        && e.downcast_ref::<Problem>()
            .is_none_or(|p| p.slug() != "unauthenticated")
    {
        return Err(e);
    }
    out(j, &json!({"logged_out": true}), || "logged out".into());
    Ok(())
}

pub(super) async fn whoami(cli: &Cli) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
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
    Ok(())
}

pub(super) async fn totp(cli: &Cli, t: &TotpCmd) -> Result<()> {
    let j = cli.json;
    let c = authed(cli)?;
    match t {
        TotpCmd::Enroll => {
            let r = c.post("/mfa/totp/enroll", &json!({})).await?;
            out(j, &r, || {
                let uri = r["otpauth_uri"].as_str().unwrap_or("");
                format!(
                    "Scan this QR code with your authenticator app, or paste the URI below into it:\n\n{}\n  {uri}\n\nsecret (for manual entry): {}\nThen run: {} mfa totp confirm CODE   (CODE: the 6 digits the app shows)",
                    qr_block(uri),
                    r["secret_base32"].as_str().unwrap_or(""),
                    program()
                )
            });
        }
        TotpCmd::Confirm { code } => {
            let r = c.post("/mfa/totp/confirm", &json!({"code": code})).await?;
            out(j, &r, || "authenticator confirmed: MFA is on".into());
        }
    }
    Ok(())
}

/// `text` as a QR code drawn with Unicode half blocks (two modules a character), light
/// modules inked: what a terminal with a dark background shows as dark-on-light, the way
/// `qrencode -t UTF8` does. Includes the quiet zone scanners need.
pub(crate) fn qr_block(text: &str) -> String {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::L) {
        Ok(code) => code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        // Only a text beyond QR capacity (about 2,900 bytes) fails: the URI below still works.
        Err(_) => "(too long for a QR code: paste the URI)".into(),
    }
}
