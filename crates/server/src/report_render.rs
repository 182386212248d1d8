//! Markdown and HTML renderings of incident reports and period summaries.
//!
//! Every value placed in them (requester, reason, ticket, notes, user and resource names,
//! event details, anything that came from a request) goes through one escaper per format:
//! [`text::md`] for Markdown (metacharacters escaped, newlines shown as `␤`, invisible and bidi
//! characters as `<U+202E>`) and [`text::plain`] followed by HTML-escaping of the whole page for
//! HTML. So no value can open a heading, a table row, a link or a review verdict of its own.

use crate::text;
use serde_json::Value;

/// How one value is written in the target format.
type Esc = fn(&str) -> String;

/// The value of a JSON string (or its JSON text if it is not one), escaped.
fn val(esc: Esc, v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => String::new(),
        other => esc(&other.to_string()),
    }
}

/// Like [`val`], with `dash` for null or missing.
fn or(esc: Esc, v: &Value, dash: &str) -> String {
    match v {
        Value::Null => dash.to_string(),
        v => val(esc, v),
    }
}

/// The event details cell: a code span in Markdown, plain text in HTML.
fn details_md(v: &Value) -> String {
    text::md_code(&v.to_string())
}

fn details_plain(v: &Value) -> String {
    text::plain(&v.to_string())
}

/// The report with every value written by `esc` and the details cell by `details`.
fn report_text(r: &Value, esc: Esc, details: fn(&Value) -> String) -> String {
    let g = &r["grant"];
    let v = |x: &Value| val(esc, x);
    let mut o = format!("# Incident report: grant {}\n\n", v(&g["id"]));
    o.push_str(&format!(
        "| | |\n|---|---|\n| Requester | {} |\n| Resource | {} |\n| Policy | {} |\n| Ticket | {} |\n| Reason | {} |\n| State | {} |\n| Requested | {} |\n| Activated | {} |\n| Expires/expired | {} |\n| Ended | {} {} |\n\n",
        v(&g["user"]), v(&g["resource"]), v(&g["policy"]), or(esc, &g["ticket"], "—"),
        v(&g["reason"]), v(&g["state"]), v(&g["requested_at"]),
        or(esc, &g["activated_at"], "—"), or(esc, &g["expires_at"], "—"),
        or(esc, &g["ended_at"], "—"), g["ended_by"].as_str().map(|b| format!("by {}", esc(b))).unwrap_or_default(),
    ));
    o.push_str("## Timeline (audit trail)\n\n| seq | time | event | actor | details |\n|---|---|---|---|---|\n");
    let mut chunk_events = 0;
    for e in r["timeline"].as_array().into_iter().flatten() {
        if e["kind"] == "recording.chunk" {
            chunk_events += 1;
            continue;
        }
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            v(&e["seq"]),
            v(&e["at"]),
            v(&e["kind"]),
            or(esc, &e["actor"], "—"),
            details(&e["details"])
        ));
    }
    if chunk_events > 0 {
        o.push_str(&format!(
            "\n{chunk_events} `recording.chunk` events (one digest per recorded chunk) are in the JSON report.\n"
        ));
    }
    sessions(r, esc, &mut o);
    statements(r, esc, &mut o);
    left_behind(r, esc, &mut o);
    o.push_str("\n## Alerts\n\n");
    let alerts = r["alerts"].as_array().cloned().unwrap_or_default();
    if alerts.is_empty() {
        o.push_str("No alert sinks were configured for this grant.\n");
    }
    for a in alerts {
        o.push_str(&format!(
            "- {} → {}: {} after {} attempt(s){}\n",
            v(&a["kind"]),
            v(&a["sink"]),
            v(&a["state"]),
            v(&a["attempts"]),
            a["delivered_at"]
                .as_str()
                .map(|d| format!(", delivered {}", esc(d)))
                .unwrap_or_default()
        ));
    }
    o.push_str("\n## Review\n\n");
    match r["review"].as_object() {
        None => o.push_str("No review (the grant never had access, or has not ended).\n"),
        Some(rv) => {
            o.push_str(&format!(
                "Due {} by {}; state {}{}.\n\n",
                v(&rv["due_at"]),
                v(&rv["by"]),
                v(&rv["state"]),
                if rv["overdue"].as_bool() == Some(true) {
                    " (OVERDUE)"
                } else {
                    ""
                }
            ));
            for e in rv["entries"].as_array().into_iter().flatten() {
                o.push_str(&format!(
                    "- {} — **{}** by {}: {}\n",
                    v(&e["at"]),
                    v(&e["verdict"]),
                    v(&e["reviewer"]),
                    v(&e["notes"])
                ));
            }
        }
    }
    o.push_str("\n## Verification\n\n");
    // The note and the key are the server's own (signed, PEM), shown verbatim in code blocks.
    match r["checkpoint"].as_object() {
        Some(cp) => o.push_str(&format!(
            "Every event above carries an RFC 6962 inclusion proof (JSON report) to this checkpoint, signed by the audit key:\n\n```\n{}```\n\nAudit public key:\n\n```\n{}```\n",
            cp["note"].as_str().unwrap_or("").replace('`', "'"),
            r["public_key_pem"].as_str().unwrap_or("").replace('`', "'")
        )),
        None => o.push_str("No signed checkpoint covers these events yet; regenerate the report after the next checkpoint.\n"),
    }
    o
}

