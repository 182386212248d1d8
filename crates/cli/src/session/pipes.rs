//! A recorded session without a terminal (`ssh host cmd`, scp, sftp, rsync): stdin, stdout and
//! stderr are relayed through pipes and recorded; end of input is passed on (half-close), and
//! the command's exit status is kept.

use super::uplink::{Flow, Uplink};
use anyhow::{Context, Result};
use breakglass_core::recording::Kind;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Copies `from` to `to`, recording each read as `kind`; honours pauses.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    up: Arc<Uplink>,
    kind: Kind,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut flow = up.flow();
    loop {
        while *flow.borrow() == Flow::Paused {
            if flow.changed().await.is_err() {
                return;
            }
        }
        if matches!(*flow.borrow(), Flow::End(_)) {
            return;
        }
        up.room().await;
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                up.record(kind, &buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = to.flush().await;
            }
        }
    }
    let _ = to.shutdown().await;
}

pub async fn run(
    up: Arc<Uplink>,
    mut cmd: tokio::process::Command,
    end: impl std::future::Future<Output = String>,
) -> Result<(Option<i32>, Option<String>)> {
    use std::process::Stdio;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().context("cannot start the command")?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let (Some(cin), Some(cout), Some(cerr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        anyhow::bail!("cannot connect the command's input and output");
    };
    let input = tokio::spawn(pump(tokio::io::stdin(), cin, up.clone(), Kind::Input));
    let output = tokio::spawn(pump(cout, tokio::io::stdout(), up.clone(), Kind::Output));
    let errors = tokio::spawn(pump(cerr, tokio::io::stderr(), up.clone(), Kind::Stderr));
    let mut flow = up.flow();
    tokio::pin!(end);
    let why = tokio::select! {
        s = child.wait() => {
            let code = s.ok().and_then(|s| s.code()).unwrap_or(1);
            let _ = output.await;
            let _ = errors.await;
            input.abort();
            return Ok((Some(code), None));
        }
        why = &mut end => why,
        why = async {
            loop {
                if let Flow::End(w) = flow.borrow().clone() {
                    return w;
                }
                if flow.changed().await.is_err() {
                    return "the recorder stopped".to_string();
                }
            }
        } => why,
    };
    eprintln!("breakglass: {why}; closing the session.");
    up.record(Kind::Marker, why.as_bytes());
    input.abort();
    let code = super::stop_child(&mut child, pid).await;
    output.abort();
    errors.abort();
    Ok((Some(code), Some(why)))
}
