//! Passkeys, WebAuthn ceremonies and recovery codes in the store: single use is the store's
//! guarantee (a second take or use is a conflict, and nothing else of that unit is applied), a
//! credential id belongs to one user, and ceremonies in flight are bounded per user.

use breakglass_core::time::Timestamp;
use breakglass_store::postgres::PgStore;
use breakglass_store::prelude::*;
use breakglass_store::sqlite::SqliteStore;
use breakglass_store::{Ceremony, Change, PasskeyRecord, StoreError, User};

fn user(name: &str) -> Change {
    Change::AddUser(User {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        groups: vec![],
        disabled: false,
        created_at: Timestamp(0),
    })
}

fn ceremony(id: &str, user: &str, at: i64) -> Ceremony {
    Ceremony {
        id: id.into(),
        user: user.into(),
        kind: "authenticate".into(),
        purpose: "login".into(),
        subject: user.into(),
        session_hash: None,
        state_json: "{}".into(),
        expires_at: Timestamp(at + 300_000),
        created_at: Timestamp(at),
    }
}

fn passkey(id: &str, user: &str, cred: &str) -> PasskeyRecord {
    PasskeyRecord {
        id: id.into(),
        user: user.into(),
        cred_id: cred.into(),
        name: format!("{user}'s key"),
        passkey_json: "{}".into(),
        created_at: Timestamp(1),
        last_used_at: None,
    }
}

#[tokio::test]
async fn sqlite_single_use_unique_credentials_and_bounded_ceremonies() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    single_use_unique_credentials_and_bounded_ceremonies(&store).await;
}

#[tokio::test]
async fn postgres_single_use_unique_credentials_and_bounded_ceremonies() {
    let pg = breakglass_testkit::pg::Pg::start();
    let store = PgStore::open(&pg.admin_url()).await.unwrap();
    single_use_unique_credentials_and_bounded_ceremonies(&store).await;
}

async fn single_use_unique_credentials_and_bounded_ceremonies(store: &dyn Store) {
    store
        .commit(vec![user("alice"), user("bob")], vec![])
        .await
        .unwrap();

    // A ceremony is taken once; the second take fails the whole unit.
    store
        .commit(
            vec![Change::StartCeremony(ceremony("c1", "alice", 1_000))],
            vec![],
        )
        .await
        .unwrap();
    let take = || Change::TakeCeremony { id: "c1".into() };
    store.commit(vec![take()], vec![]).await.unwrap();
    let again = store
        .commit(
            vec![take(), Change::AddPasskey(passkey("p9", "alice", "x9"))],
            vec![],
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(store.passkeys("alice").await.unwrap().is_empty());

    // A flood of challenges keeps only the user's newest 8; expired ones go.
    for i in 0..20 {
        let c = ceremony(&format!("f{i:02}"), "alice", 2_000 + i);
        store
            .commit(vec![Change::StartCeremony(c)], vec![])
            .await
            .unwrap();
    }
    let mut kept = 0;
    for i in 0..20 {
        if store.ceremony(&format!("f{i:02}")).await.unwrap().is_some() {
            kept += 1;
            assert!(i >= 12, "an old ceremony f{i:02} was kept");
        }
    }
    assert_eq!(kept, 8);
    let later = ceremony("late", "bob", 10_000_000);
    store
        .commit(vec![Change::StartCeremony(later)], vec![])
        .await
        .unwrap();
    assert!(
        store.ceremony("f19").await.unwrap().is_none(),
        "expired, purged"
    );

    // One credential id, one user.
    store
        .commit(
            vec![Change::AddPasskey(passkey("p1", "alice", "cred-a"))],
            vec![],
        )
        .await
        .unwrap();
    let stolen = store
        .commit(
            vec![Change::AddPasskey(passkey("p2", "bob", "cred-a"))],
            vec![],
        )
        .await;
    assert!(
        matches!(stolen, Err(StoreError::AlreadyExists(_))),
        "{stolen:?}"
    );
    // bob cannot remove alice's passkey.
    let removed = store
        .commit(
            vec![Change::RemovePasskey {
                user: "bob".into(),
                id: "p1".into(),
            }],
            vec![],
        )
        .await;
    assert!(
        matches!(removed, Err(StoreError::NotFound(_))),
        "{removed:?}"
    );
    assert_eq!(store.passkeys("alice").await.unwrap().len(), 1);

    // Recovery codes: a new set replaces the old; each is used once.
    let set = |n: u8| Change::ReplaceRecoveryCodes {
        user: "alice".into(),
        hashes: (0..10).map(|i| [n * 16 + i; 32]).collect(),
        at: Timestamp(5),
    };
    store.commit(vec![set(1)], vec![]).await.unwrap();
    store.commit(vec![set(2)], vec![]).await.unwrap();
    let codes = store.recovery_codes("alice").await.unwrap();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.hash[0] >= 32), "the old set is gone");
    let use_code = |h: u8| Change::UseRecoveryCode {
        user: "alice".into(),
        hash: [h; 32],
        at: Timestamp(6),
    };
    store.commit(vec![use_code(32)], vec![]).await.unwrap();
    let twice = store.commit(vec![use_code(32)], vec![]).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let old = store.commit(vec![use_code(16)], vec![]).await;
    assert!(matches!(old, Err(StoreError::Conflict(_))), "{old:?}");
    let unused = store.recovery_codes("alice").await.unwrap();
    assert_eq!(unused.iter().filter(|c| c.used_at.is_none()).count(), 9);
}
