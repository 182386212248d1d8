//! The statement recorder: fed every client message and every server message of one connection,
//! in the order each side sent them, it produces one [`StatementRecord`] per statement run.
//!
//! * Simple protocol: one record per Query message (a multi-statement string is one record),
//!   finished at ReadyForQuery; its tag is the command tags joined by `; `, its row count their
//!   sum; the first ErrorResponse makes it an error.
//! * Extended protocol: Parse texts are remembered by statement name, Bind joins a statement with
//!   its parameters into a portal (text format → UTF-8, lossy; binary → `\x` + hex), each
//!   Execute is a record, finished by CommandComplete, EmptyQueryResponse, PortalSuspended or
//!   ErrorResponse.
//! * COPY: the COPY statement and its outcome (the row count from its tag); CopyData bytes are
//!   counted both ways, never kept.
//! * FunctionCall ('F', no SQL): a record `[FunctionCall oid N]` with its arguments.
//!
//! The recorder follows the server exactly rather than the client's intent: a Parse, Bind or
//! Close takes effect when its ParseComplete, BindComplete or CloseComplete arrives, and an
//! Execute is resolved to a text when the server answers it, so a refused Parse cannot make a
//! later Execute be recorded with the wrong text. After an error in the extended protocol the
//! server skips every message up to the next Sync; those statements are recorded as
//! [`Outcome::Skipped`] — except the first Execute after a failed Parse/Bind/Describe/Close,
//! which carries that error (a failed step with no Execute after it gets a record of its own,
//! [`Caveat::ProtocolStep`]). An ErrorResponse at Sync (the implicit COMMIT failing) is also a
//! record of its own. [`Recorder::finish`] records what never got an answer as
//! [`Outcome::Interrupted`].
//!
//! # What it cannot know
//!
//! * Statements prepared with SQL `PREPARE` and cursors opened with SQL `DECLARE` are invisible
//!   to the protocol: a Bind or Execute naming one is recorded with a placeholder text and
//!   [`Caveat::UnknownStatement`] / [`Caveat::UnknownPortal`] (the SQL that created it is a
//!   record of its own).
//! * SQL can also replace or drop what Parse/Bind made (`DEALLOCATE s; PREPARE s AS …`,
//!   `CLOSE p; DECLARE p …`). After any statement containing one of the words `PREPARE`,
//!   `DEALLOCATE`, `DISCARD`, `DECLARE` or `CLOSE` (anywhere, strings included), everything
//!   remembered is marked [`Caveat::MayBeOutdated`] until prepared again. Dynamic SQL that
//!   builds those words at run time (`EXECUTE 'DEALLOC' || 'ATE s'`) escapes this.
//! * `PASSWORD $1` is refused by PostgreSQL's grammar (passwords must be literals), but the
//!   Bind carrying `$1` may still be sent in the same pipeline: its value is redacted anyway.
//! * Timestamps are the caller's: `started_at` is when the client sent the message (pipelined
//!   statements share it), `ended_at` when the answer was fed in.
//!
//! # Memory
//!
//! Bounded by [`RecorderLimits`]: statement text and each parameter are cut (marked
//! `…[truncated: N bytes in all]`), a Bind keeps at most `max_params_total` bytes of values, and
//! the counts of remembered statements, named portals and unanswered messages are capped — past
//! a cap [`Recorder::frontend`] returns an error before taking the message into account (the
//! gateway should not forward it, and close the connection). Worst case with the defaults:
//! about 64 MiB of statement texts and 256 MiB of portal parameters per connection. Messages
//! awaiting an answer keep at most their capped text and parameters (about twice the bytes of
//! the message at worst): the gateway bounds them by not reading faster from the client than
//! the server answers (backpressure). Records are kept until [`Recorder::take_records`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Format;
use super::backend::{BackendMessage, Fields, TransactionStatus};
use super::frontend::{FrontendMessage, TargetKind};
use super::redact::{MASK, redact_sql, redact_value};

/// The bounds on what a recorder keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderLimits {
    /// Bytes of statement text kept per record (after redaction).
    pub max_text: usize,
    /// Bytes kept per parameter value (as rendered: binary values take two per byte).
    pub max_param: usize,
    /// Bytes of parameter values kept per Bind, all parameters together.
    pub max_params_total: usize,
    /// Named prepared statements remembered at once.
    pub max_statements: usize,
    /// Named portals remembered at once.
    pub max_portals: usize,
    /// Client messages waiting for the server's answer.
    pub max_pending: usize,
}

