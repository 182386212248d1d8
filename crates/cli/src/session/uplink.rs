//! Streaming a recording to the server while the session runs. The relays append records to a
//! bounded in-memory buffer (never a file the user could edit); one task cuts it into numbered
//! chunks and posts each until the server acknowledges it (the same number again after a
//! network blip: the server keeps chunks gapless and ignores a repeat), and asks every
//! `heartbeat_ms` when idle whether the session may go on (revocation, expiry, size cap).
//!
//! `required`: when no acknowledgement came for `ack_timeout` the session is paused (nothing
//! relayed either way), after twice that it ends. `best_effort`: the session goes on; records
//! that do not fit in the buffer are dropped and the lost time is reported (`X-Gap-Ms`, audited
//! and alerted as `recording.gap`) once the server answers again.

use breakglass_core::recording::{Kind, encode_record};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

/// Records waiting to be sent (or in flight) before the relays stop reading.
const MAX_PENDING: usize = 16 << 20;
/// Chunks posted at once.
const WINDOW: usize = 4;
/// Largest chunk sent (the server takes up to 1 MiB): big chunks keep the per-chunk cost
/// (one request, one durable commit, one audit event) small against the bytes.
const CHUNK: usize = 960 * 1024;

/// What the session should do, as the uplink sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Run,
    /// Not acknowledged for too long: relay nothing until the server answers.
    Paused,
    /// End the session, with this message for the user.
    End(String),
}