/// Markdown rendering of a report.
/// "Sessions": each recorded session and how to replay it.
fn sessions(r: &Value, esc: Esc, o: &mut String) {
    let list = r["sessions"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return;
    }
    let gid = val(esc, &r["grant"]["id"]);
    o.push_str("\n## Sessions\n\n| session | host | client | kind | start | end | bytes | exit status | why it ended |\n|---|---|---|---|---|---|---|---|---|\n");
    for s in &list {
        let t = |k: &str| or(esc, &s[k], "—");
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            t("session"),
            t("host"),
            t("client"),
            t("kind"),
            t("started_at"),
            t("ended_at"),
            t("bytes"),
            t("exit_status"),
            t("end_reason"),
        ));
    }
    o.push_str(&format!(
        "\nReplay: `breakglass recording {gid} --session SESSION --out s.cast && asciinema play s.cast`; transcript: `breakglass recording {gid} --format text` (each view is audited).\n"
    ));
}

/// "Statements": what went through the PostgreSQL gateway, as recorded. The text is the grant
/// holder's: escaped like every other value.
fn statements(r: &Value, esc: Esc, o: &mut String) {
    let list = r["statements"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return;
    }
    o.push_str("\n## Statements\n\n| session | at (ms) | statement | parameters | outcome |\n|---|---|---|---|---|\n");
    for s in &list {
        let t = |k: &str| or(esc, &s[k], "—");
        let params = s["params"]
            .as_array()
            .map(|p| {
                p.iter()
                    .map(|v| v.as_str().unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let outcome = match s["outcome"].as_str().unwrap_or("") {
            "ok" => format!(
                "{} {}",
                s["tag"].as_str().unwrap_or(""),
                s["rows"]
                    .as_u64()
                    .map(|r| format!("({r} rows)"))
                    .unwrap_or_default()
            ),
            "error" => format!(
                "ERROR {} {}",
                s["sqlstate"].as_str().unwrap_or(""),
                s["message"].as_str().unwrap_or("")
            ),
            other => other.to_string(),
        };
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            t("session"),
            t("started_at"),
            t("text"),
            esc(&params),
            esc(&outcome),
        ));
    }
    if list.len() >= 500 {
        o.push_str("\nThe first 500 statements; `breakglass recording GRANT_ID --format text` lists them all.\n");
    }
}

/// "Objects the grant left behind": what its credential created at the target and breakglass
/// kept (disarmed), from the revocation's audit event. The names are the grant holder's.
fn left_behind(r: &Value, esc: Esc, o: &mut String) {
    let left = r["left_behind"].as_array().cloned().unwrap_or_default();
    if left.is_empty() {
        return;
    }
    o.push_str("\n## Objects the grant left behind\n\n| name | kind | where | security definer | what breakglass did |\n|---|---|---|---|---|\n");
    for l in left {
        let t = |k: &str| val(esc, &l[k]);
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            t("name"),
            t("kind"),
            t("location"),
            if l["security_definer"] == true {
                "yes"
            } else {
                "no"
            },
            t("action"),
        ));
    }
}

