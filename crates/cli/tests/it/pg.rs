//! PostgreSQL roles against a real PostgreSQL server that the test starts in a temporary
//! directory (`breakglass_testkit::pg`: initdb + pg_ctl, as `postgres` when run as root).

use crate::harness::*;
use breakglass_testkit::pg::{Pg, psql};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn policy(extra: &str) -> String {
    format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: prod-db
    kind: postgres
    admin_url_env: BREAKGLASS_PG_ADMIN_URL
    grant_roles: [app_admin]
    connection_limit: 2
{extra}
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: {{ groups: [oncall] }}
    require: {{ mfa: false }}
    approval: {{ mode: auto }}
    duration: {{ default: 30m, max: 2h }}
"#
    )
}

fn setup_db(pg: &Pg) {
    pg.sql(
        "CREATE ROLE app_admin NOLOGIN; CREATE TABLE orders(id int); \
         GRANT ALL ON orders TO app_admin; GRANT CREATE ON SCHEMA public TO app_admin; \
         CREATE ROLE bg_not_ours LOGIN",
    );
}

fn request(u: &User, dur: &str) -> serde_json::Value {
    u.ok(&[
        "request",
        "prod-db",
        "--reason",
        "orders table locked, checkout down",
        "--for",
        dur,
    ])
}

fn role_count(pg: &Pg, role: &str) -> String {
    pg.sql(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
    ))
}

#[test]
fn postgres_role_works_during_the_grant_and_is_dropped_at_expiry() {
    let pg = Pg::start();
    setup_db(&pg);
    let url = pg.admin_url();
    let server = Server::start_with(&policy(""), &[("BREAKGLASS_PG_ADMIN_URL", &url)], &[]);
    let alice = server.user("alice", &["oncall"]);
    let g = request(&alice, "8s");
    let id = g["id"].as_str().unwrap().to_string();
    let cred = &g["credential"];
    let dsn = cred["url"].as_str().expect("a postgres:// URL").to_string();
    let role = cred["user"].as_str().unwrap().to_string();
    assert!(
        dsn.starts_with(&format!("postgres://{role}:"))
            && dsn.contains(&format!("@127.0.0.1:{}/postgres", pg.port)),
        "{dsn}"
    );
    let password = dsn
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();

    // psql works during the grant, with the granted role's privileges only.
    let (ok, out) = psql(
        &dsn,
        "SELECT current_user; INSERT INTO orders VALUES (1); CREATE TABLE made_during_incident(x int)",
    );
    assert!(ok, "psql during the grant: {out}");
    let attrs = pg.sql(&format!("SELECT rolsuper, rolcreaterole, rolconnlimit, rolvaliduntil IS NOT NULL FROM pg_roles WHERE rolname = '{role}'"));
    assert_eq!(attrs, "f|f|2|t");
    let members = pg.sql(&format!("SELECT string_agg(b.rolname, ',') FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member JOIN pg_roles b ON b.oid = m.roleid WHERE r.rolname = '{role}'"));
    assert_eq!(members, "app_admin");
    // The password is nowhere but in the response: not in status, audit, or the server log.
    let st = alice.run(&["status", &id]);
    assert!(
        !st.stdout.contains(&password) && st.json["credential_status"]["role"] == role.as_str()
    );
    let admin = server.user("sam", &["security"]);
    let audit = admin.run(&["audit", "export"]);
    assert!(
        audit.ok && !audit.stdout.contains(&password),
        "audit export leaks the password"
    );
    assert!(
        !server.log.lock().unwrap().contains(&password),
        "the server log has the password"
    );

    // A live connection is killed at expiry.
    let mut live = Command::new("psql")
        .arg(&dsn)
        .args(["-X", "-c", "SELECT pg_sleep(600)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll("the live backend to start", Duration::from_secs(10), || {
        (pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"
        )) == "1")
            .then_some(())
    });
    let expires_ms = g["expires_at_ms"].as_i64().unwrap();
    poll(
        "the live connection to be killed",
        Duration::from_secs(20),
        || live.try_wait().unwrap(),
    );
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(killed_at >= expires_ms, "killed before expiry");
    eprintln!(
        "live connection killed {} ms after expiry (benchmarked in BENCHMARKS.md)",
        killed_at - expires_ms
    );
    let out = live.wait_with_output().unwrap();
    assert!(!out.status.success(), "psql survived expiry");

    // Login fails afterwards, the role is gone, what it made is kept (owned by
    // breakglass_orphans, never the admin).
    poll(
        "the revocation to be confirmed",
        Duration::from_secs(20),
        || (alice.ok(&["status", &id])["credential_status"]["state"] == "revoked").then_some(()),
    );
    let (ok, out) = psql(&dsn, "SELECT 1");
    assert!(!ok, "login still works after expiry: {out}");
    assert_eq!(role_count(&pg, &role), "0");
    assert_eq!(
        pg.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'made_during_incident'"),
        "breakglass_orphans"
    );
    assert_eq!(pg.sql("SELECT count(*) FROM orders"), "1");
    // A role that only looks like ours (no tag) is never touched.
    assert_eq!(role_count(&pg, "bg_not_ours"), "1");
}

