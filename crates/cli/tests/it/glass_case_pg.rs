//! The glass case's emergency PostgreSQL login against a real PostgreSQL: sealed with one role
//! per day (the sweep leaves a sealed case's roles alone), opened with the server stopped (the
//! day's URL logs in with the resource's granted role only), reconciled with a reseal in one
//! MFA (every role of the old case dropped, the released login refused; the new case has its
//! own roles), and a seal refused while PostgreSQL is down leaves nothing behind.

use crate::glass_case::{CUSTODIANS, open, pass_of, passphrases, verify};
use crate::harness::*;
use breakglass_testkit::pg::{Pg, psql};
use std::path::Path;
use std::time::Duration;

/// The case's roles at the target (`bg_<case hex>…`).
fn case_roles(pg: &Pg, case_id: &str) -> Vec<String> {
    let stem = format!("bg_{}", case_id.trim_start_matches("gc-"));
    let out = pg.sql(&format!(
        "SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{stem}') ORDER BY 1"
    ));
    out.lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Waits until the sweeper removed a decoy orphan made now: a whole sweep ran after this call.
fn await_sweep(pg: &Pg, n: u32) {
    let name = format!("bg_dec0{n:04x}_0000000{n}");
    pg.sql(&format!(
        "CREATE ROLE {name} NOLOGIN; COMMENT ON ROLE {name} IS 'breakglass:managed grant=g-dec0 created=0'"
    ));
    poll(
        "the sweep to remove a decoy orphan",
        Duration::from_secs(30),
        || {
            pg.sql(&format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
            ))
            .trim()
            .eq("0")
            .then_some(())
        },
    );
}