pub fn report_markdown(r: &Value) -> String {
    report_text(r, text::md, details_md)
}

/// Plain-text rendering (every value on one line with hidden characters shown), for a page that
/// escapes it itself.
pub fn report_plain(r: &Value) -> String {
    report_text(r, text::plain, details_plain)
}

/// HTML rendering (the report as text, every value on one line with hidden characters shown,
/// the whole page HTML-escaped, in a minimal page).
pub fn report_html(r: &Value) -> String {
    let esc = text::html(&report_text(r, text::plain, details_plain));
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Incident report {}</title></head><body><pre style=\"white-space:pre-wrap;font-family:ui-monospace,monospace\">{esc}</pre></body></html>\n",
        text::html(&text::plain(r["grant"]["id"].as_str().unwrap_or("")))
    )
}

/// A period summary with every value written by `esc`.
fn summary_text(r: &Value, esc: Esc) -> String {
    let v = |x: &Value| val(esc, x);
    let table = |m: &Value| {
        let mut rows: Vec<(String, u64)> = m
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        rows.iter()
            .map(|(k, n)| format!("| {} | {n} |\n", esc(k)))
            .collect::<String>()
    };
    let mut o = format!(
        "# breakglass period report\n\n{} → {} ({})\n\n",
        v(&r["since"]),
        v(&r["until"]),
        v(&r["origin"])
    );
    o.push_str(&format!(
        "- Grants: {}\n- Refused requests: {}\n- Time to glass (request → access): p50 {} ms, p95 {} ms, max {} ms\n- Reviews: {} opened, {} done, {} open ({} overdue)\n- Anomaly-flagged grants: {}\n- Dead-lettered alerts: {}\n\n",
        v(&r["grants"]), v(&r["refusals"]), v(&r["time_to_glass_ms"]["p50"]), v(&r["time_to_glass_ms"]["p95"]), v(&r["time_to_glass_ms"]["max"]),
        v(&r["reviews"]["opened"]), v(&r["reviews"]["done"]), v(&r["reviews"]["open"]), v(&r["reviews"]["overdue"]),
        v(&r["anomalies"]["flagged_grants"]), v(&r["alerts"]["dead_lettered"]),
    ));
    o.push_str("## Grants per resource\n\n| resource | grants |\n|---|---|\n");
    o.push_str(&table(&r["per_resource"]));
    o.push_str("\n## Grants per user\n\n| user | grants |\n|---|---|\n");
    o.push_str(&table(&r["per_user"]));
    o.push_str(&format!(
        "\n## Drills\n\nPractice grants in the period (not counted as real use by anomaly rules): {} drill, {} training (people drill).\n\n### People drills: who last broke glass in training (every {} days)\n\n| person | last drilled | days ago | |\n|---|---|---|---|\n",
        v(&r["practice"]["drill_grants"]),
        v(&r["practice"]["training_grants"]),
        v(&r["people_drills"]["every_days"]),
    ));
    for p in r["people_drills"]["people"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let last = p["last_drilled"].as_str().map_or("never".to_string(), esc);
        let days = p["days_ago"]
            .as_i64()
            .map_or("-".to_string(), |d| d.to_string());
        let late = if p["overdue"] == true {
            "OVERDUE"
        } else {
            "ok"
        };
        o.push_str(&format!(
            "| {} | {last} | {days} | {late} |\n",
            v(&p["user"])
        ));
    }
    o.push_str("\n## NIST SP 800-53 Rev. 5 controls this evidence supports\n\n| control | | evidence |\n|---|---|---|\n");
    for c in r["controls"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "| {} | {} | {} |\n",
            v(&c["control"]),
            v(&c["title"]),
            v(&c["evidence"])
        ));
    }
    o
}

