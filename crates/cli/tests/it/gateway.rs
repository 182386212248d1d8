//! The PostgreSQL gateway against a real PostgreSQL server, driven by real `psql` and Python's
//! psycopg: statements on record before they run, the grant's own credential only, cut at
//! expiry.

use crate::harness::*;
use breakglass_testkit::free_port;
use breakglass_testkit::pg::{Pg, psql};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn policy(gw_port: u16, extra: &str) -> String {
    format!(
        r#"
admins: {{ groups: [security] }}
resources:
  - name: prod-db
    kind: postgres
    admin_url_env: BREAKGLASS_PG_ADMIN_URL
    grant_roles: [app_admin]
    connection_limit: 4
    gateway: {{ listen: "127.0.0.1:{gw_port}" }}
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

struct Rig {
    pg: Pg,
    server: Server,
    alice: User,
    sec: User,
    gw: u16,
}

fn rig(extra: &str) -> Rig {
    let pg = Pg::start();
    pg.sql(
        "CREATE ROLE app_admin NOLOGIN; CREATE TABLE orders(id int, note text); \
         INSERT INTO orders VALUES (1, 'one'), (2, 'two'); \
         GRANT ALL ON orders TO app_admin; GRANT CREATE ON SCHEMA public TO app_admin",
    );
    let gw = free_port();
    let url = pg.admin_url();
    let server = Server::start_with(
        &policy(gw, extra),
        &[("BREAKGLASS_PG_ADMIN_URL", &url)],
        &[],
    );
    let alice = server.user("alice", &["oncall"]);
    let sec = server.user("sam", &["security"]);
    Rig {
        pg,
        server,
        alice,
        sec,
        gw,
    }
}

impl Rig {
    fn grant(&self, dur: &str) -> (String, String) {
        let g = self.alice.ok(&[
            "request",
            "prod-db",
            "--reason",
            "orders table locked, checkout down",
            "--for",
            dur,
        ]);
        let id = g["id"].as_str().unwrap().to_string();
        let url = g["credential"]["url"].as_str().unwrap().to_string();
        (id, url)
    }

    fn text(&self, id: &str) -> String {
        let r = self.sec.run(&["recording", id, "--format", "text"]);
        assert!(r.ok, "{}", r.stderr);
        r.stdout
    }
}

#[test]
fn psql_through_the_gateway_is_recorded_statement_by_statement() {
    let r = rig("");
    let (id, url) = r.grant("30m");
    assert!(
        url.contains(&format!("@127.0.0.1:{}/", r.gw)),
        "the URL points at the gateway: {url}"
    );
    let (ok, out) = psql(&url, "SELECT count(*) FROM orders");
    assert!(ok, "{out}");
    assert!(out.contains('2'), "{out}");
    let t = r.text(&id);
    assert!(t.contains("SELECT count(*) FROM orders"), "{t}");
    assert!(t.contains("SELECT 1 (1 rows)"), "{t}");
    let _ = &r.pg;
}