#[test]
fn glass_case_postgres_login_opens_offline_and_is_dropped_on_reconcile() {
    let pg = Pg::start();
    pg.sql("CREATE ROLE app_admin NOLOGIN; CREATE TABLE vault (v text); GRANT SELECT ON vault TO app_admin; INSERT INTO vault VALUES ('in-the-vault')");
    let policy = r#"
admins: { groups: [security] }
resources:
  - name: prod-db
    kind: postgres
    admin_url_env: BREAKGLASS_PG_ADMIN_URL
    grant_roles: [app_admin]
    glass_case: true
    sweep_grace: 1s
policies: []
"#;
    let url = pg.admin_url();
    let mut server = Server::start_with(
        policy,
        &[("BREAKGLASS_PG_ADMIN_URL", &url)],
        &["--sweep-every", "1s"],
    );
    let sam = server.user("sam", &["security"]);
    let dir = server.dir.path().to_path_buf();
    let all: Vec<(&str, String)> = CUSTODIANS.iter().map(|c| (*c, pass_of(c))).collect();
    let all: Vec<(&str, &str)> = all.iter().map(|(c, p)| (*c, p.as_str())).collect();
    let pf = passphrases(&dir, "all.txt", &all);
    let seal = |out: &Path| {
        sam.run(&[
            "glass-case",
            "seal",
            "--custodians",
            &CUSTODIANS.join(","),
            "--threshold",
            "3",
            "--days",
            "3",
            "--out",
            &out.display().to_string(),
            "--passphrase-file",
            &pf,
            "--otp",
            &sam.otp(),
        ])
    };

    // Sealed: one login per day at the real PostgreSQL; the password only in the bundle.
    let bundle = dir.join("case.json");
    let r = seal(&bundle);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json["postgres_logins"], 3, "{}", r.json);
    assert_eq!(r.json["certificates"], 0, "{}", r.json);
    let case_id = r.json["case_id"].as_str().unwrap().to_string();
    let roles = case_roles(&pg, &case_id);
    assert_eq!(roles.len(), 3, "{roles:?}");
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(!text.contains(&roles[0]), "a role name is in the clear");
    // Four whole sweeps a second apart later (grace 1 s: an orphan that old is dropped) the
    // sealed case's logins are still there.
    for n in 1..=4 {
        await_sweep(&pg, n);
    }
    assert_eq!(
        case_roles(&pg, &case_id),
        roles,
        "the sweep took a sealed case's login"
    );

    // No server: 3 of 5 open it; today's URL logs in as a member of app_admin only.
    server.stop();
    let three = passphrases(&dir, "three.txt", &all[1..4]);
    let out = dir.join("released");
    let r = open(&bundle, &out, &three);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let pgurl = std::fs::read_to_string(out.join("prod-db.pgurl")).unwrap();
    let pgurl = pgurl.trim();
    let (ok, who) = psql(
        pgurl,
        "SELECT current_user || ' ' || pg_has_role(current_user, 'app_admin', 'member') || ' ' || (SELECT v FROM vault)",
    );
    assert!(ok, "offline psql login failed: {who}");
    assert!(who.trim().ends_with("true in-the-vault"), "{who}");
    let today = who.split_whitespace().next().unwrap().to_string();
    assert!(roles.contains(&today), "{today} is not one of {roles:?}");
    let (ok, why) = psql(pgurl, "CREATE ROLE escalate SUPERUSER");
    assert!(!ok, "the emergency login could create a superuser: {why}");
    assert!(r.json["connect"].to_string().contains("psql"), "{}", r.json);
    assert_eq!(r.json["released"][0]["role"], today.as_str(), "{}", r.json);
    let journal = r.json["journal"].as_str().unwrap().to_string();

    // Back: reconcile and reseal in one MFA. Every login of the old case is dropped, the
    // released one refused; the new case has its own three.
    server.restart();
    let new_bundle = dir.join("case-2.json");
    let v = sam.ok(&[
        "glass-case",
        "reconcile",
        "--journal",
        &journal,
        "--reseal-out",
        &new_bundle.display().to_string(),
        "--days",
        "3",
        "--passphrase-file",
        &pf,
        "--otp",
        &sam.otp(),
    ]);
    assert_eq!(v["postgres_logins_dropped"], 3, "{v}");
    assert_eq!(v["postgres_logins_pending"], 0, "{v}");
    assert_eq!(v["reviews"].as_array().unwrap().len(), 1, "{v}");
    assert!(case_roles(&pg, &case_id).is_empty());
    let (ok, _) = psql(pgurl, "SELECT 1");
    assert!(
        !ok,
        "the released emergency login still works after reconcile"
    );
    let new_id = v["sealed"]["case_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, case_id);
    assert_eq!(v["sealed"]["postgres_logins"], 3, "{v}");
    assert!(new_bundle.exists());
    assert_eq!(case_roles(&pg, &new_id).len(), 3);
    let cases = sam.ok(&["glass-case", "list"]);
    assert_eq!(cases[0]["case_id"], new_id.as_str(), "{cases}");
    assert_eq!(cases[0]["state"], "sealed", "{cases}");
    assert_eq!(cases[1]["state"], "reconciled", "{cases}");
    let (ok, why) = verify(&server.data_dir());
    assert!(ok, "audit verify after reconcile: {why}");
    let e = sam.run(&["audit", "export", "--format", "jsonl"]);
    assert!(
        e.stdout.contains("glass_case.logins_dropped"),
        "{}",
        e.stdout
    );
    assert!(
        e.stdout.lines().any(|l| l.contains("glass_case.released")
            && l.contains("postgres-role")
            && l.contains(&today)),
        "the journal's release of {today} is not in the audit trail: {}",
        e.stdout
            .lines()
            .filter(|l| l.contains("glass_case.released"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // PostgreSQL down: the seal is refused, says where, and no case is recorded.
    pg.stop();
    let r = seal(&dir.join("case-3.json"));
    assert!(!r.ok, "{}{}", r.stdout, r.stderr);
    assert!(
        (r.stdout.clone() + &r.stderr).contains("prod-db"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(!dir.join("case-3.json").exists());
    let cases = sam.ok(&["glass-case", "list"]);
    assert_eq!(cases.as_array().unwrap().len(), 2, "{cases}");
}
