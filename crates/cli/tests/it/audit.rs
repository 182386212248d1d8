//! The audit trail proves itself untouched, and names the first bad event when it is not.

use crate::harness::*;
use serde_json::Value;
use std::process::Command;

/// A server that recorded some events, stopped cleanly (final checkpoint written).
fn populated() -> Server {
    let mut s = Server::start(POLICY);
    let bob = s.user("bob", &["oncall"]);
    for t in 1..=3 {
        let otp = bob.otp();
        bob.ok(&[
            "request",
            "prod-db",
            "--reason",
            "orders table locked, checkout down",
            "--ticket",
            &format!("INC-{t}"),
            "--otp",
            &otp,
        ]);
    }
    s.stop();
    s
}

fn verify_dir(s: &Server) -> (bool, Value) {
    let o = Command::new(BIN)
        .args(["--json", "audit", "verify", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    (
        o.status.success(),
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
    )
}

fn sql(s: &Server, stmts: &[&str]) {
    sqlite(&s.data_dir(), &stmts.join(";\n"));
}

const UNLOCK: &str = "DROP TRIGGER IF EXISTS audit_no_update";
const UNLOCK2: &str = "DROP TRIGGER IF EXISTS audit_no_delete";

#[test]
fn untouched_log_verifies_and_export_verifies_with_public_key_only() {
    let s = populated();
    let (ok, v) = verify_dir(&s);
    assert!(ok, "{v}");
    assert!(v["checkpoints"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["unsigned_tail"], 0, "stop writes a final checkpoint: {v}");
    let export = s.dir.path().join("audit.jsonl");
    let o = Command::new(BIN)
        .args(["audit", "export", "--format", "jsonl", "--data-dir"])
        .arg(s.data_dir())
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(o.status.success());
    let key = s.data_dir().join("audit-key.pem");
    let o = Command::new(BIN)
        .args(["--json", "audit", "verify", "--file"])
        .arg(&export)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // One changed character in the export is caught.
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = text.replacen("INC-2", "INC-7", 1);
    assert_ne!(text, tampered);
    std::fs::write(&export, tampered).unwrap();
    let o = Command::new(BIN)
        .args(["--json", "audit", "verify", "--file"])
        .arg(&export)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["seq"].as_u64().is_some(), "{v}");
}

fn seq_of(s: &Server, kind: &str) -> i64 {
    let rows = sqlite(
        &s.data_dir(),
        &format!("SELECT seq FROM audit WHERE kind = '{kind}' ORDER BY seq LIMIT 1"),
    );
    rows.trim_matches(|c| "[](),".contains(c)).parse().unwrap()
}

#[test]
fn modified_row_is_named() {
    let s = populated();
    let seq = seq_of(&s, "grant.requested");
    sql(
        &s,
        &[
            UNLOCK,
            &format!(
                "UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), 'INC-1', 'INC-9') AS BLOB) WHERE seq = {seq}"
            ),
        ],
    );
    let (ok, v) = verify_dir(&s);
    assert!(!ok);
    assert_eq!(v["seq"].as_i64(), Some(seq), "{v}");
}

#[test]
fn deleted_row_is_named() {
    let s = populated();
    let seq = seq_of(&s, "grant.activated");
    sql(
        &s,
        &[UNLOCK2, &format!("DELETE FROM audit WHERE seq = {seq}")],
    );
    let (ok, v) = verify_dir(&s);
    assert!(!ok);
    assert_eq!(v["seq"].as_i64(), Some(seq), "{v}");
}

#[test]
fn reordered_rows_are_named() {
    let s = populated();
    let a = seq_of(&s, "grant.requested");
    let b = a + 1;
    sql(
        &s,
        &[
            UNLOCK,
            &format!("UPDATE audit SET seq = -1 WHERE seq = {a}"),
            &format!("UPDATE audit SET seq = {a} WHERE seq = {b}"),
            &format!("UPDATE audit SET seq = {b} WHERE seq = -1"),
        ],
    );
    let (ok, v) = verify_dir(&s);
    assert!(!ok);
    assert_eq!(v["seq"].as_i64(), Some(a), "{v}");
}

#[test]
fn truncation_below_checkpoint_is_caught() {
    let s = populated();
    sql(
        &s,
        &[
            UNLOCK2,
            "DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 2 FROM audit)",
        ],
    );
    let (ok, v) = verify_dir(&s);
    assert!(!ok, "{v}");
    assert!(v["error"].as_str().unwrap().contains("truncated"), "{v}");
}

#[test]
fn inserted_row_is_caught() {
    let s = populated();
    let seq = seq_of(&s, "grant.requested");
    sql(
        &s,
        &[
            UNLOCK,
            UNLOCK2,
            &format!("UPDATE audit SET seq = seq + 1000000 WHERE seq >= {seq}"),
            &format!(
                "INSERT INTO audit (seq, body, leaf, chain, ts, kind) SELECT {seq}, body, leaf, chain, ts, kind FROM audit WHERE seq = {}",
                seq - 1
            ),
            &format!(
                "UPDATE audit SET seq = seq - 999999 WHERE seq >= {}",
                seq + 1000000
            ),
        ],
    );
    let (ok, v) = verify_dir(&s);
    assert!(!ok, "{v}");
    assert_eq!(v["seq"].as_i64(), Some(seq), "{v}");
}

/// The `ts`, `kind` and `grant_id` columns are copies of body fields kept for indexes, outside
/// the hash; reports and summaries read them. Editing one (what someone with the database file
/// does, triggers dropped first: e.g. detaching an event from its grant to hide it from the
/// incident report) fails verification, naming the event and the column.
#[test]
fn edited_index_columns_are_named() {
    let s = populated();
    let seq = seq_of(&s, "grant.activated");
    for (column, tamper, restore) in [
        (
            "grant_id",
            "grant_id = NULL",
            format!(
                "grant_id = (SELECT grant_id FROM audit WHERE seq = {})",
                seq - 1
            ),
        ),
        (
            "kind",
            "kind = 'grant.expired'",
            "kind = 'grant.activated'".to_string(),
        ),
        ("ts", "ts = ts - 86400000", "ts = ts + 86400000".to_string()),
    ] {
        sql(
            &s,
            &[
                UNLOCK,
                &format!("UPDATE audit SET {tamper} WHERE seq = {seq}"),
            ],
        );
        let (ok, v) = verify_dir(&s);
        assert!(!ok, "{column}: {v}");
        assert_eq!(v["seq"].as_i64(), Some(seq), "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains(&format!("column `{column}` was modified")),
            "{msg}"
        );
        sql(
            &s,
            &[
                UNLOCK,
                &format!("UPDATE audit SET {restore} WHERE seq = {seq}"),
            ],
        );
        let (ok, v) = verify_dir(&s);
        assert!(ok, "restored {column}: {v}");
    }
}
