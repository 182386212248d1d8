//! What several nodes coordinate through the store: the database's clock, the login
//! throttle's counters, singleton leases with a rising term, and fenced work-queue claims.

use super::ev;
use breakglass_core::time::Timestamp;
use breakglass_store::prelude::*;
use breakglass_store::{Change, StoreError};

pub async fn coordination(store: &dyn Store) {
    db_clock(store).await;
    login_failures(store).await;
    leases(store).await;
    revocation_claims(store).await;
    alert_fence(store).await;
    kind_counts(store).await;
    // A unit with no events does not touch the audit chain.
    let head = store.audit_head().await.unwrap();
    let r = store
        .commit(
            vec![Change::ClearLoginFailures {
                keys: vec!["nothing".into()],
            }],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r, None);
    assert_eq!(store.audit_head().await.unwrap(), head);
    // A unit of more events than one INSERT takes lands whole and in order, chained.
    let before = head.map(|h| h.seq).unwrap_or(0);
    let many: Vec<_> = (0..600).map(|i| ev(&format!("bulk.{i}"))).collect();
    let after = store.commit(vec![], many).await.unwrap().unwrap();
    assert_eq!(after.seq, before + 600);
    let recs = store.audit_records(1, 100_000).await.unwrap();
    assert_eq!(super::verify_chain(&recs), after.seq);
    assert_eq!(store.audit_head().await.unwrap(), Some(after));
    let last: serde_json::Value = serde_json::from_slice(&recs.last().unwrap().body).unwrap();
    assert_eq!(last["kind"], "bulk.599", "{last}");
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The store's clock is a real clock (the tests' database runs on this machine).
async fn db_clock(store: &dyn Store) {
    let before = system_ms();
    let db = store.db_now().await.unwrap().0;
    let after = system_ms();
    assert!(
        db >= before - 1_000 && db <= after + 1_000,
        "{before} <= {db} <= {after}"
    );
}

async fn login_failures(store: &dyn Store) {
    let keys = vec!["pair:bob:10.0.0.1".to_string(), "account:bob".to_string()];
    let count = |at: i64, forget_before: i64| Change::CountLoginFailure {
        keys: keys.clone(),
        at: Timestamp(at),
        forget_before: Timestamp(forget_before),
    };
    assert!(store.login_failures(&keys).await.unwrap().is_empty());
    for at in [1_000, 2_000, 3_000] {
        store.commit(vec![count(at, 0)], vec![]).await.unwrap();
    }
    let got = store.login_failures(&keys).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|f| f.failures == 3 && f.last_at == Timestamp(3_000))
    );
    // Counted at once from many places (nodes): every failure counts.
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(store.commit(vec![count(4_000 + i, 0)], vec![]));
    }
    for r in futures_util::future::join_all(tasks).await {
        r.unwrap();
    }
    let got = store.login_failures(&keys[..1]).await.unwrap();
    assert_eq!(got[0].failures, 23);
    // A counter idle since before the window starts again; idle ones are dropped.
    let other = vec!["source:10.0.0.9".to_string()];
    store
        .commit(
            vec![Change::CountLoginFailure {
                keys: other.clone(),
                at: Timestamp(5_000),
                forget_before: Timestamp(0),
            }],
            vec![],
        )
        .await
        .unwrap();
    store
        .commit(vec![count(100_000, 50_000)], vec![])
        .await
        .unwrap();
    let got = store.login_failures(&keys).await.unwrap();
    assert!(got.iter().all(|f| f.failures == 1), "{got:?}");
    assert!(store.login_failures(&other).await.unwrap().is_empty());
    // A right password clears its counters.
    store
        .commit(
            vec![Change::ClearLoginFailures { keys: keys.clone() }],
            vec![],
        )
        .await
        .unwrap();
    assert!(store.login_failures(&keys).await.unwrap().is_empty());
}

