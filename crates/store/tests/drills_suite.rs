//! Practice in the store: drill and people-drill (training) grants are left out of the
//! anomaly counts, people-drill windows open and close once, and each person's newest training
//! grant is found. Both backends.

use breakglass_core::grant::{self, Approval, GrantInfo};
use breakglass_core::time::Timestamp;
use breakglass_store::postgres::PgStore;
use breakglass_store::prelude::*;
use breakglass_store::sqlite::SqliteStore;
use breakglass_store::{Change, DrillWindow, StatsQuery, StoreError};

fn info(id: &str, user: &str, at: i64) -> GrantInfo {
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
        requested_at: Timestamp(at),
        duration_ms: 60_000,
        max_ms: 120_000,
        review_by: vec![],
        review_within_ms: None,
        notify: vec![],
        flags: vec![],
        ssh_public_key: None,
    }
}

fn insert(i: GrantInfo) -> Change {
    let at = i.requested_at;
    Change::InsertGrant(grant::request(i, &Approval::Auto, at))
}

fn window(id: &str, opened_at: i64, until: i64, resources: &[&str]) -> DrillWindow {
    DrillWindow {
        id: id.into(),
        opened_by: "root".into(),
        opened_at: Timestamp(opened_at),
        until: Timestamp(until),
        resources: resources.iter().map(|r| r.to_string()).collect(),
        reason: "game day <b>".into(),
        closed_by: None,
    }
}

#[tokio::test]
async fn sqlite_practice_is_not_counted_and_windows_open_and_close_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    practice(&store).await;
}

#[tokio::test]
async fn postgres_practice_is_not_counted_and_windows_open_and_close_once() {
    let pg = breakglass_testkit::pg::Pg::start();
    let store = PgStore::open(&pg.admin_url()).await.unwrap();
    practice(&store).await;
}

async fn practice(store: &dyn Store) {
    let stats = |user| StatsQuery {
        user,
        resource: "prod-db",
        user_since: Timestamp(0),
        resource_since: Timestamp(0),
    };
    let mut drill = info("g-drill", "breakglass-drill", 1_000);
    drill.drill = true;
    let mut trained = info("g-trained", "erin", 2_000);
    trained.training = Some("w-1".into());
    let mut trained_later = info("g-trained-2", "erin", 3_000);
    trained_later.training = Some("w-2".into());
    // Text typed to look like the marker changes nothing: the column is set by the server.
    let mut forged = info("g-forged", "frank", 2_500);
    forged.reason = "\"drill\":true \"training\":\"w-1\"".into();
    store
        .commit(
            vec![
                insert(drill),
                insert(trained),
                insert(trained_later),
                insert(forged),
            ],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        store.grant_stats(&stats("erin")).await.unwrap(),
        (0, 1, false)
    );
    assert_eq!(
        store.grant_stats(&stats("breakglass-drill")).await.unwrap(),
        (0, 1, false)
    );
    assert_eq!(
        store.grant_stats(&stats("frank")).await.unwrap(),
        (1, 1, true)
    );
    let last = store.last_people_drills().await.unwrap();
    assert_eq!(last, vec![("erin".to_string(), Timestamp(3_000))]);

    // Windows: open at a time, covering their resources; closed once.
    store
        .commit(
            vec![
                Change::OpenDrillWindow(window("w-1", 10_000, 20_000, &["prod-db"])),
                Change::OpenDrillWindow(window("w-2", 15_000, 30_000, &[])),
            ],
            vec![],
        )
        .await
        .unwrap();
    let ids = |v: Vec<DrillWindow>| v.into_iter().map(|w| w.id).collect::<Vec<_>>();
    assert!(
        store
            .open_drill_windows(Timestamp(9_999))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(store.open_drill_windows(Timestamp(12_000)).await.unwrap()),
        ["w-1"]
    );
    let both = store.open_drill_windows(Timestamp(16_000)).await.unwrap();
    assert_eq!(ids(both.clone()), ["w-2", "w-1"]);
    assert!(both[0].covers("anything") && both[1].covers("prod-db") && !both[1].covers("x"));
    assert_eq!(both[1].reason, "game day <b>");
    let close = |at| Change::CloseDrillWindow {
        id: "w-1".into(),
        by: "root".into(),
        at: Timestamp(at),
    };
    store.commit(vec![close(17_000)], vec![]).await.unwrap();
    assert_eq!(
        ids(store.open_drill_windows(Timestamp(17_000)).await.unwrap()),
        ["w-2"]
    );
    let again = store.commit(vec![close(18_000)], vec![]).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    let all = store.drill_windows(10).await.unwrap();
    assert_eq!(ids(all.clone()), ["w-2", "w-1"]);
    assert_eq!(all[1].until, Timestamp(17_000));
    assert_eq!(all[1].closed_by.as_deref(), Some("root"));
}
