//! Delivering one alert to its sink: signed webhook, Slack, PagerDuty Events v2, email.

use super::{AlertConfig, alert_kinds, anomaly_text, one_line, pagerduty_action_of, summary};
use breakglass_core::policy::{Sink, SinkKind};
use breakglass_core::time::Timestamp;
use breakglass_store::AlertRow;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

/// Slack's escaping (<https://api.slack.com/reference/surfaces/formatting#escaping>): `&`, `<`
/// and `>` as `&amp;`, `&lt;`, `&gt;`, so no text shows as a mention (`<!channel>`), a link
/// (`<https://…|label>`) or an entity.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The alert document with every string in it (keys too) Slack-escaped: the one place where
/// everything that goes into a Slack message passes, whichever field it ends up in.
fn slack_doc(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(slack_escape(s)),
        Value::Array(a) => Value::Array(a.iter().map(slack_doc).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (slack_escape(k), slack_doc(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The Slack message for an alert.
pub fn slack_payload(doc: &Value) -> Value {
    json!({ "text": summary(&slack_doc(doc)) })
}

/// PagerDuty's limit on `payload.summary`, in characters.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// The PagerDuty Events v2 summary: plain text (PagerDuty interprets no markup in it), cut to
/// the 1,024 characters PagerDuty accepts.
fn pagerduty_summary(doc: &Value) -> String {
    let s = summary(doc);
    if s.chars().count() <= PAGERDUTY_SUMMARY_MAX {
        return s;
    }
    let mut cut: String = s.chars().take(PAGERDUTY_SUMMARY_MAX - 1).collect();
    cut.push('…');
    cut
}

/// The email subject: one line whatever the user, resource or event names contain (lettre
/// encodes the header, and this keeps CR/LF out of it even before that).
fn email_subject(doc: &Value, kind: &str) -> String {
    one_line(&format!(
        "[breakglass] {} {} on {}{}",
        kind,
        doc["grant"]["user"].as_str().unwrap_or(""),
        doc["grant"]["resource"]
            .as_str()
            .or(doc["resource"].as_str())
            .unwrap_or(""),
        if anomaly_text(doc).is_some() {
            " (ANOMALY)"
        } else {
            ""
        }
    ))
}

/// Reads a secret named by `<key>_env` or `<key>_file` in the sink settings.
fn secret(sink: &Sink, key: &str) -> Result<zeroize::Zeroizing<String>, String> {
    if let Some(var) = sink
        .settings
        .get(&format!("{key}_env"))
        .and_then(Value::as_str)
    {
        return std::env::var(var)
            .map(zeroize::Zeroizing::new)
            .map_err(|_| format!("environment variable {var} (sink {}) is not set", sink.name));
    }
    if let Some(path) = sink
        .settings
        .get(&format!("{key}_file"))
        .and_then(Value::as_str)
    {
        return std::fs::read_to_string(path)
            .map(|s| zeroize::Zeroizing::new(s.trim().to_string()))
            .map_err(|e| format!("cannot read {path} (sink {}): {e}", sink.name));
    }
    if let Some(v) = sink.settings.get(key).and_then(Value::as_str) {
        return Ok(zeroize::Zeroizing::new(v.to_string()));
    }
    Err(format!("sink {} has no {key}", sink.name))
}

/// Sends an alert by email: STARTTLS required unless the sink says `tls: none` (loopback only),
/// optional extra CA (`ca_file`) and credentials from the environment. The Message-ID is derived
/// from the dedup key so mail systems drop a redelivered duplicate.
async fn send_email(sink: &Sink, alert: &AlertRow, timeout: Duration) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let get = |k: &str| sink.settings.get(k).and_then(Value::as_str);
    let host = get("host").ok_or("email sink has no host")?;
    let port = sink
        .settings
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(587);
    let from: Mailbox = get("from")
        .ok_or("no from")?
        .parse()
        .map_err(|e| format!("bad from address: {e}"))?;
    let to: Vec<String> = match sink.settings.get("to") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_string()).collect(),
        _ => Vec::new(),
    };
    let subject = email_subject(&alert.doc, &alert.kind);
    let safe_key: String = alert
        .dedup_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(format!("<{safe_key}@breakglass>")))
        .header(ContentType::TEXT_PLAIN);
    for t in &to {
        builder = builder.to(t
            .parse()
            .map_err(|e| format!("bad to address {t:?}: {e}"))?);
    }
    let body = format!(
        "{}\n\ndedup key: {}\n\n{}\n",
        summary(&alert.doc),
        alert.dedup_key,
        serde_json::to_string_pretty(&alert.doc).unwrap_or_default()
    );
    let email = builder
        .body(body)
        .map_err(|e| format!("cannot build the email: {e}"))?;
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(timeout));
    if get("tls") != Some("none") {
        let mut params = TlsParameters::builder(host.to_string());
        if let Some(ca) = get("ca_file") {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read {ca}: {e}"))?;
            params = params.add_root_certificate(
                Certificate::from_pem(&pem).map_err(|e| format!("bad CA in {ca}: {e}"))?,
            );
        }
        let params = params
            .build_rustls()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        transport = transport.tls(Tls::Required(params));
    }
    if let (Some(u), Some(p)) = (get("username_env"), get("password_env")) {
        let user = std::env::var(u).map_err(|_| format!("environment variable {u} is not set"))?;
        let pass = zeroize::Zeroizing::new(
            std::env::var(p).map_err(|_| format!("environment variable {p} is not set"))?,
        );
        transport = transport.credentials(Credentials::new(user, pass.to_string()));
    }
    transport
        .build()
        .send(email)
        .await
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", sink.name))
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn deliver(
    http: &reqwest::Client,
    sink: &Sink,
    alert: &AlertRow,
    now: Timestamp,
) -> Result<(), String> {
    let timeout = sink
        .settings
        .get("timeout")
        .and_then(Value::as_str)
        .and_then(|t| breakglass_core::duration::parse(t).ok())
        .unwrap_or(Duration::from_secs(10));
    if sink.kind == SinkKind::Email {
        return send_email(sink, alert, timeout).await;
    }
    let req = match sink.kind {
        SinkKind::Email => return Err("unreachable".into()),
        SinkKind::Webhook => {
            let url = secret(sink, "url")?;
            let key = secret(sink, "secret")?;
            let mut doc = alert.doc.clone();
            doc["alert_id"] = json!(alert.id);
            doc["dedup_key"] = json!(alert.dedup_key);
            let body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
            let ts = now.unix_secs();
            http.post(url.as_str())
                .header("content-type", "application/json")
                .header("x-breakglass-timestamp", ts.to_string())
                .header(
                    "x-breakglass-signature",
                    signature(key.as_bytes(), ts, &body),
                )
                .header("x-breakglass-dedup-key", &alert.dedup_key)
                .header("idempotency-key", &alert.dedup_key)
                .body(body)
        }
        SinkKind::Slack => {
            let url = secret(sink, "url")?;
            http.post(url.as_str()).json(&slack_payload(&alert.doc))
        }
        SinkKind::Pagerduty => {
            let key = secret(sink, "routing_key")?;
            let url = sink
                .settings
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or("https://events.pagerduty.com/v2/enqueue");
            let action = pagerduty_action_of(&alert.doc, &alert.kind).unwrap_or("trigger");
            let dedup = alert.doc["grant"]["id"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| alert.dedup_key.clone());
            http.post(url).json(&json!({
                "routing_key": key.as_str(),
                "event_action": action,
                "dedup_key": dedup,
                "payload": {
                    "summary": pagerduty_summary(&alert.doc),
                    "source": alert.doc["origin"],
                    // An activation is expected (a warning), unless anomalies came with it.
                    "severity": if alert.kind == "grant.activated"
                        && !alert_kinds(&alert.doc, &alert.kind).contains(&"anomaly.flagged")
                    { "warning" } else { "critical" },
                    "custom_details": alert.doc,
                },
            }))
        }
    };
    let resp = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("{}: {e}", sink.name))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{} answered {}", sink.name, resp.status()))
    }
}