async fn leases(store: &dyn Store) {
    let claim = |holder: &str, now: i64| Change::ClaimLease {
        name: "checkpointer".into(),
        holder: holder.into(),
        now: Timestamp(now),
        until: Timestamp(now + 10_000),
    };
    let holds = |holder: &str, term: i64, now: i64| Change::HoldsLease {
        name: "checkpointer".into(),
        holder: holder.into(),
        term,
        now: Timestamp(now),
    };
    assert_eq!(store.lease("checkpointer").await.unwrap(), None);
    store.commit(vec![claim("a", 1_000)], vec![]).await.unwrap();
    let l = store.lease("checkpointer").await.unwrap().unwrap();
    assert_eq!((l.holder.as_str(), l.term), ("a", 1));
    // Held: another node cannot take it, the holder renews it in the same term.
    let err = store
        .commit(vec![claim("b", 2_000)], vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    store.commit(vec![claim("a", 5_000)], vec![]).await.unwrap();
    let l = store.lease("checkpointer").await.unwrap().unwrap();
    assert_eq!(
        (l.holder.as_str(), l.term, l.until),
        ("a", 1, Timestamp(15_000))
    );
    // The holder's fenced write commits, with its events.
    store
        .commit(vec![holds("a", 1, 6_000)], vec![ev("checkpoint.signed")])
        .await
        .unwrap();
    // Many nodes claiming an ended lease at once: exactly one gets it, in a new term.
    let mut tasks = Vec::new();
    let names: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    for n in &names {
        tasks.push(store.commit(vec![claim(n, 20_000)], vec![]));
    }
    let won = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(won, 1);
    let l = store.lease("checkpointer").await.unwrap().unwrap();
    assert_eq!(l.term, 2);
    assert!(names.contains(&l.holder));
    // The old holder (paused past its lease) is fenced off: its write and events are refused.
    let head = store.audit_head().await.unwrap();
    let err = store
        .commit(vec![holds("a", 1, 21_000)], vec![ev("checkpoint.signed")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.audit_head().await.unwrap(), head);
    // The new holder's fence is past due once its lease ends.
    let err = store
        .commit(vec![holds(&l.holder, 2, 31_000)], vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // Taken from a holder known dead; released at a clean stop.
    store
        .commit(
            vec![Change::TakeLease {
                name: "checkpointer".into(),
                holder: "c".into(),
                previous: l.holder.clone(),
                until: Timestamp(40_000),
            }],
            vec![],
        )
        .await
        .unwrap();
    let err = store
        .commit(
            vec![Change::TakeLease {
                name: "checkpointer".into(),
                holder: "d".into(),
                previous: l.holder.clone(),
                until: Timestamp(40_000),
            }],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let l = store.lease("checkpointer").await.unwrap().unwrap();
    assert_eq!((l.holder.as_str(), l.term), ("c", 3));
    store
        .commit(
            vec![Change::ReleaseLease {
                name: "checkpointer".into(),
                holder: "c".into(),
            }],
            vec![],
        )
        .await
        .unwrap();
    store
        .commit(vec![claim("d", 32_000)], vec![])
        .await
        .unwrap();
    assert_eq!(store.lease("checkpointer").await.unwrap().unwrap().term, 4);
}

/// A due revocation is claimed by one node only; a record of an attempt made after the claim
/// passed to another node is refused.
async fn revocation_claims(store: &dyn Store) {
    use breakglass_store::CredentialRecord;
    let rec = CredentialRecord {
        grant_id: "rv1".into(),
        resource: "prod-db".into(),
        kind: "postgres".into(),
        fingerprint: "fp-rv1".into(),
        handle: serde_json::json!({"role": "bg_rv1"}),
        issued_at: Timestamp(10),
        state: "issued".into(),
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        revoked_at: None,
        pickup: None,
    };
    store
        .commit(
            vec![
                Change::RecordCredential(rec),
                Change::StartRevocation {
                    grant_id: "rv1".into(),
                    at: Timestamp(100),
                },
            ],
            vec![],
        )
        .await
        .unwrap();
    let due = store.due_revocations(Timestamp(200), 10).await.unwrap();
    let c = due.iter().find(|c| c.grant_id == "rv1").unwrap();
    let expected = c.next_attempt_at.unwrap();
    let lease = |until: i64| Change::LeaseRevocation {
        grant_id: "rv1".into(),
        expected_next: expected,
        until: Timestamp(until),
    };
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(store.commit(vec![lease(20_000 + i)], vec![]));
    }
    let won: Vec<usize> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.is_ok().then_some(i))
        .collect();
    assert_eq!(won.len(), 1, "one claimer");
    let mine = 20_000 + won[0] as i64;
    let attempt = |until: i64| {
        vec![
            Change::RevocationLeaseHeld {
                grant_id: "rv1".into(),
                until: Timestamp(until),
            },
            Change::RevocationAttempt {
                grant_id: "rv1".into(),
                done: true,
                attempts: 1,
                next_attempt_at: Timestamp(300),
                last_error: None,
                at: Timestamp(300),
            },
        ]
    };
    let err = store.commit(attempt(mine + 1), vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    store.commit(attempt(mine), vec![]).await.unwrap();
    let c = store.credential("rv1").await.unwrap().unwrap();
    assert_eq!(c.state, "revoked");
}

async fn alert_fence(store: &dyn Store) {
    store
        .commit(
            vec![Change::EnqueueAlert(breakglass_store::NewAlert {
                created_at: Timestamp(100),
                sink: "sec".into(),
                kind: "grant.activated".into(),
                dedup_key: "fence-1".into(),
                doc: serde_json::json!({}),
            })],
            vec![],
        )
        .await
        .unwrap();
    let a = store
        .due_alerts(Timestamp(200), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.dedup_key == "fence-1")
        .unwrap();
    store
        .commit(
            vec![Change::LeaseAlert {
                id: a.id,
                expected_next: a.next_attempt_at,
                until: Timestamp(9_000),
            }],
            vec![],
        )
        .await
        .unwrap();
    let done = |until: i64| {
        vec![
            Change::AlertLeaseHeld {
                id: a.id,
                until: Timestamp(until),
            },
            Change::AlertAttempt {
                id: a.id,
                state: "delivered",
                attempts: 1,
                next_attempt_at: Timestamp(300),
                last_error: None,
                at: Timestamp(300),
            },
        ]
    };
    let err = store.commit(done(8_999), vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    store.commit(done(9_000), vec![]).await.unwrap();
}

/// The period summary counts events by kind from the hashed bodies (JSON access is per
/// dialect: this runs it on each).
async fn kind_counts(store: &dyn Store) {
    let at = |kind: &str, ts_ms: i64| {
        let mut e = ev(kind);
        e.ts_ms = ts_ms;
        e
    };
    let since = 4_000_000_000_000;
    store
        .commit(
            vec![],
            vec![
                at("kc.a", since - 1),
                at("kc.a", since),
                at("kc.b", since + 5),
                at("kc.a", since + 9),
            ],
        )
        .await
        .unwrap();
    let counts = store.audit_kind_counts(Timestamp(since)).await.unwrap();
    assert_eq!(
        counts,
        vec![("kc.a".to_string(), 2), ("kc.b".to_string(), 1)]
    );
}
