//! The store contract. `suite` takes any `Store`; every backend must pass it.

use breakglass_core::audit::{NewEvent, Verifier};
use breakglass_core::grant::{self, AnyGrant, Approval, GrantInfo, OnTimeout};
use breakglass_core::mfa::MfaState;
use breakglass_core::time::Timestamp;
use breakglass_store::prelude::*;
use breakglass_store::sqlite::SqliteStore;
use breakglass_store::{Change, GrantFilter, StatsQuery, StoreError, User};
use std::time::Duration;

/// Several handles on one database, schema versions, and PostgreSQL's own guarantees.
#[path = "store_suite/backends.rs"]
mod backends;
/// Clock, login counters, leases and claims shared by the nodes.
#[path = "store_suite/coordination.rs"]
mod coordination;

fn ev(kind: &str) -> NewEvent {
    NewEvent {
        ts_ms: 1,
        kind: kind.into(),
        actor: Some("t".into()),
        grant_id: None,
        resource: None,
        data: serde_json::json!({}),
    }
}

fn info(id: &str, user: &str) -> GrantInfo {
    GrantInfo {
        rev: 0,
        drill: false,
        training: None,
        id: id.into(),
        user: user.into(),
        resource: "prod-db".into(),
        policy: "p".into(),
        reason: "r".into(),
        ticket: None,
        requested_at: Timestamp(1_000),
        duration_ms: 60_000,
        max_ms: 120_000,
        review_by: vec![],
        review_within_ms: None,
        notify: vec![],
        flags: vec![],
        ssh_public_key: None,
    }
}

fn user(name: &str) -> User {
    User {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        groups: vec!["oncall".into()],
        disabled: false,
        created_at: Timestamp(0),
    }
}

/// The behaviour every backend must have: a backend's test runs this on a fresh store.
async fn suite(store: &dyn Store) {
    users_mfa_grants_audit(store).await;
    credentials(store).await;
    grant_stats(store).await;
    recordings(store).await;
    cursors(store).await;
    coordination::coordination(store).await;
}

/// Stream and witness cursors: opened once, moved only forward from where a delivery started
/// (compare-and-swap), failures counted until the next success, and a move that fails takes
/// the rest of its unit of work with it.
async fn cursors(store: &dyn Store) {
    let at = Timestamp(1_000);
    assert_eq!(store.cursor("siem").await.unwrap(), None);
    let open = |name: &str, position| Change::OpenCursor {
        name: name.into(),
        position,
        at,
    };
    store.commit(vec![open("siem", 0)], vec![]).await.unwrap();
    // Opening again changes nothing.
    store.commit(vec![open("siem", 7)], vec![]).await.unwrap();
    let c = store.cursor("siem").await.unwrap().unwrap();
    assert_eq!((c.position, c.failures, c.created_at), (0, 0, at));
    assert_eq!((c.delivered_at, c.last_error.clone()), (None, None));
    for i in 1..=2 {
        store
            .commit(
                vec![Change::CursorFailed {
                    name: "siem".into(),
                    error: format!("refused {i}"),
                    at: Timestamp(2_000 + i),
                }],
                vec![],
            )
            .await
            .unwrap();
    }
    let c = store.cursor("siem").await.unwrap().unwrap();
    assert_eq!(c.failures, 2);
    assert_eq!(c.last_error.as_deref(), Some("refused 2"));
    assert_eq!(c.last_attempt_at, Some(Timestamp(2_002)));
    let advance = |from, to| Change::AdvanceCursor {
        name: "siem".into(),
        from,
        to,
        at: Timestamp(3_000),
    };
    store.commit(vec![advance(0, 40)], vec![]).await.unwrap();
    let c = store.cursor("siem").await.unwrap().unwrap();
    assert_eq!((c.position, c.failures, c.last_error), (40, 0, None));
    assert_eq!(c.delivered_at, Some(Timestamp(3_000)));
    // A second deliverer that started from 0 cannot move it (back), nor anything with it.
    let e = store
        .commit(vec![open("other", 3), advance(0, 20)], vec![ev("x")])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(store.cursor("other").await.unwrap(), None);
    assert_eq!(store.cursor("siem").await.unwrap().unwrap().position, 40);
    // A failure of an unknown cursor is refused.
    let e = store
        .commit(
            vec![Change::CursorFailed {
                name: "nope".into(),
                error: "x".into(),
                at,
            }],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    store
        .commit(vec![open("witness:dir", 12)], vec![])
        .await
        .unwrap();
    let names: Vec<(String, u64)> = store
        .cursors()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.position))
        .collect();
    assert_eq!(names, [("siem".into(), 40), ("witness:dir".into(), 12)]);
    // What a witness reads: the checkpoints after the one it copied last.
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    for size in [3, 9, 27] {
        store
            .add_checkpoint(breakglass_store::StoredCheckpoint {
                size,
                note: format!("note {size}"),
                created_at: at,
            })
            .await
            .unwrap();
    }
    let after = |s, l| async move {
        store
            .checkpoints_after(s, l)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.size)
            .collect::<Vec<_>>()
    };
    assert_eq!(after(3, 10).await, [9, 27]);
    assert_eq!(after(0, 1).await, [3]);
    assert!(after(27, 10).await.is_empty());
    assert_eq!(store.latest_checkpoint().await.unwrap().unwrap().size, 27);
}

