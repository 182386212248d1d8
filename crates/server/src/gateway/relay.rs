//! The relay of one logged-in gateway connection. Client → database: each read is decoded into
//! whole messages; what they carry (SQL text, bound values) is written ahead as `q` records in a
//! chunk committed with its `recording.chunk` event, and only then are the bytes forwarded —
//! fail closed: a required recording that cannot be written ends the connection before the
//! statement reaches the database. Database → client: the statement recorder turns the answers
//! into `s` records (text, parameters, outcome, timing), committed with the next write-ahead or
//! within [`FLUSH_EVERY`]. The grant is re-checked every [`CHECK_EVERY`] and at its expiry to
//! the millisecond: when it ends, the running statement is cancelled upstream and the client
//! gets a FATAL 57P01 naming the grant.

use super::login::send_error;
use super::{Io, MAX_MESSAGE, Shared};
use crate::engine::Engine;
use crate::engine::gateway::GatewayGrant;
use crate::error::ApiError;
use breakglass_core::grant::GrantInfo;
use breakglass_core::pgwire::encode::ErrorSpec;
use breakglass_core::pgwire::{
    BackendDecoder, BackendMessage, FrontendDecoder, FrontendMessage, Recorder, RecorderLimits,
    StatementRecord,
};
use breakglass_core::recording::{self, Kind, Mode};
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

pub const CHECK_EVERY: Duration = Duration::from_millis(250);
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A chunk is cut before it passes this many bytes (records are far smaller, see LIMITS).
const CHUNK_TARGET: usize = 512 * 1024;
/// Small enough that one record, JSON-escaped at worst (×6), stays under a chunk's 1 MiB.
const LIMITS: RecorderLimits = RecorderLimits {
    max_text: 48 * 1024,
    max_param: 16 * 1024,
    max_params_total: 64 * 1024,
    max_statements: 1024,
    max_portals: 256,
    max_pending: 65_536,
};

/// A logged-in connection.
pub(crate) struct Conn {
    pub grant: GatewayGrant,
    pub session: Option<String>,
    pub upstream: Box<dyn Io>,
    pub key: (u32, u32),
    pub peer: SocketAddr,
}

/// The connection's statement log.
struct Log {
    engine: Arc<Engine>,
    info: GrantInfo,
    session: Option<String>,
    mode: Mode,
    t0: Instant,
    seq: tokio::sync::Mutex<u64>,
    /// Bytes committed so far, and the resource's `recording_max_bytes`: past it the
    /// connection ends (a statement log that stops recording would defeat its purpose).
    bytes: std::sync::atomic::AtomicU64,
    max_bytes: u64,
    done: Mutex<Vec<Vec<u8>>>,
    recorder: Mutex<Option<Recorder>>,
}

fn fatal(sqlstate: &str, message: impl Into<String>) -> ErrorSpec {
    super::login::fatal(sqlstate, message).0
}

/// How one direction ended: a reason for the record, and what to tell the client, if anything.
type Ended = (String, Option<ErrorSpec>);

impl Log {
    fn ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn record(kind: Kind, ms: u64, json: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(json.len() + 9);
        recording::encode_record(
            &mut out,
            kind,
            u32::try_from(ms).unwrap_or(u32::MAX),
            json.as_bytes(),
        );
        out
    }

    fn finished(&self, records: Vec<StatementRecord>) {
        if self.session.is_none() || records.is_empty() {
            return;
        }
        let ms = self.ms();
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            let json = serde_json::to_string(&r).unwrap_or_default();
            done.push(Log::record(Kind::SqlStatement, ms, &json));
        }
    }

    /// Commits the finished statements and `ahead` (in that order), in as many chunks as it
    /// takes; returns once all are durable.
    async fn commit(&self, ahead: Vec<Vec<u8>>) -> Result<(), ApiError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let mut seq = self.seq.lock().await;
        let mut records = std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()));
        records.extend(ahead);
        let total: u64 = records.iter().map(|r| r.len() as u64).sum();
        let so_far = self
            .bytes
            .fetch_add(total, std::sync::atomic::Ordering::SeqCst);
        if so_far + total > self.max_bytes {
            return Err(ApiError::Conflict(format!(
                "the session reached its recording cap of {} bytes",
                self.max_bytes
            )));
        }
        let mut chunk = Vec::new();
        for r in records {
            if !chunk.is_empty() && chunk.len() + r.len() > CHUNK_TARGET {
                self.engine
                    .gateway_chunk(&self.info, session, *seq, std::mem::take(&mut chunk))
                    .await?;
                *seq += 1;
            }
            chunk.extend_from_slice(&r);
        }
        if !chunk.is_empty() {
            self.engine
                .gateway_chunk(&self.info, session, *seq, chunk)
                .await?;
            *seq += 1;
        }
        Ok(())
    }
}