#[test]
fn postgres_revocation_waits_for_the_database_and_crashes_leave_no_orphans() {
    let pg = Pg::start();
    setup_db(&pg);
    let url = pg.admin_url();
    let mut server = Server::start_with(
        &policy("    sweep_grace: 1s"),
        &[("BREAKGLASS_PG_ADMIN_URL", &url)],
        &["--sweep-every", "1s"],
    );
    let alice = server.user("alice", &["oncall"]);
    let admin = server.user("sam", &["security"]);

    // Revocation while the database is down: pending (and alerted) until it is back.
    let g = request(&alice, "1h");
    let id = g["id"].as_str().unwrap().to_string();
    let role = g["credential"]["user"].as_str().unwrap().to_string();
    pg.stop();
    alice.ok(&["revoke", &id, "--reason", "incident over"]);
    poll(
        "the failed attempt to show",
        Duration::from_secs(20),
        || {
            let st = alice.ok(&["status", &id]);
            (st["credential_status"]["revocation_pending"] == true
                && st["credential_status"]["last_error"].is_string())
            .then_some(())
        },
    );
    assert_eq!(
        alice.ok(&["status", &id])["state"],
        "revoked",
        "the grant itself ends at once"
    );
    let audit = admin.run(&["audit", "export"]).stdout;
    assert!(
        audit.contains("revocation.failed"),
        "revocation failure not audited"
    );
    pg.restart();
    poll(
        "the revocation to complete once the database is back",
        Duration::from_secs(60),
        || (alice.ok(&["status", &id])["credential_status"]["state"] == "revoked").then_some(()),
    );
    assert_eq!(role_count(&pg, &role), "0");

    // kill -9 between "role created" and "grant recorded": the sweep drops the orphan.
    server.set_env("BREAKGLASS_TEST_ABORT_AFTER_ISSUE", Some("1"));
    server.restart();
    let r = alice.run(&[
        "request",
        "prod-db",
        "--reason",
        "orders table locked, checkout down",
    ]);
    assert!(!r.ok, "the request should have died with the server");
    assert!(
        server.exited_within(Duration::from_secs(10)),
        "server did not abort"
    );
    let orphans = pg.sql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'bg\\_%' AND shobj_description(oid, 'pg_authid') LIKE 'breakglass:managed%'");
    assert_eq!(orphans, "1", "the crash window should leave a role behind");
    server.set_env("BREAKGLASS_TEST_ABORT_AFTER_ISSUE", None);
    server.restart();
    let start = Instant::now();
    poll("the orphan to be swept", Duration::from_secs(30), || {
        (pg.sql("SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE 'breakglass:managed%'") == "0").then_some(())
    });
    eprintln!("orphan swept {:?} after restart", start.elapsed());
    let audit = admin.run(&["audit", "export"]).stdout;
    assert!(
        audit.contains("credential.orphan_removed"),
        "sweep not audited"
    );
    assert_eq!(role_count(&pg, "bg_not_ours"), "1");
    // The owner of what grants leave behind is never swept.
    assert_eq!(role_count(&pg, "breakglass_orphans"), "1");
    // No grant was recorded for the crashed request.
    let mine = alice.ok(&["status"]);
    assert_eq!(mine.as_array().map(|a| a.len()), Some(1), "{mine}");
}

