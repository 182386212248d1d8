//! The drill scheduler on its own, with the clock injected: the real server (embedded store,
//! real exec hooks) started just before a slot; when the slot starts a drill runs by itself
//! for each drilled resource (a passing one and one whose grant hook fails), its result is in
//! the history with trigger `scheduled` and the slot; two slots later without a pass the
//! failing resource is reported `drill.overdue` (audited, so alerted).

use breakglass_core::time::Timestamp;
use breakglass_server::clock::Clock;
use breakglass_server::keys::{self, DataDir};
use breakglass_server::{ServeConfig, start_with_clock};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// A clock the test sets.
struct Set(AtomicI64);

impl Clock for Set {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// 2026-12-03T03:00:00Z in ms.
const SLOT: i64 = 1_796_266_800_000;
const DAY: i64 = 86_400_000;

const POLICY: &str = r#"
admins: { groups: [security] }
resources:
  - { name: k8s-admin, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
  - { name: k8s-broken, kind: exec, grant: ["/bin/false"], revoke: ["/bin/true"] }
policies:
  - name: drill
    resources: [k8s-admin, k8s-broken]
    who: { users: [drill-bot] }
    require: { mfa: true, ticket: "^DRILL" }
    approval: { mode: auto }
    duration: { default: 10m, max: 1h }
drills:
  identity: drill-bot
  resources:
    - { resource: k8s-admin, every: 24h, at: "03:00" }
    - { resource: k8s-broken, every: 24h, at: "03:00" }
"#;

async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_runs_due_drills_by_itself_and_reports_an_overdue_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    let clock = Arc::new(Set(AtomicI64::new(SLOT - 1_000)));
    keys::init(&dir, clock.now()).await.unwrap();
    let policy = tmp.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let cfg = ServeConfig::new(dir.root.clone(), "127.0.0.1:0".parse().unwrap(), policy);
    let running = start_with_clock(cfg, clock.clone()).await.unwrap();
    let store = running.engine.store.clone();

    // A second before the slot: a fresh install drills nothing yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.drills(None, 10).await.unwrap().is_empty());

    // The slot starts: each drilled resource is drilled, by the scheduler, for this slot.
    clock.0.store(SLOT + 500, Ordering::SeqCst);
    let done = wait_for("both scheduled drills", || {
        let store = store.clone();
        async move {
            let d = store.drills(None, 10).await.ok()?;
            (d.len() == 2 && d.iter().all(|d| d.verdict != "running")).then_some(d)
        }
    })
    .await;
    for d in &done {
        assert_eq!(d.trigger, "scheduled", "{d:?}");
        assert_eq!(d.slot, Some(Timestamp(SLOT)), "{d:?}");
        assert_eq!(d.started_by, "system", "{d:?}");
    }
    let by = |r: &str| done.iter().find(|d| d.resource == r).unwrap().clone();
    assert_eq!(by("k8s-admin").verdict, "passed", "{:?}", by("k8s-admin"));
    let broken = by("k8s-broken");
    assert_eq!(broken.verdict, "failed", "{broken:?}");
    assert_eq!(
        broken.failed_step.as_deref(),
        Some("credential"),
        "{broken:?}"
    );

    // Two slots on with no pass of k8s-broken: overdue, reported once, and drilled again.
    clock.0.store(SLOT + 2 * DAY + 1_000, Ordering::SeqCst);
    let overdue = wait_for("the drill.overdue event", || {
        let store = store.clone();
        async move {
            let recs = store.audit_records(1, 10_000).await.ok()?;
            recs.into_iter().find_map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
                (v["kind"] == "drill.overdue" && v["data"]["resource"] == "k8s-broken").then_some(v)
            })
        }
    })
    .await;
    assert_eq!(overdue["actor"], "system", "{overdue}");
    let again = wait_for("the next slot's drills", || {
        let store = store.clone();
        async move {
            let d = store.drills(Some("k8s-broken"), 10).await.ok()?;
            (d.len() == 2 && d[0].verdict != "running").then_some(d)
        }
    })
    .await;
    assert_eq!(again[0].slot, Some(Timestamp(SLOT + 2 * DAY)));
    running.shutdown().await;
}