/// Checks that `recs` form a valid hash chain; returns how many events it holds.
fn verify_chain(recs: &[breakglass_core::audit::AuditRecord]) -> u64 {
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let mut v = Verifier::new(key, "o".into(), "o".into());
    for r in recs {
        v.push(r.seq, &r.body, &r.leaf_hash, &r.chain_hash).unwrap();
    }
    v.finish().unwrap().events
}

/// Users, MFA state, grants (compare-and-swap) and the audit chain they write.
async fn users_mfa_grants_audit(store: &dyn Store) {
    // Users: add, duplicate refused and nothing else from that commit applied.
    store
        .commit(vec![Change::AddUser(user("bob"))], vec![ev("user.added")])
        .await
        .unwrap();
    let err = store
        .commit(
            vec![Change::AddUser(user("eve")), Change::AddUser(user("bob"))],
            vec![ev("x")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)));
    assert!(
        store.user("eve").await.unwrap().is_none(),
        "a failed commit must apply nothing"
    );
    assert_eq!(
        store.audit_head().await.unwrap().unwrap().seq,
        1,
        "nor audit anything"
    );

    // MFA state round trip.
    let st = MfaState {
        failures: 2,
        locked_until: Some(Timestamp(5)),
        last_step: Some(9),
        last_lockout: Some(Timestamp(5)),
    };
    store
        .commit(
            vec![
                Change::PutTotp {
                    user: "bob".into(),
                    sealed: Some(vec![1, 2, 3]),
                    confirmed: true,
                },
                Change::PutMfaState {
                    user: "bob".into(),
                    expected_version: 0,
                    state: st.clone(),
                },
            ],
            vec![],
        )
        .await
        .unwrap();
    let m = store.mfa("bob").await.unwrap();
    assert_eq!(
        (m.totp_sealed.clone(), m.totp_confirmed, m.state.clone()),
        (Some(vec![1, 2, 3]), true, st.clone())
    );
    // Compare-and-swap: a state computed from an older read is refused, with nothing applied.
    let v = m.version;
    let next = MfaState {
        failures: 3,
        ..st.clone()
    };
    store
        .commit(
            vec![Change::PutMfaState {
                user: "bob".into(),
                expected_version: v,
                state: next.clone(),
            }],
            vec![ev("mfa.failed")],
        )
        .await
        .unwrap();
    let head = store.audit_head().await.unwrap().unwrap().seq;
    let err = store
        .commit(
            vec![Change::PutMfaState {
                user: "bob".into(),
                expected_version: v,
                state: MfaState::default(),
            }],
            vec![ev("mfa.verified")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::MfaConflict(_)), "{err}");
    let m = store.mfa("bob").await.unwrap();
    assert_eq!((m.state, m.version), (next, v + 1));
    assert_eq!(store.audit_head().await.unwrap().unwrap().seq, head);

    // Grants: insert, optimistic update, conflict on a stale expected state.
    let g = grant::request(info("g-1", "bob"), &Approval::Auto, Timestamp(1_000));
    store
        .commit(
            vec![Change::InsertGrant(g.clone())],
            vec![ev("grant.requested")],
        )
        .await
        .unwrap();
    assert_eq!(store.grant("g-1").await.unwrap(), Some(g.clone()));
    assert_eq!(
        store.next_deadline().await.unwrap(),
        Some(Timestamp(61_000))
    );
    assert!(
        store
            .due_grants(Timestamp(60_999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.due_grants(Timestamp(61_000), 10).await.unwrap().len(),
        1
    );
    let AnyGrant::Active(a) = g else {
        panic!("auto grants are active")
    };
    let expired = AnyGrant::from(a.clone().expire(Timestamp(61_000)).unwrap());
    store
        .commit(
            vec![Change::UpdateGrant {
                expected_state: "active",
                grant: expired.clone(),
            }],
            vec![ev("grant.expired")],
        )
        .await
        .unwrap();
    let revoked = AnyGrant::from(a.revoke("x", None, Timestamp(61_500)));
    let err = store
        .commit(
            vec![Change::UpdateGrant {
                expected_state: "active",
                grant: revoked,
            }],
            vec![ev("grant.revoked")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "a second node must not apply the same transition"
    );
    let mut stored = expired.clone();
    stored.info_mut().rev = 1;
    assert_eq!(store.grant("g-1").await.unwrap(), Some(stored));
    assert_eq!(store.next_deadline().await.unwrap(), None);

    let quorum = Approval::Quorum {
        count: 1,
        from: vec!["security".into()],
        timeout: Some(Duration::from_secs(1)),
        on_timeout: OnTimeout::Deny,
    };
    let quorum2 = Approval::Quorum {
        count: 2,
        from: vec!["security".into()],
        timeout: None,
        on_timeout: OnTimeout::Deny,
    };
    let p = grant::request(info("g-2", "bob"), &quorum, Timestamp(2_000));
    let p2 = grant::request(info("g-3", "bob"), &quorum2, Timestamp(2_000));
    store
        .commit(
            vec![Change::InsertGrant(p), Change::InsertGrant(p2.clone())],
            vec![ev("grant.requested")],
        )
        .await
        .unwrap();
    // Two approvals computed from the same read: the second is refused, never overwrites.
    let AnyGrant::Pending(p2) = p2 else {
        panic!("quorum grants are pending")
    };
    let sec = vec!["security".to_string()];
    let approve = |who: &str| match p2.clone().approve(who, &sec, Timestamp(2_100)).unwrap() {
        grant::Approved::StillPending(p) => AnyGrant::from(p),
        grant::Approved::Activated(a) => AnyGrant::from(a),
    };
    let update = |g: AnyGrant| Change::UpdateGrant {
        expected_state: "pending",
        grant: g,
    };
    store
        .commit(vec![update(approve("carol"))], vec![ev("grant.approved")])
        .await
        .unwrap();
    let err = store
        .commit(vec![update(approve("dave"))], vec![ev("grant.approved")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let now = store.grant("g-3").await.unwrap().unwrap();
    assert_eq!(now.approvers(), vec!["carol"]);
    assert_eq!(now.info().rev, 1);
    let list = store
        .grants(&GrantFilter {
            user: Some("bob".into()),
            states: vec!["pending".into()],
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(store.count_grants("pending").await.unwrap(), 2);

    // The audit chain the store wrote verifies.
    let recs = store.audit_records(1, 1000).await.unwrap();
    assert_eq!(recs.len(), 6);
    assert_eq!(verify_chain(&recs), 6);
}

/// Credentials: recorded, listed while open, revoked with retries, a sealed pickup taken once.
async fn credentials(store: &dyn Store) {
    use breakglass_store::CredentialRecord;
    let rec = |id: &str, kind: &str, pickup: Option<Vec<u8>>| CredentialRecord {
        grant_id: id.into(),
        resource: "prod-db".into(),
        kind: kind.into(),
        fingerprint: format!("fp-{id}"),
        handle: serde_json::json!({"role": format!("bg_{id}"), "serial": 7}),
        issued_at: Timestamp(10),
        state: "issued".into(),
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        revoked_at: None,
        pickup,
    };
    store
        .commit(
            vec![
                Change::RecordCredential(rec("c1", "postgres", None)),
                Change::RecordCredential(rec("c2", "ssh", Some(vec![1, 2, 3]))),
            ],
            vec![ev("credential.issued")],
        )
        .await
        .unwrap();
    assert_eq!(store.open_credentials("prod-db").await.unwrap().len(), 2);
    assert!(store.revoked_credentials("ssh").await.unwrap().is_empty());
    // The pickup is handed out once; a second take is a conflict that changes nothing.
    assert_eq!(
        store.credential("c2").await.unwrap().unwrap().pickup,
        Some(vec![1, 2, 3])
    );
    let take = || Change::TakeCredentialPickup {
        grant_id: "c2".into(),
    };
    store
        .commit(vec![take()], vec![ev("credential.picked_up")])
        .await
        .unwrap();
    assert!(
        store
            .credential("c2")
            .await
            .unwrap()
            .unwrap()
            .pickup
            .is_none()
    );
    let head = store.audit_head().await.unwrap().map(|h| h.seq);
    assert!(matches!(
        store
            .commit(vec![take()], vec![ev("credential.picked_up")])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.audit_head().await.unwrap().map(|h| h.seq), head);
    // Revocation: queued, a failed attempt, then confirmed.
    store
        .commit(
            vec![Change::StartRevocation {
                grant_id: "c2".into(),
                at: Timestamp(20),
            }],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(store.revoked_credentials("ssh").await.unwrap().len(), 1);
    assert_eq!(
        store
            .due_revocations(Timestamp(20), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .due_revocations(Timestamp(19), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Records one revocation attempt on c2; returns c2 as stored after it.
    let attempt = async |done: bool, at: i64| {
        let change = Change::RevocationAttempt {
            grant_id: "c2".into(),
            done,
            attempts: 1,
            next_attempt_at: Timestamp(at + 1000),
            last_error: (!done).then(|| "target down".to_string()),
            at: Timestamp(at),
        };
        store.commit(vec![change], vec![]).await.unwrap();
        store.credential("c2").await.unwrap().unwrap()
    };
    let c = attempt(false, 21).await;
    assert_eq!(
        (c.state.as_str(), c.last_error.as_deref()),
        ("revoking", Some("target down"))
    );
    assert!(
        store
            .due_revocations(Timestamp(500), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let c = attempt(true, 1100).await;
    assert_eq!(
        (c.state.as_str(), c.revoked_at),
        ("revoked", Some(Timestamp(1100)))
    );
    let open = store.open_credentials("prod-db").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].grant_id, "c1");
}

/// Anomaly facts: windowed counts per user and per resource, capped, and "ever had it".
async fn recordings(store: &dyn Store) {
    use breakglass_store::{Chunk, RecordingSession};
    let session = RecordingSession {
        id: "s-1".into(),
        grant_id: "g-rec".into(),
        host: "bastion".into(),
        client: "10.0.0.1".into(),
        recorder_addr: "127.0.0.1".into(),
        kind: "pty".into(),
        command: None,
        cols: 80,
        rows: 24,
        mode: "required".into(),
        started_at: Timestamp(5_000),
        ended_at: None,
        end_reason: None,
        exit_status: None,
        bytes: 0,
        chunks: 0,
        capped: false,
        purged: false,
        secret_hash: vec![7; 32],
    };
    store
        .commit(
            vec![Change::StartRecording(session.clone())],
            vec![ev("session.started")],
        )
        .await
        .unwrap();
    let chunk = |seq: u64, payload: &[u8]| Chunk {
        session_id: "s-1".into(),
        seq,
        at: Timestamp(6_000 + seq as i64),
        size: payload.len() as u64,
        digest: vec![seq as u8; 32],
        payload: Some(payload.to_vec()),
    };
    for seq in 0..3 {
        store
            .commit(
                vec![Change::AppendChunk(chunk(seq, b"abc"))],
                vec![ev("recording.chunk")],
            )
            .await
            .unwrap();
    }
    // Out of order, repeated or skipped chunk numbers are refused, and nothing is written.
    let before = store.audit_records(1, 10_000).await.unwrap().len();
    for seq in [1, 2, 4] {
        let e = store
            .commit(
                vec![Change::AppendChunk(chunk(seq, b"zz"))],
                vec![ev("recording.chunk")],
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    }
    assert_eq!(store.audit_records(1, 10_000).await.unwrap().len(), before);
    let s = store.recording_session("s-1").await.unwrap().unwrap();
    assert_eq!((s.chunks, s.bytes), (3, 9));
    assert_eq!(store.recording_sessions("g-rec").await.unwrap().len(), 1);
    assert_eq!(store.open_recording_sessions().await.unwrap().len(), 1);
    let cs = store.recording_chunks("s-1", 1, 10).await.unwrap();
    assert_eq!(cs.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(cs[0], chunk(1, b"abc"));
    let end = || Change::EndRecording {
        session_id: "s-1".into(),
        at: Timestamp(9_000),
        reason: "exited".into(),
        exit_status: Some(0),
    };
    store
        .commit(vec![end()], vec![ev("session.ended")])
        .await
        .unwrap();
    assert!(matches!(
        store.commit(vec![end()], vec![ev("session.ended")]).await,
        Err(StoreError::Conflict(_))
    ));
    // No chunk after the end.
    assert!(
        store
            .commit(vec![Change::AppendChunk(chunk(3, b"x"))], vec![])
            .await
            .is_err()
    );
    let s = store.recording_session("s-1").await.unwrap().unwrap();
    assert_eq!(
        (s.ended_at, s.exit_status),
        (Some(Timestamp(9_000)), Some(0))
    );
    assert!(store.open_recording_sessions().await.unwrap().is_empty());
    assert_eq!(
        store
            .purgeable_sessions(Timestamp(9_001), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .purgeable_sessions(Timestamp(9_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .commit(
            vec![Change::PurgeRecording {
                session_id: "s-1".into(),
            }],
            vec![ev("recording.purged")],
        )
        .await
        .unwrap();
    let cs = store.recording_chunks("s-1", 0, 10).await.unwrap();
    assert!(
        cs.iter()
            .all(|c| c.payload.is_none() && c.digest.len() == 32)
    );
    assert!(
        store
            .purgeable_sessions(Timestamp(99_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.all_recording_sessions("", 10).await.unwrap().len(), 1);
    assert!(
        store
            .all_recording_sessions("s-1", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn grant_stats(store: &dyn Store) {
    let n = breakglass_store::GRANT_STATS_CAP + 5;
    let grants = (0..n)
        .map(|i| {
            let mut inf = info(&format!("s-{i}"), "carol");
            inf.resource = "stats-db".into();
            inf.requested_at = Timestamp(10_000 + i as i64);
            Change::InsertGrant(grant::request(
                inf,
                &Approval::Auto,
                Timestamp(10_000 + i as i64),
            ))
        })
        .collect();
    store.commit(grants, vec![ev("bulk")]).await.unwrap();
    let cap = breakglass_store::GRANT_STATS_CAP;
    assert_eq!(
        store
            .grant_stats(&stats("carol", Timestamp(0), Timestamp(0)))
            .await
            .unwrap(),
        (cap, cap, true)
    );
    let recent = Timestamp(10_000 + n as i64 - 2);
    assert_eq!(
        store
            .grant_stats(&stats("carol", recent, Timestamp(10_000 + n as i64 - 3)))
            .await
            .unwrap(),
        (2, 3, true)
    );
    assert_eq!(
        store
            .grant_stats(&stats("dave", Timestamp(0), recent))
            .await
            .unwrap(),
        (0, 2, false)
    );
}

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    suite(&store).await;
}

fn stats(user: &str, user_since: Timestamp, resource_since: Timestamp) -> StatsQuery<'_> {
    StatsQuery {
        user,
        resource: "stats-db",
        user_since,
        resource_since,
    }
}