async fn client_to_upstream(
    log: Arc<Log>,
    mut rd: ReadHalf<Box<dyn Io>>,
    mut up: WriteHalf<Box<dyn Io>>,
) -> Ended {
    let mut dec = FrontendDecoder::tagged(MAX_MESSAGE);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) => return ("the client closed the connection".into(), None),
            Ok(_) => {}
            Err(e) => return (format!("the client connection failed: {e}"), None),
        }
        let mut off = 0;
        let mut ahead = Vec::new();
        let mut terminate = false;
        {
            let now = log.ms();
            let mut rec = log.recorder.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (msg, n) = match dec.decode(&buf[off..]) {
                    Ok(Some((f, n))) => (f.message, n),
                    Ok(None) => break,
                    Err(e) => {
                        let why = format!("protocol violation: {e}");
                        return (why.clone(), Some(fatal("08P01", why)));
                    }
                };
                if let Some(r) = rec.as_mut() {
                    if log.session.is_some()
                        && let Some(s) = r.sent(&msg)
                    {
                        let json = serde_json::to_string(&s).unwrap_or_default();
                        ahead.push(Log::record(Kind::SqlSent, now, &json));
                    }
                    if let Err(e) = r.frontend(&msg, now) {
                        let why = format!("the statement log refused a message: {e}");
                        return (why.clone(), Some(fatal("54000", why)));
                    }
                }
                terminate |= matches!(msg, FrontendMessage::Terminate);
                off += n;
            }
        }
        if !ahead.is_empty()
            && let Err(e) = log.commit(ahead).await
        {
            if let ApiError::Conflict(why) = &e {
                // The cap: nothing more is recorded, so nothing more is run.
                return (
                    why.clone(),
                    Some(fatal("53400", format!("{why}: the connection is closed"))),
                );
            }
            if log.mode == Mode::Required {
                let why = format!(
                    "breakglass could not record the statement, so it was not run and the connection ends: {e}"
                );
                return (why.clone(), Some(fatal("58030", why)));
            }
            tracing::warn!(grant = %log.info.id, "statement not recorded (recording: best_effort): {e}");
        }
        if let Err(e) = up.write_all(&buf[..off]).await {
            return (format!("the database connection failed: {e}"), None);
        }
        buf.advance(off);
        if terminate {
            return ("the client ended the session".into(), None);
        }
    }
}

async fn upstream_to_client(
    log: Arc<Log>,
    mut rd: ReadHalf<Box<dyn Io>>,
    client: Arc<tokio::sync::Mutex<WriteHalf<Box<dyn Io>>>>,
) -> Ended {
    let dec = BackendDecoder::new(MAX_MESSAGE);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) => return ("the database server closed the connection".into(), None),
            Ok(_) => {}
            Err(e) => return (format!("the database connection failed: {e}"), None),
        }
        let mut off = 0;
        let mut fatal_at = None;
        let records = {
            let now = log.ms();
            let mut rec = log.recorder.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (msg, n) = match dec.decode(&buf[off..]) {
                    Ok(Some((f, n))) => (f.message, n),
                    Ok(None) => break,
                    Err(e) => {
                        let why = format!("the database server broke the protocol: {e}");
                        return (why.clone(), Some(fatal("08P01", why)));
                    }
                };
                // The server ends the session: if because the grant ended (its role's
                // backends are terminated at revocation), the client hears it from us.
                if let BackendMessage::ErrorResponse(f) = &msg
                    && matches!(f.severity(), Some(b"FATAL" | b"PANIC"))
                {
                    fatal_at = Some(off);
                }
                if let Some(r) = rec.as_mut()
                    && let Err(e) = r.backend(&msg, now)
                {
                    let why = format!("the statement log lost track of the session: {e}");
                    return (why.clone(), Some(fatal("XX000", why)));
                }
                off += n;
            }
            rec.as_mut().map(Recorder::take_records).unwrap_or_default()
        };
        log.finished(records);
        if let Some(at) = fatal_at
            && let Err(why) = log.engine.gateway_still(&log.info.id).await
        {
            let mut w = client.lock().await;
            let _ = w.write_all(&buf[..at]).await;
            let msg = format!("{why}: the connection is closed");
            return (why, Some(fatal("57P01", msg)));
        }
        let mut w = client.lock().await;
        if let Err(e) = w.write_all(&buf[..off]).await {
            return (format!("the client connection failed: {e}"), None);
        }
        drop(w);
        buf.advance(off);
    }
}