#[derive(Debug, Deserialize)]
pub struct Start {
    pub session: String,
    pub secret: String,
    pub mode: String,
    pub ack_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Ack {
    next: u64,
    end: Option<String>,
    capped: bool,
}

struct Buf {
    /// Whole chunks waiting to be sent, and the one being filled (records are never split).
    ready: VecDeque<Vec<u8>>,
    data: Vec<u8>,
    /// Bytes in `ready` and `data`.
    queued: usize,
    /// Bytes cut into the chunk in flight.
    in_flight: usize,
    capped: bool,
    /// Terminal bytes recorded so far (against the session's cap).
    recorded: u64,
    /// Records dropped (best effort) since this instant.
    dropped_since: Option<Instant>,
    closed: bool,
}

pub struct Uplink {
    http: reqwest::Client,
    base: String,
    pub session: String,
    secret: Zeroizing<String>,
    best_effort: bool,
    max_bytes: u64,
    ack_timeout: Duration,
    heartbeat: Duration,
    started: Instant,
    buf: Mutex<Buf>,
    wake: Notify,
    /// Room in the buffer again.
    room: Notify,
    flow: watch::Sender<Flow>,
    last_ack: Mutex<Instant>,
}

fn http(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .user_agent(concat!("breakglass-session/", env!("CARGO_PKG_VERSION")));
    // A private CA for the server's certificate, installed on the host by its admin.
    if let Some(c) = std::fs::read("/etc/breakglass/server-ca.pem")
        .ok()
        .and_then(|pem| reqwest::Certificate::from_pem(&pem).ok())
    {
        b = b.add_root_certificate(c);
    }
    b.build()
}

/// How long opening a session keeps trying to reach the server (a busy server or a short
/// network blip must not deny the emergency; a refusal is final at once).
const OPEN_DEADLINE: Duration = Duration::from_secs(10);

/// Opens the session at the server. The error is the message for the user.
pub async fn open(
    server: &str,
    hello: serde_json::Value,
    best_effort: bool,
) -> Result<Arc<Uplink>, String> {
    let base = server.trim_end_matches('/').to_string();
    let client = http(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + OPEN_DEADLINE;
    let (status, body) = loop {
        let sent = client
            .post(format!("{base}/api/v1/recordings"))
            .json(&hello)
            .send()
            .await;
        let failure = match sent {
            Ok(resp) if !resp.status().is_server_error() => {
                let status = resp.status();
                break (
                    status,
                    resp.json::<serde_json::Value>().await.unwrap_or_default(),
                );
            }
            Ok(resp) => format!("the recording server {base} answered {}", resp.status()),
            Err(e) => format!("cannot reach the recording server {base}: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(failure);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if !status.is_success() {
        let detail = body["detail"].as_str().unwrap_or("no reason given");
        return Err(format!(
            "the server refused to record this session: {detail}"
        ));
    }
    let start: Start = serde_json::from_value(body)
        .map_err(|e| format!("the recording server answered in an unknown form: {e}"))?;
    let ack_timeout = Duration::from_millis(start.ack_timeout_ms.clamp(200, 300_000));
    let (flow, _) = watch::channel(Flow::Run);
    Ok(Arc::new(Uplink {
        http: http(ack_timeout).map_err(|e| e.to_string())?,
        base,
        session: start.session,
        secret: Zeroizing::new(start.secret),
        best_effort: best_effort || start.mode == "best_effort",
        max_bytes: start.max_bytes,
        ack_timeout,
        heartbeat: Duration::from_millis(start.heartbeat_ms.clamp(50, 5000)),
        started: Instant::now(),
        buf: Mutex::new(Buf {
            ready: VecDeque::new(),
            data: Vec::with_capacity(CHUNK),
            queued: 0,
            in_flight: 0,
            capped: false,
            recorded: 0,
            dropped_since: None,
            closed: false,
        }),
        wake: Notify::new(),
        room: Notify::new(),
        flow,
        last_ack: Mutex::new(Instant::now()),
    }))
}

impl Uplink {
    pub fn ms(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX)
    }

    pub fn flow(&self) -> watch::Receiver<Flow> {
        self.flow.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buf> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record. Terminal bytes are dropped once the size cap is reached (a marker
    /// says so), or, best effort, while the buffer is full.
    pub fn record(&self, kind: Kind, data: &[u8]) {
        let mut b = self.lock();
        let terminal = matches!(kind, Kind::Output | Kind::Stderr | Kind::Input);
        if terminal && b.capped {
            return;
        }
        if b.queued + b.in_flight + data.len() > MAX_PENDING && terminal {
            // Only best effort gets here: required waits for room before reading.
            b.dropped_since.get_or_insert_with(Instant::now);
            return;
        }
        let ms = self.ms();
        if !b.data.is_empty() && b.data.len() + 9 + data.len() > CHUNK {
            let full = std::mem::replace(&mut b.data, Vec::with_capacity(CHUNK));
            b.ready.push_back(full);
        }
        encode_record(&mut b.data, kind, ms, data);
        b.queued += 9 + data.len();
        if terminal {
            b.recorded += data.len() as u64;
        }
        drop(b);
        self.wake.notify_one();
    }

    /// Waits until the relays may read more: the buffer has room (required), and, once the
    /// session has recorded its cap, until the server has said what happens (end, or go on
    /// unrecorded) — so no more than one read passes the cap unrecorded.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            {
                let b = self.lock();
                let full = !self.best_effort && b.queued + b.in_flight >= MAX_PENDING;
                let at_cap = b.recorded >= self.max_bytes && !b.capped;
                if b.closed || (!full && !at_cap) {
                    return;
                }
            }
            if matches!(*self.flow.borrow(), Flow::End(_)) {
                return;
            }
            notified.await;
        }
    }

    fn set_flow(&self, f: Flow) {
        self.flow.send_if_modified(|cur| {
            if matches!(cur, Flow::End(_)) || *cur == f {
                return false;
            }
            *cur = f;
            true
        });
    }

    /// Acknowledgements stopped: pause, then end (required); best effort goes on.
    fn check_deadline(&self) {
        let since = self
            .last_ack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if self.best_effort {
            return;
        }
        if since >= self.ack_timeout * 2 {
            self.set_flow(Flow::End(format!(
                "the recording server has not acknowledged for {}s; this session cannot be recorded",
                since.as_secs()
            )));
        } else if since >= self.ack_timeout {
            self.set_flow(Flow::Paused);
        }
    }

    async fn post(
        &self,
        seq: Option<u64>,
        body: bytes::Bytes,
        gap_ms: Option<u64>,
    ) -> Result<Ack, String> {
        let mut req = self
            .http
            .post(format!(
                "{}/api/v1/recordings/{}/chunks",
                self.base, self.session
            ))
            .header(
                "authorization",
                format!("Recorder {}", self.secret.as_str()),
            )
            .body(body);
        if let Some(s) = seq {
            req = req.header("x-chunk", s.to_string());
        }
        if let Some(g) = gap_ms {
            req = req.header("x-gap-ms", g.to_string());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // 409: a chunk that arrived before its predecessor and waited too long; resend.
        if status.is_server_error() || status == reqwest::StatusCode::CONFLICT {
            return Err(format!("server answered {status}"));
        }
        let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            // A client error will not get better by retrying: end the session.
            let detail = v["detail"].as_str().unwrap_or("refused").to_string();
            return Ok(Ack {
                next: seq.unwrap_or(0),
                end: Some(format!(
                    "the recording server refused the recording: {detail}"
                )),
                capped: false,
            });
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    fn acked(&self, ack: &Ack) {
        *self.last_ack.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if ack.capped {
            let mut b = self.lock();
            if !b.capped {
                b.capped = true;
                // What was buffered beyond the cap is not sent; say so in the recording.
                b.data.clear();
                b.ready.clear();
                b.queued = 0;
                let ms = self.ms();
                encode_record(
                    &mut b.data,
                    Kind::Marker,
                    ms,
                    b"recording cap reached: the session goes on, its output is no longer recorded",
                );
            }
        }
        match &ack.end {
            Some(why) => self.set_flow(Flow::End(why.clone())),
            None => self.set_flow(Flow::Run),
        }
        self.room.notify_waiters();
    }

    /// Sends chunks and heartbeats until `close` and everything is acknowledged (or given up).
    pub async fn run(self: Arc<Self>) {
        // Unacknowledged chunks in order; the first `inflight.len()` of them are being posted
        // (up to WINDOW at once: the server orders them, so a slow commit does not stall the
        // session).
        // (chunk number, body as posted — compressed when smaller —, gap, bytes it records)
        let mut queue: VecDeque<(u64, bytes::Bytes, Option<u64>, usize)> = VecDeque::new();
        let mut inflight: VecDeque<tokio::task::JoinHandle<Result<Ack, String>>> = VecDeque::new();
        let mut next_seq = 0u64;
        let mut server_next = 0u64;
        loop {
            // Cut what is buffered into chunks while the window has room.
            while queue.len() < WINDOW {
                let (chunk, gap) = {
                    let mut b = self.lock();
                    let chunk = match b.ready.pop_front() {
                        Some(c) => c,
                        None => std::mem::take(&mut b.data),
                    };
                    b.queued = b.queued.saturating_sub(chunk.len());
                    b.in_flight += chunk.len();
                    // Cleared once a chunk that reports it is acknowledged.
                    (
                        chunk,
                        b.dropped_since.map(|t| t.elapsed().as_millis() as u64),
                    )
                };
                if chunk.is_empty() {
                    break;
                }
                let raw = chunk.len();
                let body = breakglass_core::recording::compress_chunk(&chunk);
                queue.push_back((next_seq, bytes::Bytes::from(body), gap, raw));
                next_seq += 1;
            }
            while inflight.len() < queue.len() {
                let (seq, body, gap, _) = queue[inflight.len()].clone();
                let me = self.clone();
                inflight.push_back(tokio::spawn(
                    async move { me.post(Some(seq), body, gap).await },
                ));
            }
            let Some(front) = inflight.pop_front() else {
                if self.lock().closed {
                    return;
                }
                // Idle: ask whether to go on, then wait for output or the next heartbeat.
                match self.post(None, bytes::Bytes::new(), None).await {
                    Ok(ack) => self.acked(&ack),
                    Err(_) => self.check_deadline(),
                }
                if self.lock().queued == 0 {
                    let _ = tokio::time::timeout(self.heartbeat, self.wake.notified()).await;
                    // A short pause lets output coalesce into one chunk.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                self.check_deadline();
                continue;
            };
            match front.await.unwrap_or_else(|e| Err(e.to_string())) {
                Ok(ack) => {
                    if let Some((_, _, gap, raw)) = queue.pop_front() {
                        let mut b = self.lock();
                        b.in_flight = b.in_flight.saturating_sub(raw);
                        if gap.is_some() {
                            b.dropped_since = None;
                        }
                    }
                    server_next = server_next.max(ack.next);
                    self.acked(&ack);
                    self.room.notify_waiters();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "recording upload failed; retrying");
                    // Let the rest of the window finish; then start again from the oldest
                    // unacknowledged chunk (the server ignores a chunk it already has).
                    for h in inflight.drain(..) {
                        let _ = h.await;
                    }
                    self.check_deadline();
                    if matches!(*self.flow.borrow(), Flow::End(_)) && self.lock().closed {
                        return;
                    }
                    if self.best_effort {
                        // Keep going without these chunks rather than hold the session.
                        let mut b = self.lock();
                        b.dropped_since.get_or_insert_with(Instant::now);
                        b.in_flight = 0;
                        queue.clear();
                        next_seq = server_next;
                        drop(b);
                        self.room.notify_waiters();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            self.check_deadline();
        }
    }

    /// No more records: the run loop ends once what is buffered is acknowledged.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
        self.room.notify_waiters();
    }

    /// Tells the server the session ended (best effort, bounded).
    pub async fn end(&self, reason: &str, exit_status: Option<i32>) {
        let body = serde_json::json!({"reason": reason, "exit_status": exit_status});
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            self.http
                .post(format!(
                    "{}/api/v1/recordings/{}/end",
                    self.base, self.session
                ))
                .header(
                    "authorization",
                    format!("Recorder {}", self.secret.as_str()),
                )
                .json(&body)
                .send(),
        )
        .await;
    }
}
