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

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{SignalKind, signal};

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

/// Runs the session; returns the exit code for the process.
pub async fn run(grant: &str, serial: u64, until: i64, krl: Option<PathBuf>) -> Result<i32> {
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
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| s.starts_with('/'))
        .unwrap_or_else(|| "/bin/sh".into());
    let mut cmd = tokio::process::Command::new(&shell);
    match std::env::var("SSH_ORIGINAL_COMMAND") {
        Ok(c) if !c.is_empty() => {
            cmd.arg("-c").arg(c);
        }
        _ => {
            // A login shell, as sshd would start it.
            let name = Path::new(&shell)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sh".into());
            cmd.arg0(format!("-{name}"));
        }
    }
    cmd.env("BREAKGLASS_GRANT", grant)
        .env("BREAKGLASS_EXPIRES_AT", until.to_string())
        .env_remove("SSH_ORIGINAL_COMMAND");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {shell}"))?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let until_ms = u128::try_from(until).unwrap_or(0) * 1000;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let why = loop {
        tokio::select! {
            status = child.wait() => {
                // The user left: their exit code is the session's.
                return Ok(status.ok().and_then(|s| s.code()).unwrap_or(1));
            }
            _ = tokio::time::sleep_until(deadline) => break "expired".to_string(),
            _ = tick.tick() => {
                if unix_now() >= until {
                    break "expired".to_string();
                }
                match check_krl(krl, serial).await {
                    Krl::Clear => {}
                    Krl::Revoked => break "was revoked".to_string(),
                    Krl::Unusable(why) => break format!("cannot be checked any more: {why}"),
                }
            }
            _ = hup.recv() => {
                // The connection dropped: end the shell too.
                break "lost its connection".to_string();
            }
        }
    };
    eprintln!("\r\nbreakglass: grant {grant} {why}; closing the session.\r");
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw);
    if let Some(pid) = pid {
        let _ = kill(pid, Signal::SIGHUP);
    }
    let _ = killpg(getpgrp(), Signal::SIGHUP);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    Ok(if why == "expired" { 124 } else { 125 })
}