#[test]
fn postgres_admin_url_can_be_sealed_in_breakglass_instead_of_env_or_file() {
    let pg = Pg::start();
    setup_db(&pg);
    let admin_url = pg.admin_url();
    let admin_password = breakglass_testkit::pg::ADMIN_PASSWORD;
    let policy = policy("").replace(
        "admin_url_env: BREAKGLASS_PG_ADMIN_URL",
        "admin_url_sealed: true",
    );
    let server = Server::start(&policy);
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);

    // Not stored yet: the request fails, says how to fix it, and leaves no grant.
    let r = alice.run(&["request", "prod-db", "--reason", "orders table locked"]);
    assert_eq!(r.slug(), "target-failed", "{}", r.stdout);
    assert!(
        r.stdout.contains("breakglass secret put prod-db"),
        "{}",
        r.stdout
    );
    assert_eq!(alice.ok(&["status"]).as_array().map(Vec::len), Some(0));

    // Only admins store it, and only a postgres:// URL is accepted.
    assert_eq!(
        alice
            .run_stdin(&["secret", "put", "prod-db"], Some(&admin_url))
            .slug(),
        "forbidden"
    );
    let bad = sam.run_stdin(&["secret", "put", "prod-db"], Some("hunter2"));
    assert_eq!(bad.slug(), "invalid-request", "{}", bad.stdout);
    assert!(bad.stdout.contains("postgres://"), "{}", bad.stdout);
    let put = sam.run_stdin(&["secret", "put", "prod-db"], Some(&admin_url));
    assert!(put.ok, "{}{}", put.stdout, put.stderr);

    // Now the connector unseals it for each operation: the role is created and works.
    let g = request(&alice, "30m");
    let id = g["id"].as_str().unwrap().to_string();
    let dsn = g["credential"]["url"].as_str().unwrap().to_string();
    let role = g["credential"]["user"].as_str().unwrap().to_string();
    let (ok, out) = psql(&dsn, "SELECT count(*) FROM orders");
    assert!(ok, "psql during the grant: {out}");

    // The admin URL is never released to a responder, nor written anywhere in clear.
    let show = alice.run(&["secret", "show", &id]);
    assert!(
        !show.ok && !show.stdout.contains(admin_password),
        "{}",
        show.stdout
    );
    let audit = sam.run(&["audit", "export"]);
    assert!(audit.ok && !audit.stdout.contains(admin_password));
    assert!(!server.log.lock().unwrap().contains(admin_password));
    for f in ["breakglass.db", "breakglass.db-wal"] {
        let db = std::fs::read(server.data_dir().join(f)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&db).contains(admin_password),
            "the admin password is in {f} in clear"
        );
    }

    // Revocation also unseals it: the role is dropped, and the resource is never flagged
    // "must rotate" (that is for released secrets).
    sam.ok(&["revoke", &id, "--reason", "incident over"]);
    poll(
        "the revocation to be confirmed",
        Duration::from_secs(20),
        || (alice.ok(&["status", &id])["credential_status"]["state"] == "revoked").then_some(()),
    );
    assert_eq!(role_count(&pg, &role), "0");
    let secrets = sam.ok(&["secret", "list"]);
    assert_eq!(secrets[0]["must_rotate"], false, "{secrets}");
}

fn revoke_and_wait(u: &User, id: &str) {
    u.ok(&["revoke", id, "--reason", "incident over"]);
    poll(
        "the revocation to be confirmed",
        Duration::from_secs(30),
        || (u.ok(&["status", id])["credential_status"]["state"] == "revoked").then_some(()),
    );
}

