//! A recorded interactive session: the shell runs on a PTY of our own; the user's terminal (the
//! PTY sshd gave us) is switched to raw mode (restored on every way out) and both directions are
//! relayed and recorded. Window size changes (SIGWINCH) are passed on and recorded.
//!
//! Keystrokes typed while the inner terminal is in canonical mode with echo off — how getpass,
//! sudo, passwd, ssh and `read -s` read a password — are recorded as a count only. Line editors
//! (readline, vim, less) also turn echo off, but in non-canonical mode, echoing themselves:
//! those keystrokes are recorded, which is the point.

use super::uplink::{Flow, Uplink};
use anyhow::{Context, Result};
use breakglass_core::recording::Kind;
use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

/// Raw mode on our stdin while alive; the original settings come back on drop.
pub struct RawMode(Termios);

impl RawMode {
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let orig = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = orig.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).ok()?;
        Some(RawMode(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.0);
    }
}

/// The user's terminal size (80x24 if unknown).
pub fn outer_size() -> (u16, u16) {
    termios::tcgetwinsize(std::io::stdin().as_fd())
        .ok()
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map_or((80, 24), |w| (w.ws_col, w.ws_row))
}

/// Whether what is typed now is a secret (canonical mode, echo off).
fn typing_hidden(ctl: &OwnedFd) -> bool {
    termios::tcgetattr(ctl.as_fd()).is_ok_and(|t| {
        !t.local_modes.contains(LocalModes::ECHO) && t.local_modes.contains(LocalModes::ICANON)
    })
}

/// Reads stdin on its own thread (a blocking read on a terminal cannot be cancelled).
fn stdin_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Runs `cmd` on a new PTY until it exits or `end` fires; returns (exit status, why it was
/// ended — None when the shell exited).
pub async fn run(
    up: Arc<Uplink>,
    cmd: pty_process::Command,
    end: impl std::future::Future<Output = String>,
) -> Result<(Option<i32>, Option<String>)> {
    let (cols, rows) = outer_size();
    let (pty, pts) = pty_process::open().context("cannot open a pseudo-terminal")?;
    pty.resize(pty_process::Size::new(rows, cols))
        .context("cannot size the pseudo-terminal")?;
    let ctl = pty
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate the pseudo-terminal")?;
    let mut child = cmd.spawn(pts).context("cannot start the shell")?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let (mut rd, mut wr) = pty.into_split();
    let raw = RawMode::enter();
    let mut input = stdin_reader();
    let mut input_open = true;
    let mut flow = up.flow();
    let mut winch = signal(SignalKind::window_change()).context("cannot handle SIGWINCH")?;
    let mut out = tokio::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    let mut status = None;
    tokio::pin!(end);
    let why = loop {
        let paused = *flow.borrow() == Flow::Paused;
        tokio::select! {
            r = rd.read(&mut buf), if !paused => match r {
                Ok(0) | Err(_) => break None, // every holder of the terminal closed it
                Ok(n) => {
                    up.room().await;
                    out.write_all(&buf[..n]).await?;
                    out.flush().await?;
                    up.record(Kind::Output, &buf[..n]);
                }
            },
            d = input.recv(), if !paused && input_open => match d {
                None => input_open = false,
                Some(data) => {
                    if typing_hidden(&ctl) {
                        up.record(Kind::HiddenInput, data.len().to_string().as_bytes());
                    } else {
                        up.record(Kind::Input, &data);
                    }
                    wr.write_all(&data).await?;
                }
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s.ok().and_then(|s| s.code()).unwrap_or(1));
                // Drain what the shell wrote last, then stop (a background job may hold the
                // terminal open; sshd would not wait for it either).
                drain(&mut rd, &mut out, &up, &mut buf).await;
                break None;
            }
            _ = winch.recv() => {
                let (c, r) = outer_size();
                let _ = wr.resize(pty_process::Size::new(r, c));
                up.record(Kind::Resize, format!("{c}x{r}").as_bytes());
            }
            _ = flow.changed() => {
                let f = flow.borrow().clone();
                match f {
                    Flow::End(why) => break Some(why),
                    Flow::Paused => {
                        say(&mut out, "the recording server is not acknowledging; the session is paused until it does").await;
                        up.record(Kind::Marker, b"paused: the recording server stopped acknowledging");
                    }
                    Flow::Run => {
                        say(&mut out, "recording resumed").await;
                        up.record(Kind::Marker, b"resumed");
                    }
                }
            }
            why = &mut end => break Some(why),
        }
    };
    if let Some(why) = &why {
        say(&mut out, &format!("{why}; closing the session.")).await;
        up.record(Kind::Marker, why.as_bytes());
        drop(wr);
        drop(rd);
        status = Some(super::stop_child(&mut child, pid).await);
    } else if status.is_none() {
        status = Some(
            match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(Ok(s)) => s.code().unwrap_or(1),
                _ => super::stop_child(&mut child, pid).await,
            },
        );
    }
    drop(raw);
    Ok((status, why))
}

async fn drain(
    rd: &mut pty_process::OwnedReadPty,
    out: &mut tokio::io::Stdout,
    up: &Uplink,
    buf: &mut [u8],
) {
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(50), rd.read(buf)).await {
        if n == 0 {
            break;
        }
        let _ = out.write_all(&buf[..n]).await;
        up.record(Kind::Output, &buf[..n]);
    }
    let _ = out.flush().await;
}

async fn say(out: &mut tokio::io::Stdout, msg: &str) {
    let _ = out
        .write_all(format!("\r\nbreakglass: {msg}\r\n").as_bytes())
        .await;
    let _ = out.flush().await;
}