/// Milliseconds until `at` by the engine's clock (0 when past).
fn until(engine: &Engine, at: breakglass_core::time::Timestamp) -> Duration {
    let now = engine.now();
    Duration::from_millis(u64::try_from(at.as_millis() - now.as_millis()).unwrap_or(0))
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    conn: Conn,
    client: Box<dyn Io>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let engine = shared.engine.clone();
    let Conn {
        grant,
        session,
        upstream,
        key,
        peer,
    } = conn;
    let log = Arc::new(Log {
        engine: engine.clone(),
        info: grant.info.clone(),
        session,
        mode: grant.settings.mode,
        t0: Instant::now(),
        seq: tokio::sync::Mutex::new(0),
        bytes: std::sync::atomic::AtomicU64::new(0),
        max_bytes: grant.settings.max_bytes,
        done: Mutex::new(Vec::new()),
        recorder: Mutex::new(Some(Recorder::new(LIMITS))),
    });
    let (crd, cwr) = tokio::io::split(client);
    let cwr = Arc::new(tokio::sync::Mutex::new(cwr));
    let (urd, uwr) = tokio::io::split(upstream);
    let mut c2u = tokio::spawn(client_to_upstream(log.clone(), crd, uwr));
    let mut u2c = tokio::spawn(upstream_to_client(log.clone(), urd, cwr.clone()));
    let mut check = tokio::time::interval(CHECK_EVERY);
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut expires = grant.expires_at;
    let ended = |r: Result<Ended, tokio::task::JoinError>| {
        r.unwrap_or_else(|_| ("the relay stopped".into(), None))
    };
    let (reason, tell, grant_over) = loop {
        let wait = until(&engine, expires);
        tokio::select! {
            r = &mut c2u => { let (a, b) = ended(r); break (a, b, false) }
            r = &mut u2c => { let (a, b) = ended(r); break (a, b, false) }
            _ = tokio::time::sleep(wait) => {}
            _ = check.tick() => {}
            _ = flush.tick() => {
                if let Err(e) = log.commit(Vec::new()).await {
                    tracing::warn!(grant = %grant.info.id, "gateway statement log: {e}");
                    if log.mode == Mode::Required {
                        let why = format!("breakglass could not record the session's statements: {e}");
                        break (why.clone(), Some(fatal("58030", why)), true);
                    }
                }
                continue;
            }
            _ = shutdown.changed() => {
                let why = "the breakglass server is shutting down".to_string();
                break (why.clone(), Some(fatal("57P01", why)), true);
            }
        }
        match engine.gateway_still(&grant.info.id).await {
            Ok(e) => expires = e,
            Err(why) => {
                let msg = format!("{why}: the connection is closed");
                break (why, Some(fatal("57P01", msg)), true);
            }
        }
    };
    // Wait (briefly) for a write to the client in progress, so the error follows whole messages;
    // from here nothing the database sends reaches the client.
    let writer = tokio::time::timeout(Duration::from_secs(1), cwr.lock()).await;
    c2u.abort();
    u2c.abort();
    if grant_over {
        // The running statement stops at the database too, not only for the client — after the
        // relay stopped, so the client hears our FATAL naming the grant, not the database's
        // "canceling statement due to user request".
        let target = shared
            .cancels
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        if let Some(t) = target {
            super::send_cancel(&t).await;
        }
    }
    if let (Ok(mut w), Some(e)) = (writer, tell) {
        send_error(&mut *w, &e).await;
        let _ = w.shutdown().await;
    }
    let rest = log
        .recorder
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|r| r.finish(log.ms()))
        .unwrap_or_default();
    log.finished(rest);
    if let Err(e) = log.commit(Vec::new()).await {
        tracing::warn!(grant = %grant.info.id, "gateway statement log at the end: {e}");
    }
    if let Ok(mut m) = shared.cancels.lock() {
        m.remove(&key);
    }
    if let Some(s) = &log.session {
        engine.gateway_end(&grant.info, s, &reason).await;
    }
    tracing::info!(grant = %grant.info.id, %peer, "gateway connection closed: {reason}");
}