/// Markdown rendering of a period summary.
pub fn summary_markdown(r: &Value) -> String {
    summary_text(r, text::md)
}

/// HTML rendering of a period summary.
pub fn summary_html(r: &Value) -> String {
    let esc = text::html(&summary_text(r, text::plain));
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>breakglass period report</title></head><body><pre style=\"white-space:pre-wrap;font-family:ui-monospace,monospace\">{esc}</pre></body></html>\n"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hostile() -> Value {
        let forged =
            "locked\n\n## Review\n| verdict | appropriate |\n- x — **appropriate** by sam: fine";
        json!({
            "grant": {"id": "g-1", "user": "bob", "resource": "prod-db", "policy": "p",
                      "ticket": "INC-1 | x", "reason": forged, "state": "ended",
                      "requested_at": "t", "ended_by": "bob\n# x"},
            "timeline": [{"seq": 1, "at": "t", "kind": "grant.requested", "actor": "bob",
                          "details": {"reason": forged, "x": "a`b|c\u{202E}"}}],
            "alerts": [],
            "review": {"due_at": "t", "by": ["security"], "state": "done", "overdue": false,
                       "entries": [{"at": "t", "verdict": "inappropriate", "reviewer": "sam",
                                    "notes": "bad\n- t — **appropriate** by sam: fine\u{202E}"}]},
            "checkpoint": null,
        })
    }

    #[test]
    fn markdown_values_cannot_forge_structure() {
        let md = report_markdown(&hostile());
        // Line starts are all ours: the headings, table rows and review entries we wrote.
        let headings: Vec<&str> = md.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            headings,
            [
                "# Incident report: grant g-1",
                "## Timeline (audit trail)",
                "## Alerts",
                "## Review",
                "## Verification"
            ],
            "{md}"
        );
        let entries: Vec<&str> = md.lines().filter(|l| l.starts_with("- ")).collect();
        assert_eq!(entries.len(), 1, "{md}");
        assert!(entries[0].contains("**inappropriate**"), "{md}");
        assert!(
            md.contains(
                "| Reason | locked␤␤\\#\\# Review␤\\| verdict \\| appropriate \\|␤- x — \\*\\*appropriate\\*\\* by sam: fine |"
            ),
            "{md}"
        );
        assert!(md.contains("| Ticket | INC-1 \\| x |"), "{md}");
        assert!(md.contains("<U+202E>") && !md.contains('\u{202E}'), "{md}");
        // Every table row keeps its column count (escaped pipes do not split cells).
        for l in md.lines().filter(|l| l.starts_with("| 1 |")) {
            assert_eq!(l.replace("\\|", "").matches('|').count(), 6, "{l}");
        }
    }

    #[test]
    fn html_escapes_everything() {
        let mut r = hostile();
        r["grant"]["reason"] = json!("<script>alert(1)</script>&\u{202E}\n<b>");
        let h = report_html(&r);
        let body = h.split("<pre").nth(1).unwrap();
        assert!(!body.contains("<script") && !body.contains("<b>"), "{h}");
        assert!(
            h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&lt;U+202E&gt;␤&lt;b&gt;"),
            "{h}"
        );
        assert!(!h.contains('\u{202E}'));
    }

    #[test]
    fn left_behind_names_cannot_break_the_markdown() {
        let r = json!({"left_behind": [{"name": "public.\"a|b\n# x <img src=x>\"()", "kind": "function",
            "location": "postgres", "security_definer": true, "action": "owned by breakglass_orphans"}]});
        let mut o = String::new();
        left_behind(&r, text::md, &mut o);
        let row = o.lines().last().unwrap();
        assert_eq!(row.matches(" | ").count(), 4, "{row}");
        assert!(!o.contains("\n# x"), "{o}");
        let html = report_html(&json!({"grant": {"id": "g-1"}, "left_behind": r["left_behind"]}));
        assert!(!html.contains("<img"), "{html}");
    }
}