/// The attack of issue 9: the responder's role writes a SECURITY DEFINER function (and a trigger
/// on a table it may only write to); when the grant ended, `REASSIGN OWNED` used to hand them to
/// the admin, so anyone could then run the responder's code as a superuser.
#[test]
fn postgres_objects_a_grant_leaves_behind_never_run_with_more_rights_than_it_had() {
    let pg = Pg::start();
    setup_db(&pg);
    pg.sql("CREATE ROLE victim LOGIN PASSWORD 'victim-pw'");
    let victim = format!("postgres://victim:victim-pw@127.0.0.1:{}/postgres", pg.port);
    let url = pg.admin_url();
    let server = Server::start_with(&policy(""), &[("BREAKGLASS_PG_ADMIN_URL", &url)], &[]);
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);
    let g = request(&alice, "1h");
    let id = g["id"].as_str().unwrap().to_string();
    let dsn = g["credential"]["url"].as_str().unwrap().to_string();
    let (ok, out) = psql(
        &dsn,
        "CREATE FUNCTION public.pwn() RETURNS void LANGUAGE sql SECURITY DEFINER \
           AS $$ ALTER ROLE victim SUPERUSER $$; \
         GRANT EXECUTE ON FUNCTION public.pwn() TO PUBLIC; \
         CREATE FUNCTION public.trap() RETURNS trigger LANGUAGE plpgsql \
           AS $$ BEGIN ALTER ROLE victim SUPERUSER; RETURN NEW; END $$; \
         CREATE TRIGGER trap BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION public.trap(); \
         CREATE TABLE public.loot(id int); \
         CREATE VIEW public.peek AS SELECT * FROM orders; \
         GRANT SELECT ON public.peek TO PUBLIC",
    );
    assert!(ok, "the grant's role could not create its objects: {out}");
    // A name chosen to break SQL built from it, and the report's Markdown and HTML.
    let (ok, out) = psql(
        &dsn,
        "CREATE FUNCTION public.\"x\"\"; DROP TABLE orders; --|<b>\n# hdr\"() RETURNS int \
           LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
    );
    assert!(ok, "{out}");
    revoke_and_wait(&alice, &id);
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'"),
        "1",
        "orders survives the hostile name"
    );
    assert_eq!(
        pg.sql(
            "SELECT proowner::regrole, prosecdef FROM pg_proc WHERE proname LIKE 'x%DROP TABLE%'"
        ),
        "breakglass_orphans|f"
    );

    // The function runs for nobody, and as nobody in particular.
    let (ok, out) = psql(&victim, "SELECT public.pwn()");
    assert!(!ok && out.contains("permission denied"), "{out}");
    // The trigger no longer fires when the admin writes to the table.
    pg.sql("INSERT INTO orders VALUES (2)");
    let (ok, out) = psql(&victim, "SELECT count(*) FROM public.peek");
    assert!(
        !ok && out.contains("permission denied"),
        "the view reads orders: {out}"
    );
    assert_eq!(
        pg.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'victim'"),
        "f",
        "victim became a superuser"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_trigger WHERE tgname = 'trap'"),
        "0"
    );
    assert_eq!(
        pg.sql("SELECT proowner::regrole, prosecdef, has_function_privilege('victim', oid, 'EXECUTE') FROM pg_proc WHERE proname = 'pwn'"),
        "breakglass_orphans|f|f"
    );
    assert_eq!(
        pg.sql("SELECT string_agg(relname || '=' || relowner::regrole::text, ',' ORDER BY relname) FROM pg_class WHERE relname IN ('loot', 'peek')"),
        "loot=breakglass_orphans,peek=breakglass_orphans"
    );
    let orphans_are_powerless = || {
        assert_eq!(
            pg.sql("SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolinherit, \
                    (SELECT count(*) FROM pg_auth_members WHERE member = r.oid), \
                    has_table_privilege(r.oid, 'orders', 'SELECT'), shobj_description(r.oid, 'pg_authid') LIKE 'breakglass:orphans%' \
                    FROM pg_roles r WHERE rolname = 'breakglass_orphans'"),
            "f|f|f|f|f|f|f|0|f|t"
        );
    };
    orphans_are_powerless();

    // The revocation's audit event and the incident report name what was left behind.
    let audit = sam.run(&["audit", "export"]).stdout;
    assert!(
        audit.contains("left_behind") && audit.contains("public.pwn()"),
        "{audit}"
    );
    let report = sam.ok(&["report", &id, "--format", "json"]);
    let left = report["left_behind"]
        .as_array()
        .expect("left_behind in the report");
    let find = |name: &str| {
        left.iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {left:?}"))
    };
    let pwn = find("public.pwn()");
    assert_eq!(pwn["kind"], "function");
    assert_eq!(pwn["security_definer"], true);
    assert_eq!(pwn["neutralised"], true);
    assert_eq!(find("public.trap()")["kind"], "function");
    assert_eq!(find("public.loot")["kind"], "table");
    assert_eq!(find("public.peek")["kind"], "view");
    assert_eq!(find("trap on public.orders")["kind"], "trigger");
    let md = sam.run(&["report", &id, "--format", "md"]).stdout;
    assert!(
        md.contains("## Objects the grant left behind")
            && md.contains(r"| public.pwn\(\) | function |"),
        "{md}"
    );
    assert!(
        md.contains(r#"| public."x""; DROP TABLE orders; --\|\<b\>␤\# hdr"\(\) | function |"#)
            && !md.contains("\n# hdr"),
        "{md}"
    );
    let html = sam.run(&["report", &id, "--format", "html"]).stdout;
    assert!(
        html.contains("Objects the grant left behind") && !html.contains("<b>"),
        "{html}"
    );

    // Someone made breakglass_orphans a member of a role and able to log in: the next revocation
    // takes both away before it hands anything over.
    // The holder also writes into another database it can reach: cleaned there too.
    pg.sql("GRANT app_admin TO breakglass_orphans; ALTER ROLE breakglass_orphans LOGIN INHERIT");
    pg.sql("CREATE DATABASE appdb");
    // The same URL, another database (the part after the last '/').
    let in_appdb = |u: &str| format!("{}/appdb", &u[..u.rfind('/').unwrap()]);
    let appdb_admin = in_appdb(&url);
    let (ok, out) = psql(&appdb_admin, "GRANT CREATE ON SCHEMA public TO app_admin");
    assert!(ok, "{out}");
    let g2 = request(&alice, "1h");
    let id2 = g2["id"].as_str().unwrap().to_string();
    let dsn2 = g2["credential"]["url"].as_str().unwrap().to_string();
    let fun = "RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$";
    let (ok, out) = psql(&dsn2, &format!("CREATE FUNCTION public.pwn2() {fun}"));
    assert!(ok, "{out}");
    let (ok, out) = psql(
        &in_appdb(&dsn2),
        &format!("CREATE FUNCTION public.pwn3() {fun}"),
    );
    assert!(ok, "{out}");
    revoke_and_wait(&alice, &id2);
    orphans_are_powerless();
    let owner_of = |admin: &str, f: &str| {
        let (ok, out) = psql(
            admin,
            &format!("SELECT proowner::regrole, prosecdef FROM pg_proc WHERE proname = '{f}'"),
        );
        assert!(ok, "{out}");
        out.trim().to_string()
    };
    assert_eq!(owner_of(&url, "pwn2"), "breakglass_orphans|f");
    assert_eq!(owner_of(&appdb_admin, "pwn3"), "breakglass_orphans|f");
    let report = sam.ok(&["report", &id2, "--format", "json"]);
    assert!(
        report["left_behind"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "public.pwn3()" && o["location"] == "appdb"),
        "{}",
        report["left_behind"]
    );
}