impl Default for RecorderLimits {
    fn default() -> Self {
        RecorderLimits {
            max_text: 64 * 1024,
            max_param: 64 * 1024,
            max_params_total: 1024 * 1024,
            max_statements: 1024,
            max_portals: 256,
            max_pending: 65_536,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Simple,
    Extended,
    FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// CommandComplete (or EmptyQueryResponse: empty tag, no rows).
    Ok {
        tag: String,
        rows: Option<u64>,
    },
    /// PortalSuspended: the Execute's row limit was reached after `rows` rows.
    Suspended {
        rows: u64,
    },
    Error {
        sqlstate: String,
        message: String,
    },
    /// Not run: an earlier error in the same pipeline made the server skip it.
    Skipped,
    /// No answer before the connection ended.
    Interrupted,
}

/// Why a record's text may not be what ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Caveat {
    /// SQL that can replace prepared statements or portals ran after this one was prepared.
    MayBeOutdated,
    /// Bind named a statement never prepared by Parse here (SQL PREPARE, or over the limit).
    UnknownStatement,
    /// Execute named a portal never bound here (a SQL cursor, or over the limit).
    UnknownPortal,
    /// The record is of a failed protocol step (Parse, Bind, Describe, Close, or the implicit
    /// COMMIT at Sync), not of a statement run.
    ProtocolStep,
}

/// One statement as run (or refused) on the connection. Serializes to the JSON an audit event
/// can carry (`outcome` flattened: `{"outcome": "ok", "tag": …, "rows": …}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementRecord {
    pub protocol: Protocol,
    /// Redacted, at most `max_text` bytes plus a truncation marker.
    pub text: String,
    /// Bound parameters as text (`None` = NULL), redacted and capped.
    pub params: Vec<Option<String>>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Caller's milliseconds when the client sent it.
    pub started_at: u64,
    /// Caller's milliseconds when its answer arrived.
    pub ended_at: u64,
    /// DataRow messages the server sent for it.
    pub data_rows: u64,
    /// CopyData payload bytes, both directions.
    pub copy_bytes: u64,
    /// Whether a secret was replaced in the text or the parameters.
    pub redacted: bool,
    pub caveat: Option<Caveat>,
}

/// A client message as written ahead, before it is forwarded (see [`Recorder::sent`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    /// `query`, `parse`, `bind` or `function-call`.
    pub msg: &'static str,
    /// The prepared statement (parse) or portal (bind) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For bind: the statement bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
    pub redacted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecorderError {
    #[error(
        "more than {limit} named prepared statements: refuse the Parse and close the connection"
    )]
    TooManyStatements { limit: usize },
    #[error("more than {limit} named portals: refuse the Bind and close the connection")]
    TooManyPortals { limit: usize },
    #[error("more than {limit} messages await the server's answer: stop reading from the client")]
    TooManyPending { limit: usize },
    #[error("the server sent {got}, which answers nothing the recorder expects")]
    OutOfStep { got: &'static str },
}

