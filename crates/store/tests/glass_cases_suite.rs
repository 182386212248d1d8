//! Glass cases in the store: a case's emergency PostgreSQL logins are "live" (kept by the
//! sweep) only while the case is sealed and their day has not ended; a case reconciles once.
//! Both backends.

use breakglass_core::time::Timestamp;
use breakglass_store::postgres::PgStore;
use breakglass_store::prelude::*;
use breakglass_store::sqlite::SqliteStore;
use breakglass_store::{Change, GlassCase, GlassRole, GlassSerial, StoreError};

#[tokio::test]
async fn sqlite_glass_case_logins_live_only_while_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    logins(&store).await;
}

#[tokio::test]
async fn postgres_glass_case_logins_live_only_while_sealed() {
    let pg = breakglass_testkit::pg::Pg::start();
    let store = PgStore::open(&pg.admin_url()).await.unwrap();
    logins(&store).await;
}

fn case(id: &str) -> GlassCase {
    GlassCase {
        id: id.into(),
        sealed_by: "sam".into(),
        created_at: Timestamp(0),
        expires_at: Timestamp(3_000),
        threshold: 2,
        custodians: vec!["alice".into(), "bob".into()],
        chain_head: None,
        journal_key: vec![1; 32],
        state: "sealed".into(),
        warned_at: None,
        reconciled_at: None,
    }
}

fn role(case_id: &str, day: i64) -> GlassRole {
    GlassRole {
        case_id: case_id.into(),
        resource: "prod-db".into(),
        role: format!("bg_{case_id}_{day}"),
        valid_after: Timestamp(day * 1_000),
        valid_before: Timestamp((day + 1) * 1_000),
    }
}

async fn logins(store: &dyn Store) {
    for id in ["gc-a", "gc-b"] {
        store
            .commit(
                vec![Change::SealGlassCase {
                    case: case(id),
                    serials: vec![GlassSerial {
                        case_id: id.into(),
                        serial: if id == "gc-a" { 1 } else { 2 },
                        resource: "bastion".into(),
                        valid_after: Timestamp(0),
                        valid_before: Timestamp(3_000),
                    }],
                    roles: (0..3).map(|d| role(id, d)).collect(),
                }],
                vec![],
            )
            .await
            .unwrap();
    }
    let names = |v: Vec<GlassRole>| v.into_iter().map(|r| r.role).collect::<Vec<_>>();
    assert_eq!(
        names(store.glass_case_roles("gc-a").await.unwrap()).len(),
        3
    );
    // At 1.5 s day 0 has ended: only days 1 and 2 of both cases are live.
    let live = names(store.glass_case_live_roles(Timestamp(1_500)).await.unwrap());
    assert_eq!(
        live,
        ["bg_gc-a_1", "bg_gc-a_2", "bg_gc-b_1", "bg_gc-b_2"],
        "{live:?}"
    );
    // Reconciled: none of gc-a's logins are live any more (the sweep drops them).
    let rec = || Change::ReconcileGlassCase {
        id: "gc-a".into(),
        at: Timestamp(1_600),
    };
    store.commit(vec![rec()], vec![]).await.unwrap();
    let live = names(store.glass_case_live_roles(Timestamp(1_500)).await.unwrap());
    assert_eq!(live, ["bg_gc-b_1", "bg_gc-b_2"], "{live:?}");
    assert_eq!(
        names(store.glass_case_roles("gc-a").await.unwrap()).len(),
        3
    );
    // Once only.
    let e = store.commit(vec![rec()], vec![]).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(
        store
            .glass_case_revoked_serials(Timestamp(0))
            .await
            .unwrap(),
        vec![1]
    );
}