#[test]
fn postgres_reassign_to_a_privileged_role_is_refused() {
    let pg = Pg::start();
    setup_db(&pg);
    pg.sql("CREATE ROLE other_super SUPERUSER NOLOGIN");
    let url = pg.admin_url();

    // The admin user itself: refused by `policy check` (and at server start).
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("policy.yaml");
    std::fs::write(&file, policy("    reassign_to: postgres")).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(&file)
        .env("BREAKGLASS_PG_ADMIN_URL", &url)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("reassign_to") && err.contains("admin user"),
        "{err}"
    );

    // Another superuser: the request is refused with a message naming the setting, and no role
    // is left at the target.
    let server = Server::start_with(
        &policy("    reassign_to: other_super"),
        &[("BREAKGLASS_PG_ADMIN_URL", &url)],
        &[],
    );
    let alice = server.user("alice", &["oncall"]);
    let r = alice.run(&[
        "request",
        "prod-db",
        "--reason",
        "orders table locked, checkout down",
    ]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stdout.contains("reassign_to")
            && r.stdout.contains("other_super")
            && r.stdout.contains("superuser"),
        "{}",
        r.stdout
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE 'breakglass:managed%'"),
        "0"
    );
    assert_eq!(alice.ok(&["status"]).as_array().map(Vec::len), Some(0));
}

