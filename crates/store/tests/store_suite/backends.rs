//! Behaviour that needs more than one handle on a database (several nodes), schema versions,
//! and the PostgreSQL backend's own runs of the suite.

use super::*;
use breakglass_store::postgres::PgStore;

#[tokio::test]
async fn sqlite_audit_rows_are_append_only() {
    let store = SqliteStore::memory().await.unwrap();
    store.commit(vec![], vec![ev("a")]).await.unwrap();
    assert!(
        sqlx::query("UPDATE audit SET kind = 'b'")
            .execute(store.pool())
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit")
            .execute(store.pool())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sqlite_fails_closed_when_the_audit_write_fails() {
    let store = SqliteStore::memory().await.unwrap();
    store
        .commit(vec![Change::AddUser(user("bob"))], vec![ev("user.added")])
        .await
        .unwrap();
    // Make every audit insert fail, as a full disk or broken database would.
    sqlx::query(
        "CREATE TRIGGER boom BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let g = grant::request(info("g-9", "bob"), &Approval::Auto, Timestamp(1_000));
    assert!(
        store
            .commit(vec![Change::InsertGrant(g)], vec![ev("grant.requested")])
            .await
            .is_err()
    );
    assert!(
        store.grant("g-9").await.unwrap().is_none(),
        "no audit record, no grant"
    );
}

/// Group commit: many concurrent units, some of which fail, each get their own answer; the
/// failed ones leave no trace and the chain stays contiguous. `stores` are handles on one
/// database (several PostgreSQL nodes, or clones of one SQLite store).
async fn concurrent_units_commit_independently(stores: Vec<std::sync::Arc<dyn Store>>) {
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            // Every 4th unit tries to add a user that another unit also adds: one wins.
            let name = if i % 4 == 0 {
                "dup".to_string()
            } else {
                format!("u{i}")
            };
            s.commit(vec![Change::AddUser(user(&name))], vec![ev("user.added")])
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 150 + 1);
    for store in &stores {
        assert_eq!(store.users().await.unwrap().len(), 151);
        let recs = store.audit_records(1, 1000).await.unwrap();
        assert_eq!(recs.len(), 151);
        assert_eq!(verify_chain(&recs), 151);
        assert_eq!(store.audit_head().await.unwrap().unwrap().seq, 151);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_units_commit_independently() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    concurrent_units_commit_independently(vec![std::sync::Arc::new(store)]).await;
}

/// A database that a newer breakglass migrated is refused, not misread.
#[tokio::test]
async fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version) VALUES (9999)")
        .execute(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    let err = SqliteStore::open(&path).await.err().expect("refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 9999, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("newer than this breakglass knows"),
        "{err}"
    );
}

// PostgreSQL: one throw-away cluster (testkit) for this test binary, a fresh database per test.

fn pg() -> &'static breakglass_testkit::pg::Pg {
    static PG: std::sync::OnceLock<breakglass_testkit::pg::Pg> = std::sync::OnceLock::new();
    PG.get_or_init(breakglass_testkit::pg::Pg::start)
}

/// A fresh database on the shared cluster; its URL.
fn pg_database(name: &str) -> String {
    let pg = pg();
    pg.sql(&format!("CREATE DATABASE {name}"));
    let url = pg.admin_url();
    let base = url
        .strip_suffix("/postgres")
        .expect("the admin URL ends in /postgres");
    format!("{base}/{name}")
}

#[tokio::test]
async fn postgres_passes_the_suite() {
    let store = PgStore::open(&pg_database("suite")).await.unwrap();
    suite(&store).await;
}

#[tokio::test]
async fn postgres_audit_rows_are_append_only() {
    let store = PgStore::open(&pg_database("append_only")).await.unwrap();
    store.commit(vec![], vec![ev("a")]).await.unwrap();
    for sql in [
        "UPDATE audit SET kind = 'b'",
        "DELETE FROM audit",
        "TRUNCATE audit",
        "DELETE FROM audit_head",
    ] {
        assert!(
            sqlx::query(sql).execute(store.pool()).await.is_err(),
            "{sql} was allowed"
        );
    }
    assert_eq!(store.audit_records(1, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_fails_closed_when_the_audit_write_fails() {
    let store = PgStore::open(&pg_database("fail_closed")).await.unwrap();
    store
        .commit(vec![Change::AddUser(user("bob"))], vec![ev("user.added")])
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
         CREATE TRIGGER boom BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION boom();",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let g = grant::request(info("g-9", "bob"), &Approval::Auto, Timestamp(1_000));
    assert!(
        store
            .commit(vec![Change::InsertGrant(g)], vec![ev("grant.requested")])
            .await
            .is_err()
    );
    assert!(
        store.grant("g-9").await.unwrap().is_none(),
        "no audit record, no grant"
    );
}

/// Three nodes (three stores, each with its own writer and pool) append to one chain at once:
/// the head row serialises them; every answer is right and the chain is one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_append_to_one_chain() {
    let url = pg_database("three_nodes");
    let mut stores: Vec<std::sync::Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        stores.push(std::sync::Arc::new(PgStore::open(&url).await.unwrap()));
    }
    concurrent_units_commit_independently(stores).await;
}

/// A compare-and-swap lost on one node is refused there, whichever node wrote first.
#[tokio::test]
async fn postgres_mfa_state_is_one_across_nodes() {
    let url = pg_database("mfa_nodes");
    let a = PgStore::open(&url).await.unwrap();
    let b = PgStore::open(&url).await.unwrap();
    a.commit(vec![Change::AddUser(user("bob"))], vec![ev("user.added")])
        .await
        .unwrap();
    let put = |v: i64| Change::PutMfaState {
        user: "bob".into(),
        expected_version: v,
        state: MfaState::default(),
    };
    a.commit(vec![put(0)], vec![ev("mfa.used")]).await.unwrap();
    let v = b.mfa("bob").await.unwrap().version;
    a.commit(vec![put(v)], vec![ev("mfa.used")]).await.unwrap();
    let err = b.commit(vec![put(v)], vec![ev("mfa.used")]).await.err();
    assert!(matches!(err, Some(StoreError::MfaConflict(_))), "{err:?}");
}

#[tokio::test]
async fn postgres_refuses_a_newer_schema() {
    let url = pg_database("newer_schema");
    let store = PgStore::open(&url).await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version) VALUES (9999)")
        .execute(store.pool())
        .await
        .unwrap();
    let err = PgStore::open(&url).await.err().expect("refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 9999, .. }),
        "{err}"
    );
}

/// Nodes starting together migrate once (the advisory lock), and all of them open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_starting_together_migrate_once() {
    let url = pg_database("start_together");
    // One task, four opens in flight at once (each waits on the database, not on the others).
    let (a, b, c, d) = tokio::join!(
        PgStore::open(&url),
        PgStore::open(&url),
        PgStore::open(&url),
        PgStore::open(&url)
    );
    for r in [a, b, c, d] {
        r.unwrap();
    }
    // Each migration applied once (a second run of one would have failed its CREATE TABLE).
    let (ok, n) = breakglass_testkit::pg::psql(
        &url,
        "SELECT COUNT(*) = COUNT(DISTINCT version) FROM schema_migrations",
    );
    assert!(ok, "{n}");
    assert_eq!(n.trim(), "t");
}