pub fn backoff(cfg: &AlertConfig, attempts: u32) -> Duration {
    let exp = cfg
        .base_backoff
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let d = exp.min(cfg.max_backoff);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    d.mul_f64(jitter)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A drill's failing step carries what the target said: hostile text stays inert in Slack,
    /// and the alert says DRILL first.
    #[test]
    fn drill_alerts_are_tagged_and_target_text_is_escaped() {
        let doc = json!({
            "drill": true, "event": "drill.failed", "actor": "system",
            "details": {"resource": "prod-db", "step": "use",
                        "error": "ssh said <!channel> <https://evil.example|click here> & more"},
        });
        let text = slack_payload(&doc)["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(text.starts_with("DRILL breakglass drill.failed"), "{text}");
        assert!(
            !text.contains("<!channel>") && !text.contains("<https://"),
            "{text}"
        );
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // Known answer computed with: printf '1700000000.{}' | openssl dgst -sha256 -hmac k
        let s = signature(b"k", 1_700_000_000, b"{}");
        assert!(s.starts_with("v1="));
        assert_eq!(s.len(), 3 + 64);
        assert_ne!(s, signature(b"k", 1_700_000_001, b"{}"));
    }

    fn hostile_doc() -> Value {
        json!({
            "event": "grant.activated", "actor": "bob",
            "grant": {
                "id": "g-1", "user": "bob", "resource": "prod-db", "policy": "p",
                "reason": "<!channel> <https://evil.example|Approve here> & co\nbreakglass grant.revoked: fake",
                "ticket": "<@U0123>",
            },
        })
    }

    #[test]
    fn slack_text_escapes_every_requester_value() {
        let t = slack_payload(&hostile_doc())["text"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            t.contains("&lt;!channel&gt; &lt;https://evil.example|Approve here&gt; &amp; co"),
            "{t}"
        );
        assert!(t.contains("ticket &lt;@U0123&gt;"), "{t}");
        assert!(
            !t.contains('<') && !t.contains('>') && !t.contains('\n'),
            "{t}"
        );
    }

    #[test]
    fn pagerduty_summary_is_cut_to_1024_characters() {
        let mut doc = hostile_doc();
        doc["grant"]["reason"] = json!("é".repeat(5000));
        let s = pagerduty_summary(&doc);
        assert_eq!(s.chars().count(), 1024);
        assert!(s.ends_with('…'));
        assert!(pagerduty_summary(&hostile_doc()).contains("<!channel>"));
    }

    /// lettre writes the message; no CR/LF in any value reaches a header line.
    #[test]
    fn email_subject_cannot_add_headers() {
        let doc =
            json!({"grant": {"user": "bob\r\nBcc: x@evil.example", "resource": "db\nX-Evil: 1"}});
        let headers = |subject: String| {
            let m = lettre::Message::builder()
                .from("a@example.org".parse().unwrap())
                .to("b@example.org".parse().unwrap())
                .subject(subject)
                .body(String::from("x"))
                .unwrap();
            let raw = String::from_utf8(m.formatted()).unwrap();
            raw.split("\r\n\r\n").next().unwrap_or("").to_string()
        };
        // Ours (one line), and lettre's own encoding of a raw CR/LF value.
        for h in [
            headers(email_subject(&doc, "grant.activated")),
            headers("x\r\nBcc: x@evil.example".into()),
        ] {
            for line in h.split("\r\n") {
                assert!(
                    !line.starts_with("Bcc") && !line.starts_with("X-Evil"),
                    "{h}"
                );
            }
        }
        let h = headers(email_subject(&doc, "grant.activated"));
        assert!(
            h.contains("Subject: [breakglass] grant.activated bob  Bcc: x@evil.example"),
            "{h}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = AlertConfig::default();
        assert!(backoff(&cfg, 1) <= Duration::from_millis(2400));
        assert!(backoff(&cfg, 5) >= Duration::from_millis(25_600));
        assert!(backoff(&cfg, 40) <= Duration::from_secs(4320));
    }
}
