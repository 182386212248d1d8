//! `breakglass session`: the force-command of breakglass SSH certificates, run by sshd on the
//! host. OpenSSH checks a certificate only at login, so a live session would outlive the grant;
//! this runs the user's shell (or the command they asked for) and ends it at the expiry signed
//! into the certificate, or as soon as the host's KRL lists the certificate's serial.
//!
//! Fail closed: when a KRL is configured (`--krl`) and cannot be read or decoded, no session
//! starts, and a live one ends, with a message naming the file and how to refresh it. The
//! refresher replaces the file atomically (rename), so a read never sees half a file; a failed
//! read is retried once after 100 ms before the session is refused or ended.
//!
//! Ending: SIGHUP to the shell and to this session's process group, SIGKILL to the shell two
//! seconds later, then exit; sshd then closes the channel (with a pty, the kernel hangs up the
//! terminal's foreground jobs as the session leader exits). Processes a user deliberately
//! detaches (`setsid`, daemons) leave the session and are outside its reach.
//!
//! Recording (`--record required|best_effort --server URL`, token in
//! `BREAKGLASS_RECORDER_TOKEN`): the session is recorded and streamed to the server as it runs
//! (`uplink`), on a PTY of our own (`pty`) or through pipes when sshd gave none (`pipes`). A
//! required recording that cannot start means no shell; the server can also end the session
//! (revocation, expiry, size cap) at its next acknowledgement.

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{SignalKind, signal};

mod pipes;
mod pty;
mod uplink;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the host KRL says about a certificate.
enum Krl {
    /// Not revoked (or no KRL configured).
    Clear,
    Revoked,
    /// Missing, unreadable or corrupt: the session cannot be checked, so it must not run.
    Unusable(String),
}

fn read_krl(krl: Option<&Path>, serial: u64) -> Krl {
    let Some(p) = krl else { return Krl::Clear };
    let fix = format!(
        "refresh it with `breakglass ssh krl --out {}` (the host's timer/cron job does this)",
        p.display()
    );
    match std::fs::read(p) {
        Ok(bytes) => match breakglass_connectors::krl::decode(&bytes) {
            Ok(k) if k.revokes_serial(serial) => Krl::Revoked,
            Ok(_) => Krl::Clear,
            Err(e) => Krl::Unusable(format!(
                "the host KRL {} is not a valid OpenSSH KRL ({e}); {fix}",
                p.display()
            )),
        },
        Err(e) => Krl::Unusable(format!(
            "cannot read the host KRL {}: {e}; {fix}",
            p.display()
        )),
    }
}

/// [`read_krl`], with one retry after 100 ms when the KRL is unusable.
async fn check_krl(krl: Option<&Path>, serial: u64) -> Krl {
    match read_krl(krl, serial) {
        Krl::Unusable(_) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            read_krl(krl, serial)
        }
        k => k,
    }
}

/// How the session is recorded (from the certificate's force-command).
pub struct Recording {
    pub best_effort: bool,
    pub server: String,
}

/// Runs the session; returns the exit code for the process.
pub async fn run(
    grant: &str,
    serial: u64,
    until: i64,
    krl: Option<PathBuf>,
    recording: Option<Recording>,
) -> Result<i32> {
    let krl = krl.as_deref();
    if unix_now() >= until {
        eprintln!("breakglass: grant {grant} has expired; no session");
        return Ok(1);
    }
    match check_krl(krl, serial).await {
        Krl::Clear => {}
        Krl::Revoked => {
            eprintln!("breakglass: grant {grant} was revoked; no session");
            return Ok(1);
        }
        Krl::Unusable(why) => {
            eprintln!(
                "breakglass: {why}; no session for grant {grant} until the KRL can be checked"
            );
            return Ok(1);
        }
    }
    // Our own handler: the process-group hang-up below must not end us before we clean up.
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let token = std::env::var("BREAKGLASS_RECORDER_TOKEN").unwrap_or_default();
    // SAFETY of the environment: the token must not reach the user's shell.
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| s.starts_with('/'))
        .unwrap_or_else(|| "/bin/sh".into());
    let command = std::env::var("SSH_ORIGINAL_COMMAND")
        .ok()
        .filter(|c| !c.is_empty());
    if let Some(rec) = recording {
        return recorded(
            grant, serial, until, krl, &mut hup, rec, &token, &shell, command,
        )
        .await;
    }
    let mut cmd = tokio::process::Command::new(&shell);
    shell_args(&mut cmd, &shell, command.as_deref());
    cmd.env("BREAKGLASS_GRANT", grant)
        .env("BREAKGLASS_EXPIRES_AT", until.to_string())
        .env_remove("SSH_ORIGINAL_COMMAND")
        .env_remove("BREAKGLASS_RECORDER_TOKEN");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {shell}"))?;
    let why = tokio::select! {
        status = child.wait() => {
            // The user left: their exit code is the session's.
            return Ok(status.ok().and_then(|s| s.code()).unwrap_or(1));
        }
        why = until_end(grant, until, krl, serial, &mut hup) => why,
    };
    eprintln!("\r\nbreakglass: {why}; closing the session.\r");
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let _ = killpg(getpgrp(), Signal::SIGHUP);
    stop_child(&mut child, pid).await;
    Ok(if why.ends_with(" expired") { 124 } else { 125 })
}