/// Found by the crash trials: two postgres resources on one cluster. The sweep of one resource
/// saw the other's live roles (same `bg_` naming and tag) and, since only its own resource's
/// open credentials counted as owned, dropped them as orphans while their grants were active.
#[test]
fn postgres_sweep_keeps_roles_of_another_resource_on_the_same_cluster() {
    let pg = Pg::start();
    setup_db(&pg);
    let url = pg.admin_url();
    let two = policy("    sweep_grace: 1s\n  - name: reporting-db\n    kind: postgres\n    admin_url_env: BREAKGLASS_PG_ADMIN_URL\n    grant_roles: [app_admin]\n    sweep_grace: 1s")
        .replace("resources: [prod-db]", "resources: [prod-db, reporting-db]");
    let server = Server::start_with(
        &two,
        &[("BREAKGLASS_PG_ADMIN_URL", &url)],
        &["--sweep-every", "1s"],
    );
    let alice = server.user("alice", &["oncall"]);
    let admin = server.user("sam", &["security"]);
    let g = request(&alice, "1h");
    let id = g["id"].as_str().unwrap().to_string();
    let role = g["credential"]["user"].as_str().unwrap().to_string();
    let created: i64 = pg
        .sql(&format!(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = '{role}'"
        ))
        .split_whitespace()
        .find_map(|w| w.strip_prefix("created="))
        .and_then(|c| c.parse().ok())
        .expect("the role's tag names its creation time");
    poll(
        "the role to be past the sweep grace",
        Duration::from_secs(10),
        || (unix_now() > created + 1).then_some(()),
    );
    // Two real orphans, one after the other: the second is swept in a later pass than the
    // first, so a whole pass over both resources ran while the live role was past its grace.
    for orphan in ["bg_feed0001", "bg_feed0002"] {
        pg.sql(&format!(
            "CREATE ROLE {orphan} NOLOGIN; COMMENT ON ROLE {orphan} IS 'breakglass:managed grant=g-feed created=0'"
        ));
        poll(
            &format!("{orphan} to be swept"),
            Duration::from_secs(30),
            || (role_count(&pg, orphan) == "0").then_some(()),
        );
    }
    assert_eq!(role_count(&pg, &role), "1", "a live grant's role was swept");
    assert_eq!(alice.ok(&["status", &id])["state"], "active");
    let audit = admin.run(&["audit", "export"]).stdout;
    assert!(
        !audit.contains(&format!("\"name\":\"{role}\"")),
        "the live role was audited as an orphan"
    );
}

/// Two approvers completing a one-person quorum at the same moment both compute the activation
/// and both issue: each issue gets its own role, the loser's commit loses the grant's
/// compare-and-swap and its role is dropped, no `credential.issue_failed` is claimed, and the
/// holder's credential (the winner's role) works. Before, both created `bg_<grant>`: the loser
/// failed with a 502 and a false `credential.issue_failed`, and a role left by a crash between
/// issue and commit blocked every later approval until the sweep.
#[test]
fn simultaneous_final_approvals_issue_one_working_role() {
    let pg = Pg::start();
    setup_db(&pg);
    let url = pg.admin_url();
    let policy = policy("").replace(
        "    require: { mfa: false }\n    approval: { mode: auto }",
        "    require: { mfa: true }\n    approval: { mode: quorum, count: 1, from: [security], timeout: 10m, on_timeout: deny }",
    );
    let server = Server::start_with(&policy, &[("BREAKGLASS_PG_ADMIN_URL", &url)], &[]);
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);
    let tom = server.user("tom", &["security"]);
    for round in 0..3 {
        let g = alice.ok(&[
            "request",
            "prod-db",
            "--reason",
            "orders table locked, checkout down",
            "--otp",
            &alice.otp(),
        ]);
        assert_eq!(g["state"], "pending", "{g}");
        let id = g["id"].as_str().unwrap().to_string();
        let path = format!("/api/v1/grants/{id}/approve");
        let (sc, tc) = (sam.otp(), tom.otp());
        let mut codes: Vec<u16> = post_at_once(
            &server.url,
            vec![
                (token_of(&sam), path.clone(), serde_json::json!({"otp": sc})),
                (token_of(&tom), path, serde_json::json!({"otp": tc})),
            ],
        )
        .into_iter()
        .map(|r| r.0)
        .collect();
        codes.sort();
        // One activates; the other finds the grant active already (a conflict, never a 502).
        assert_eq!(codes, [200, 409], "round {round}");
        let st = alice.ok(&["status", &id]);
        assert_eq!(st["state"], "active", "round {round}: {st}");
        let c = alice.ok(&["credential", &id])["credential"].clone();
        let role = c["user"].as_str().unwrap().to_string();
        let dsn = c["url"].as_str().unwrap().to_string();
        // Exactly one role of this grant is left at the database: the holder's.
        let stem = format!("bg_{}", id.trim_start_matches("g-"));
        assert_eq!(
            pg.sql(&format!(
                "SELECT string_agg(rolname, ',') FROM pg_roles WHERE starts_with(rolname, '{stem}')"
            )),
            role,
            "round {round}"
        );
        let (ok, out) = psql(&dsn, "SELECT count(*) FROM orders");
        assert!(ok, "round {round}: {out}");
        alice.ok(&["revoke", &id, "--reason", "done"]);
    }
    assert_eq!(
        crate::hostile::audit_events(&server, "credential.issue_failed").len(),
        0,
        "no issue failed: the loser lost the race, it did not fail at the target"
    );
}