/// Two nodes catching up on the same due grants end them in opposite orders, each in batches:
/// rows are locked in one order on every node, so one of them wins each grant (the other is
/// told Conflict) and neither is ever picked as a deadlock victim. (Before units were ordered,
/// PostgreSQL reported "deadlock detected" after the store restarted under three nodes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_ending_the_same_grants_in_opposite_orders_never_deadlock() {
    let url = pg_database("opposite_orders");
    let a: std::sync::Arc<dyn Store> = std::sync::Arc::new(PgStore::open(&url).await.unwrap());
    let b: std::sync::Arc<dyn Store> = std::sync::Arc::new(PgStore::open(&url).await.unwrap());
    const N: usize = 96;
    let grants: Vec<_> = (0..N)
        .map(|i| {
            grant::request(
                info(&format!("d-{i:03}"), "bob"),
                &Approval::Auto,
                Timestamp(1_000),
            )
        })
        .collect();
    a.commit(
        grants.iter().cloned().map(Change::InsertGrant).collect(),
        vec![ev("grant.requested")],
    )
    .await
    .unwrap();
    let ended: Vec<AnyGrant> = grants
        .into_iter()
        .map(|g| {
            let AnyGrant::Active(g) = g else {
                panic!("auto grants are active")
            };
            AnyGrant::from(g.expire(Timestamp(61_000)).unwrap())
        })
        .collect();
    let mut tasks = Vec::new();
    for round in 0..2 {
        for (i, g) in ended.iter().enumerate() {
            // Node A in one order, node B in the other: both in flight at once.
            let (store, g) = if round == 0 {
                (a.clone(), g.clone())
            } else {
                (b.clone(), ended[N - 1 - i].clone())
            };
            tasks.push(tokio::spawn(async move {
                let update = Change::UpdateGrant {
                    expected_state: "active",
                    grant: g,
                };
                store.commit(vec![update], vec![ev("grant.expired")]).await
            }));
        }
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("ending a grant on two nodes at once failed: {e}"),
        }
    }
    assert_eq!(won, N, "each grant ended exactly once");
}
