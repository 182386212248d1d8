//! A store's index columns: copies of body fields (`ts`, `kind`, `grant`) a store keeps in
//! columns of its own for indexed reads. They are outside the hash, so a verifier of a store
//! checks them against the authenticated body ([`super::Verifier::push_stored`]).

use super::IndexColumns;
use super::verify::{VerifyError, VerifyErrorKind};

/// Checks a store's index columns against the body of event `seq`, naming the first column
/// that differs.
pub fn check_columns(seq: u64, body: &[u8], columns: &IndexColumns) -> Result<(), VerifyError> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Indexed<'a> {
        ts: i64,
        #[serde(borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        grant: Option<Cow<'a, str>>,
    }
    let b: Indexed<'_> = serde_json::from_slice(body).map_err(|e| {
        VerifyError::new(
            Some(seq),
            VerifyErrorKind::Malformed,
            format!("event {seq}: body is not an event: {e}"),
        )
    })?;
    let differs = |column: &str, stored: String, body: String| {
        Err(VerifyError::new(
            Some(seq),
            VerifyErrorKind::ColumnMismatch,
            format!(
                "event {seq}: column `{column}` was modified: it holds {stored} but the signed body says {body} (reports and summaries read this column)"
            ),
        ))
    };
    let show = |v: Option<&str>| v.map_or("NULL".to_string(), |s| format!("{s:?}"));
    if b.ts != columns.ts_ms {
        return differs("ts", columns.ts_ms.to_string(), b.ts.to_string());
    }
    if b.kind != columns.kind.as_str() {
        return differs("kind", show(Some(&columns.kind)), show(Some(&b.kind)));
    }
    if b.grant.as_deref() != columns.grant_id.as_deref() {
        return differs(
            "grant_id",
            show(columns.grant_id.as_deref()),
            show(b.grant.as_deref()),
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::{Head, NewEvent, Verifier, seal};
    use super::*;
    use ed25519_dalek::SigningKey;

    const NAME: &str = "breakglass/t";

    #[test]
    fn index_columns_must_match_the_body() {
        let e = NewEvent {
            ts_ms: 1_700_000_000_000,
            kind: "grant.activated".into(),
            actor: Some("bob".into()),
            grant_id: Some("g-1".into()),
            resource: Some("prod-db".into()),
            data: serde_json::json!({"reason": "x"}),
        };
        let first_ev = NewEvent {
            ts_ms: -3,
            kind: "k".into(),
            actor: None,
            grant_id: None,
            resource: None,
            data: serde_json::json!({}),
        };
        let r1 = seal(None, &first_ev);
        let head = Head {
            seq: 1,
            chain_hash: r1.chain_hash,
        };
        let recs = [r1, seal(Some(head), &e)];
        let cols = |ts_ms: i64, kind: &str, grant_id: Option<&str>| IndexColumns {
            ts_ms,
            kind: kind.into(),
            grant_id: grant_id.map(String::from),
        };
        let good = cols(e.ts_ms, "grant.activated", Some("g-1"));
        let first = cols(-3, "k", None);
        let feed = |c: &IndexColumns| {
            let mut v = Verifier::new(
                SigningKey::from_bytes(&[3; 32]).verifying_key(),
                NAME.into(),
                NAME.into(),
            );
            let r = &recs[0];
            v.push_stored(r.seq, &r.body, &r.leaf_hash, &r.chain_hash, &first)?;
            let r = &recs[1];
            v.push_stored(r.seq, &r.body, &r.leaf_hash, &r.chain_hash, c)?;
            v.finish()
        };
        assert_eq!(feed(&good).unwrap().events, 2);
        for (c, column) in [
            (cols(e.ts_ms, "grant.activated", None), "grant_id"),
            (cols(e.ts_ms, "grant.activated", Some("g-2")), "grant_id"),
            (cols(e.ts_ms, "grant.requested", Some("g-1")), "kind"),
            (cols(e.ts_ms + 1, "grant.activated", Some("g-1")), "ts"),
        ] {
            let err = feed(&c).unwrap_err();
            assert_eq!(
                (err.seq, err.kind),
                (Some(2), VerifyErrorKind::ColumnMismatch)
            );
            assert!(
                err.message
                    .starts_with(&format!("event 2: column `{column}` was modified")),
                "{err}"
            );
        }
        // A body with escapes still compares (the Cow owns the unescaped text).
        let mut esc = e.clone();
        esc.kind = "a\"b".into();
        esc.grant_id = Some("g\n".into());
        let r = seal(None, &esc);
        let c = cols(esc.ts_ms, "a\"b", Some("g\n"));
        assert!(check_columns(1, &r.body, &c).is_ok());
    }
}