/// A remembered statement text.
#[derive(Debug)]
struct Prepared {
    text: String,
    redacted: bool,
    secret_params: Vec<usize>,
    /// Mentions PREPARE, DEALLOCATE, DISCARD, DECLARE or CLOSE.
    touches_session: bool,
    /// The parameter type OIDs the Parse gave (0 = inferred), to show binary values.
    param_types: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Stmt {
    prepared: Arc<Prepared>,
    stale: bool,
}

/// A portal, or what an Execute resolves to.
#[derive(Debug, Clone)]
struct Portal {
    prepared: Arc<Prepared>,
    params: Arc<Vec<Option<String>>>,
    params_redacted: bool,
    caveat: Option<Caveat>,
}

#[derive(Debug)]
struct Run {
    protocol: Protocol,
    /// For Execute: the portal; resolved when the server answers.
    portal: Vec<u8>,
    resolved: Option<Portal>,
    started_at: u64,
    data_rows: u64,
    copy_bytes: u64,
    tags: String,
    rows: Option<u64>,
    error: Option<(String, String)>,
    copy_in: bool,
}

#[derive(Debug)]
enum Pending {
    Parse {
        name: Vec<u8>,
        prepared: Arc<Prepared>,
        at: u64,
    },
    Bind {
        portal: Vec<u8>,
        statement: Vec<u8>,
        params: Vec<Option<String>>,
        params_redacted: bool,
        at: u64,
    },
    Describe {
        kind: TargetKind,
        name: Vec<u8>,
        at: u64,
    },
    Close {
        kind: TargetKind,
        name: Vec<u8>,
        at: u64,
    },
    Execute(Run),
    Query(Run),
    FunctionCall(Run),
    Sync {
        at: u64,
    },
    /// The client's CopyDone/CopyFail, sent before the server said COPY began.
    CopyEnd,
}

/// What the server skips until Sync after an extended-protocol error: the effects the skipped
/// messages would have had (to record skipped statements with the text meant), and the error of
/// a failed step still waiting for an Execute to carry it.
#[derive(Debug, Default)]
struct Skip {
    statements: HashMap<Vec<u8>, Option<Stmt>>,
    portals: HashMap<Vec<u8>, Option<Portal>>,
    failed: Option<(StatementRecord, (String, String))>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Recorder {
    limits: RecorderLimits,
    statements: HashMap<Vec<u8>, Stmt>,
    portals: HashMap<Vec<u8>, Portal>,
    pending: VecDeque<Pending>,
    skipping: Option<Skip>,
    copy_in_open: bool,
    standard_conforming_strings: bool,
    stray_copy_bytes: u64,
    records: Vec<StatementRecord>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(RecorderLimits::default())
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Cuts `s` to at most `max` bytes (on a char boundary) and marks the cut.
fn cap(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("…[truncated: {total} bytes in all]"));
    s
}

/// The named entries of a statement or portal map (the unnamed one is always allowed).
fn count_named<V>(map: &HashMap<Vec<u8>, V>) -> usize {
    map.len() - usize::from(map.contains_key(b"".as_slice()))
}

fn touches_session(text: &str) -> bool {
    const WORDS: [&str; 5] = ["prepare", "deallocate", "discard", "declare", "close"];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .any(|w| WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

fn placeholder(text: String) -> Arc<Prepared> {
    Arc::new(Prepared {
        text,
        redacted: false,
        secret_params: Vec::new(),
        touches_session: false,
        param_types: Vec::new(),
    })
}

/// A binary parameter of a well-known type as PostgreSQL would print it.
fn binary_value(oid: u32, v: &[u8]) -> Option<String> {
    Some(match (oid, v.len()) {
        (16, 1) => if v[0] != 0 { "t" } else { "f" }.to_string(),
        (21, 2) => i16::from_be_bytes(v.try_into().ok()?).to_string(),
        (23, 4) => i32::from_be_bytes(v.try_into().ok()?).to_string(),
        (20, 8) => i64::from_be_bytes(v.try_into().ok()?).to_string(),
        (26, 4) => u32::from_be_bytes(v.try_into().ok()?).to_string(),
        (700, 4) => f32::from_be_bytes(v.try_into().ok()?).to_string(),
        (701, 8) => f64::from_be_bytes(v.try_into().ok()?).to_string(),
        _ => return None,
    })
}

fn error_info(f: &Fields<'_>, max: usize) -> (String, String) {
    (
        cap(lossy(f.sqlstate().unwrap_or_default()), 16),
        cap(lossy(f.message().unwrap_or_default()), max),
    )
}

impl Run {
    fn new(protocol: Protocol, resolved: Option<Portal>, portal: &[u8], at: u64) -> Run {
        Run {
            protocol,
            portal: portal.to_vec(),
            resolved,
            started_at: at,
            data_rows: 0,
            copy_bytes: 0,
            tags: String::new(),
            rows: None,
            error: None,
            copy_in: false,
        }
    }
}

impl Recorder {
    pub fn new(limits: RecorderLimits) -> Self {
        Recorder {
            limits,
            statements: HashMap::new(),
            portals: HashMap::new(),
            pending: VecDeque::new(),
            skipping: None,
            copy_in_open: false,
            standard_conforming_strings: true,
            stray_copy_bytes: 0,
            records: Vec::new(),
        }
    }

    /// The finished records so far (drain after each call to bound memory).
    pub fn take_records(&mut self) -> Vec<StatementRecord> {
        std::mem::take(&mut self.records)
    }

    /// Client messages still waiting for the server's answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// CopyData bytes the client sent outside any COPY (the server ignores them).
    pub fn stray_copy_bytes(&self) -> u64 {
        self.stray_copy_bytes
    }

    fn prepare(&self, query: &[u8], param_types: &[u32]) -> Arc<Prepared> {
        let text = lossy(query);
        let r = redact_sql(&text, self.standard_conforming_strings);
        Arc::new(Prepared {
            param_types: param_types.to_vec(),
            touches_session: touches_session(&text),
            text: cap(r.text, self.limits.max_text),
            redacted: r.redacted,
            secret_params: r.secret_params,
        })
    }

    /// Renders bound values: text → UTF-8 (lossy, then redacted), binary → `\x` + hex; capped.
    /// The parameter types of statement `name`: from a Parse still awaiting its answer, else
    /// from the statement remembered.
    fn types_of(&self, name: &[u8]) -> Vec<u32> {
        let pending = self.pending.iter().rev().find_map(|p| match p {
            Pending::Parse {
                name: n, prepared, ..
            } if n.as_slice() == name => Some(prepared.param_types.clone()),
            _ => None,
        });
        pending
            .or_else(|| {
                self.statements
                    .get(name)
                    .map(|s| s.prepared.param_types.clone())
            })
            .unwrap_or_default()
    }

    fn render(
        &self,
        values: &[Option<&[u8]>],
        formats: &[Format],
        types: &[u32],
    ) -> (Vec<Option<String>>, bool) {
        let mut budget = self.limits.max_params_total;
        let mut redacted = false;
        let out = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = (*v)?;
                let room = self.limits.max_param.min(budget);
                let (shown, s) = match Format::of(formats, i) {
                    Format::Text => {
                        let shown = room.min(v.len());
                        let s = lossy(v.get(..shown).unwrap_or_default());
                        let s = match redact_value(&s) {
                            Some(r) => {
                                redacted = true;
                                r
                            }
                            None => s,
                        };
                        (shown, s)
                    }
                    Format::Binary
                        if let Some(s) = types.get(i).and_then(|t| binary_value(*t, v)) =>
                    {
                        (v.len(), s)
                    }
                    Format::Binary => {
                        let shown = (room.saturating_sub(2) / 2).min(v.len());
                        let hex = hex::encode(v.get(..shown).unwrap_or_default());
                        (shown, format!("\\x{hex}"))
                    }
                };
                budget = budget.saturating_sub(s.len());
                Some(if shown < v.len() {
                    format!("{s}…[truncated: {} bytes in all]", v.len())
                } else {
                    s
                })
            })
            .collect();
        (out, redacted)
    }

    fn check_pending(&self) -> Result<(), RecorderError> {
        if self.pending.len() >= self.limits.max_pending {
            return Err(RecorderError::TooManyPending {
                limit: self.limits.max_pending,
            });
        }
        Ok(())
    }

    /// What a client message carries that must be on record before it is forwarded (SQL text,
    /// bound values), redacted and capped as in the records: the gateway's write-ahead. `None`
    /// for messages that carry neither (Execute, Sync, Describe, COPY data…).
    pub fn sent(&self, msg: &FrontendMessage<'_>) -> Option<Sent> {
        use FrontendMessage as F;
        let name = |b: &[u8]| lossy(b);
        Some(match msg {
            F::Query(q) => {
                let p = self.prepare(q, &[]);
                Sent {
                    msg: "query",
                    name: None,
                    statement: None,
                    text: Some(p.text.clone()),
                    params: Vec::new(),
                    redacted: p.redacted,
                }
            }
            F::Parse(p) => {
                let pr = self.prepare(p.query, &p.param_types);
                Sent {
                    msg: "parse",
                    name: Some(name(p.name)),
                    statement: None,
                    text: Some(pr.text.clone()),
                    params: Vec::new(),
                    redacted: pr.redacted,
                }
            }
            F::Bind(b) => {
                let (mut params, mut redacted) =
                    self.render(&b.params, &b.param_formats, &self.types_of(b.statement));
                if let Some(st) = self.statements.get(b.statement) {
                    for i in &st.prepared.secret_params {
                        if let Some(Some(v)) = params.get_mut(*i) {
                            *v = MASK.to_string();
                            redacted = true;
                        }
                    }
                }
                Sent {
                    msg: "bind",
                    name: Some(name(b.portal)),
                    statement: Some(name(b.statement)),
                    text: None,
                    params,
                    redacted,
                }
            }
            F::FunctionCall(f) => {
                let (params, redacted) = self.render(&f.args, &f.arg_formats, &[]);
                Sent {
                    msg: "function-call",
                    name: None,
                    statement: None,
                    text: Some(format!("[FunctionCall oid {}]", f.function)),
                    params,
                    redacted,
                }
            }
            _ => return None,
        })
    }

    /// Feeds one client message, before it is forwarded. On `Err` the message was not taken
    /// into account: do not forward it.
    pub fn frontend(
        &mut self,
        msg: &FrontendMessage<'_>,
        now_ms: u64,
    ) -> Result<(), RecorderError> {
        use FrontendMessage as F;
        let item = match msg {
            F::SslRequest
            | F::GssEncRequest
            | F::Startup(_)
            | F::CancelRequest(_)
            | F::AuthResponse(_)
            | F::Terminate
            | F::Flush => return Ok(()),
            F::CopyData(d) => {
                self.count_copy_in(d.len());
                return Ok(());
            }
            F::CopyDone | F::CopyFail(_) => {
                if self.copy_in_open {
                    self.copy_in_open = false;
                } else if !self.pending.is_empty() {
                    self.pending.push_back(Pending::CopyEnd);
                }
                return Ok(());
            }
            // The server ignores Sync while it reads COPY data.
            F::Sync if self.copy_in_open => return Ok(()),
            F::Sync => {
                self.check_pending()?;
                if let Some(skip) = self.skipping.take() {
                    self.end_skip(skip, now_ms);
                }
                self.pending.push_back(Pending::Sync { at: now_ms });
                return Ok(());
            }
            F::Query(q) => {
                self.check_pending()?;
                let prepared = self.prepare(q, &[]);
                let resolved = Portal {
                    params_redacted: false,
                    prepared,
                    params: Arc::default(),
                    caveat: None,
                };
                Pending::Query(Run::new(Protocol::Simple, Some(resolved), b"", now_ms))
            }
            F::Parse(p) => {
                self.check_pending()?;
                if !p.name.is_empty()
                    && !self.statements.contains_key(p.name)
                    && count_named(&self.statements) >= self.limits.max_statements
                {
                    return Err(RecorderError::TooManyStatements {
                        limit: self.limits.max_statements,
                    });
                }
                Pending::Parse {
                    name: p.name.to_vec(),
                    prepared: self.prepare(p.query, &p.param_types),
                    at: now_ms,
                }
            }
            F::Bind(b) => {
                self.check_pending()?;
                if !b.portal.is_empty()
                    && !self.portals.contains_key(b.portal)
                    && count_named(&self.portals) >= self.limits.max_portals
                {
                    return Err(RecorderError::TooManyPortals {
                        limit: self.limits.max_portals,
                    });
                }
                let (params, params_redacted) =
                    self.render(&b.params, &b.param_formats, &self.types_of(b.statement));
                Pending::Bind {
                    portal: b.portal.to_vec(),
                    statement: b.statement.to_vec(),
                    params,
                    params_redacted,
                    at: now_ms,
                }
            }
            F::Execute(e) => {
                self.check_pending()?;
                Pending::Execute(Run::new(Protocol::Extended, None, e.portal, now_ms))
            }
            F::Describe(t) | F::Close(t) => {
                self.check_pending()?;
                let (kind, name, at) = (t.kind, t.name.to_vec(), now_ms);
                if matches!(msg, F::Describe(_)) {
                    Pending::Describe { kind, name, at }
                } else {
                    Pending::Close { kind, name, at }
                }
            }
            F::FunctionCall(f) => {
                self.check_pending()?;
                let (params, params_redacted) = self.render(&f.args, &f.arg_formats, &[]);
                let resolved = Portal {
                    prepared: placeholder(format!("[FunctionCall oid {}]", f.function)),
                    params: Arc::new(params),
                    params_redacted,
                    caveat: None,
                };
                Pending::FunctionCall(Run::new(
                    Protocol::FunctionCall,
                    Some(resolved),
                    b"",
                    now_ms,
                ))
            }
        };
        match self.skipping.take() {
            Some(mut skip) => {
                self.skip_item(item, &mut skip, Outcome::Skipped, now_ms);
                self.skipping = Some(skip);
            }
            None => self.pending.push_back(item),
        }
        Ok(())
    }

    /// Counts client COPY data on the statement most recently sent.
    fn count_copy_in(&mut self, n: usize) {
        let run = self.pending.iter_mut().rev().take(8).find_map(|p| match p {
            Pending::Execute(r) | Pending::Query(r) => Some(r),
            _ => None,
        });
        match run {
            Some(r) => r.copy_bytes = r.copy_bytes.saturating_add(n as u64),
            None => self.stray_copy_bytes = self.stray_copy_bytes.saturating_add(n as u64),
        }
    }
}

mod answers;
