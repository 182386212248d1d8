//! The audit trail as it is committed, copied off the host: streams of every event to a SIEM
//! (RFC 5424 syslog over TLS, [`syslog`]; a rotated JSON-lines file, [`jsonl`]) and copies of
//! every signed checkpoint ([`witness`]).
//!
//! At least once, by a cursor rather than an outbox row per event: the audit log is already a
//! gapless, durable queue written in the same transaction as the action it records, so each
//! stream keeps only the seq it delivered last (`stream_cursors` in the store). The loop
//! (`tasks::streaming`) reads the events after it, delivers them in order, and only then moves
//! the cursor (compare-and-swap); a crash or failure re-delivers from the last recorded seq.
//! Nothing is added to a grant's transaction, so a slow or dead SIEM never delays one.

pub mod jsonl;
pub mod syslog;
pub mod witness;

use breakglass_core::audit::{AuditRecord, syslog as fmt};
use breakglass_core::policy::{Stream, StreamTarget, SyslogTarget};
use rustls::ClientConfig;
use std::sync::Arc;

/// What a stream's loop keeps between deliveries.
pub struct StreamState {
    /// The TLS configuration built for a target (rebuilt when it changes or a delivery fails,
    /// so a replaced CA file is read again); keeps TLS sessions for resumption.
    tls: Option<(SyslogTarget, Arc<ClientConfig>)>,
    /// Whether the JSON-lines file was checked for a torn last line since start.
    repaired: bool,
    hostname: String,
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            tls: None,
            repaired: false,
            hostname: syslog::local_hostname(),
        }
    }
}

impl StreamState {
    fn tls_for(&mut self, t: &SyslogTarget) -> Result<Arc<ClientConfig>, String> {
        if let Some((target, config)) = &self.tls
            && target == t
        {
            return Ok(config.clone());
        }
        let config = syslog::client_config(t)?;
        self.tls = Some((t.clone(), config.clone()));
        Ok(config)
    }

    /// Delivers `recs` (consecutive, in order) to `stream`.
    pub async fn deliver(
        &mut self,
        stream: &Stream,
        origin: &str,
        recs: &[AuditRecord],
    ) -> Result<(), String> {
        match &stream.target {
            StreamTarget::Syslog(t) => {
                let format = fmt::Format {
                    facility: t.facility,
                    hostname: t.hostname.as_deref().unwrap_or(&self.hostname),
                    origin,
                    max_message: t.max_message,
                };
                let mut payload = Vec::new();
                for r in recs {
                    payload.extend(
                        fmt::frame(&format, r).map_err(|e| format!("event {}: {e}", r.seq))?,
                    );
                }
                let config = if t.tls { Some(self.tls_for(t)?) } else { None };
                let result = syslog::deliver(t, config.as_ref(), &payload).await;
                if result.is_err() {
                    self.tls = None;
                }
                result
            }
            StreamTarget::Jsonl(t) => {
                let lines = recs
                    .iter()
                    .map(|r| fmt::jsonl_line(r).map_err(|e| format!("event {}: {e}", r.seq)))
                    .collect::<Result<Vec<_>, _>>()?;
                let (t, repair) = (t.clone(), !self.repaired);
                tokio::task::spawn_blocking(move || jsonl::append(&t, &lines, repair))
                    .await
                    .map_err(|e| format!("file writer: {e}"))??;
                self.repaired = true;
                Ok(())
            }
        }
    }
}

/// Where a stream goes, in one line (`syslog+tls://host:port`, `jsonl:/path`).
pub fn destination(s: &Stream) -> String {
    match &s.target {
        StreamTarget::Syslog(t) if t.tls => format!("syslog+tls://{}:{}", t.host, t.port),
        StreamTarget::Syslog(t) => format!("syslog+tcp://{}:{}", t.host, t.port),
        StreamTarget::Jsonl(t) => format!("jsonl:{}", t.path),
    }
}
