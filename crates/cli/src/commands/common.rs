//! What the subcommands share: output, prompts, the HTTP client with the saved session, and
//! the data directory on the server host.

use crate::args::Cli;
use crate::client::{self, Client, DEFAULT_SERVER, Problem};
use anyhow::{Context, Result, bail};
use breakglass_core::audit::NewEvent;
use breakglass_core::time::Timestamp;
use breakglass_server::engine::{Clock, SystemClock};
use breakglass_server::keys::{self, DataDir};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

pub fn print_error(e: &anyhow::Error, json_out: bool) {
    if let Some(p) = e.downcast_ref::<Problem>() {
        if json_out {
            println!("{}", json!({"error": p}));
        } else {
            eprintln!("error: {p}");
        }
        return;
    }
    if json_out {
        println!("{}", json!({"error": {"detail": format!("{e:#}")}}));
    } else {
        eprintln!("error: {e:#}");
    }
}

pub(super) fn out(json_out: bool, v: &Value, human: impl FnOnce() -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", human());
    }
}

/// How to run this binary again from the shell it was started in: the name it was started by
/// (`breakglass` from PATH, `./target/release/breakglass`, …), quoted for a POSIX shell when
/// needed, so the next steps the CLI prints work exactly as printed.
pub(crate) fn program() -> String {
    let a0 = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "breakglass".into());
    shell_quote(&a0)
}

/// `s` as one word for a POSIX shell: as is when it holds only safe characters, else in single
/// quotes.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub(super) fn now() -> Timestamp {
    SystemClock.now()
}

pub(super) fn read_stdin_line(what: &str) -> Result<zeroize::Zeroizing<String>> {
    let mut s = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut s)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let trimmed = zeroize::Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_string());
    if trimmed.is_empty() {
        bail!("empty {what} on standard input");
    }
    Ok(trimmed)
}

/// The OTP to send: the flag, or a prompt when on a terminal.
fn prompt_otp(purpose: &str) -> Result<Option<String>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    eprint!("one-time code for {purpose}: ");
    std::io::stderr().flush()?;
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(Some(s.trim().to_string()))
}

pub(super) fn client(cli: &Cli) -> Result<Client> {
    let session = client::load_session()?;
    let server = cli
        .server
        .clone()
        .or_else(|| session.as_ref().map(|s| s.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let token = session.filter(|s| s.server == server).map(|s| s.token);
    Client::new(&server, token, cli.ca_file.as_deref())
}

pub(super) fn authed(cli: &Cli) -> Result<Client> {
    let c = client(cli)?;
    if c.token.is_none() {
        bail!(
            "not logged in to {}: run `{} login --user NAME --password-stdin`",
            c.base,
            program()
        );
    }
    Ok(c)
}

/// Calls `f` with the given OTP; if the server says MFA is required and we are on a terminal,
/// prompts for a code and tries once more.
pub(super) async fn with_otp<F, Fut>(otp: Option<String>, purpose: &str, f: F) -> Result<Value>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    match f(otp.clone()).await {
        Err(e)
            if otp.is_none()
                && e.downcast_ref::<Problem>()
                    .is_some_and(|p| p.slug() == "mfa-required") =>
        {
            match prompt_otp(purpose)? {
                Some(code) => f(Some(code)).await,
                None => Err(e),
            }
        }
        r => r,
    }
}

pub(super) async fn open_dir(
    dir: &Path,
) -> Result<(std::sync::Arc<dyn breakglass_store::Store>, keys::Keys)> {
    Ok(keys::open(&DataDir::new(dir)).await?)
}

/// Who runs an admin command on the server host, as the audit trail names them.
pub(super) fn operator() -> String {
    let actor = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".into());
    format!("operator:{actor}")
}

/// An audit event of an admin command run on the server host.
pub(super) fn admin_event(kind: &str, user: &str, data: Value) -> NewEvent {
    NewEvent {
        ts_ms: now().0,
        kind: kind.into(),
        actor: Some(operator()),
        grant_id: None,
        resource: None,
        data: json!({"user": user, "details": data}),
    }
}