/// `-c COMMAND`, or a login shell (argv[0] `-name`) as sshd would start it.
fn shell_args(cmd: &mut tokio::process::Command, shell: &str, command: Option<&str>) {
    match command {
        Some(c) => {
            cmd.arg("-c").arg(c);
        }
        None => {
            cmd.arg0(format!("-{}", shell_name(shell)));
        }
    }
}

fn shell_name(shell: &str) -> String {
    Path::new(shell)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sh".into())
}

/// Resolves with the reason once the session must end for a reason of the host's own: the
/// expiry signed into the certificate, the KRL listing the serial (or becoming unusable), or
/// the connection dropping.
async fn until_end(
    grant: &str,
    until: i64,
    krl: Option<&Path>,
    serial: u64,
    hup: &mut tokio::signal::unix::Signal,
) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let until_ms = u128::try_from(until).unwrap_or(0) * 1000;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return format!("grant {grant} expired"),
            _ = tick.tick() => {
                if unix_now() >= until {
                    return format!("grant {grant} expired");
                }
                match check_krl(krl, serial).await {
                    Krl::Clear => {}
                    Krl::Revoked => return format!("grant {grant} was revoked"),
                    Krl::Unusable(why) => return format!("grant {grant} cannot be checked any more: {why}"),
                }
            }
            _ = hup.recv() => return format!("the connection of grant {grant} was lost"),
        }
    }
}

/// SIGHUP to the child's process group and the child, SIGKILL two seconds later; its status.
async fn stop_child(child: &mut tokio::process::Child, pid: Option<i32>) -> i32 {
    if let Some(pid) = pid.map(Pid::from_raw) {
        let _ = killpg(pid, Signal::SIGHUP);
        let _ = kill(pid, Signal::SIGHUP);
    }
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(s)) => s.code().unwrap_or(129),
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            137
        }
    }
}

/// Makes text the user typed safe to send (control and invisible characters escaped).
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() || breakglass_server::text::invisible(c).is_some() {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .take(4096)
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn recorded(
    grant: &str,
    serial: u64,
    until: i64,
    krl: Option<&Path>,
    hup: &mut tokio::signal::unix::Signal,
    rec: Recording,
    token: &str,
    shell: &str,
    command: Option<String>,
) -> Result<i32> {
    use std::io::IsTerminal;
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let (cols, rows) = if interactive {
        pty::outer_size()
    } else {
        (0, 0)
    };
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let client = std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|c| c.split(' ').next().map(String::from))
        .unwrap_or_default();
    let hello = serde_json::json!({
        "grant": grant, "serial": serial, "token": token, "host": printable(&host),
        "client": printable(&client), "kind": if interactive { "pty" } else { "exec" },
        "command": command.as_deref().map(printable), "cols": cols, "rows": rows,
    });
    let up = match uplink::open(&rec.server, hello, rec.best_effort).await {
        Ok(u) => u,
        Err(why) => {
            eprintln!(
                "breakglass: {why}\r\nbreakglass: this session must be recorded, so it does not start (grant {grant}).\r"
            );
            return Ok(1);
        }
    };
    let sender = tokio::spawn(up.clone().run());
    let end = until_end(grant, until, krl, serial, hup);
    let result = if interactive {
        let mut cmd = pty_process::Command::new(shell);
        cmd = match command.as_deref() {
            Some(c) => cmd.arg("-c").arg(c),
            None => cmd.arg0(format!("-{}", shell_name(shell))),
        };
        let cmd = cmd
            .env("BREAKGLASS_GRANT", grant)
            .env("BREAKGLASS_EXPIRES_AT", until.to_string())
            .env("BREAKGLASS_SESSION", &up.session)
            .env_remove("SSH_ORIGINAL_COMMAND")
            .env_remove("BREAKGLASS_RECORDER_TOKEN");
        pty::run(up.clone(), cmd, end).await
    } else {
        let mut cmd = tokio::process::Command::new(shell);
        shell_args(&mut cmd, shell, command.as_deref());
        cmd.env("BREAKGLASS_GRANT", grant)
            .env("BREAKGLASS_EXPIRES_AT", until.to_string())
            .env("BREAKGLASS_SESSION", &up.session)
            .env_remove("SSH_ORIGINAL_COMMAND")
            .env_remove("BREAKGLASS_RECORDER_TOKEN");
        pipes::run(up.clone(), cmd, end).await
    };
    let (status, why) = match result {
        Ok(r) => r,
        Err(e) => (None, Some(format!("the recorder failed: {e:#}"))),
    };
    if let Some(s) = status {
        up.record(
            breakglass_core::recording::Kind::Exit,
            s.to_string().as_bytes(),
        );
    }
    up.close();
    // What is buffered goes to the server before we report the end (bounded wait).
    let _ = tokio::time::timeout(Duration::from_secs(5), sender).await;
    let reason = why.clone().unwrap_or_else(|| "the shell exited".into());
    up.end(&reason, status).await;
    Ok(match (&why, status) {
        (None, Some(s)) => s,
        (Some(w), _) if w.ends_with(" expired") => 124,
        _ => 125,
    })
}
