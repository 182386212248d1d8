//! People drills (game days) through the real CLI and server, with real exec hooks and a real
//! HTTP receiver standing in for Slack: an admin opens a training window; real responders
//! break glass the real way and their grants are marked training (by the server, at request
//! time, only on the window's resources, only while it is open) in the grant, the audit trail
//! and the alerts; the period report shows who last drilled and who is past 90 days. A
//! non-admin cannot open or end one, a client cannot mark its own grant, and the reason an
//! admin types reaches Slack escaped.

use crate::drills::{receiver, texts};
use crate::harness::*;
use serde_json::{Value, json};
use std::time::Duration;

const POLICY: &str = r#"
admins: { groups: [security] }
resources:
  - { name: k8s-admin, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
  - { name: k8s-other, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
policies:
  - name: oncall-emergency
    resources: [k8s-admin]
    who: { groups: [oncall] }
    require: { mfa: true }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
    review: { within: 72h, by: [security] }
  - name: oncall-other
    resources: [k8s-other]
    who: { groups: [oncall] }
    require: { mfa: false }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
  - name: drill
    resources: [k8s-other]
    who: { users: [drill-bot] }
    require: { mfa: true, ticket: "^DRILL" }
    approval: { mode: auto }
    duration: { default: 10m, max: 1h }
drills:
  identity: drill-bot
  resources:
    - { resource: k8s-other, every: 24h, at: "03:00" }
notify: [sec-slack]
sinks:
  - { name: sec-slack, kind: slack, url_env: SLACK_URL }
"#;

/// What a run printed (a `--json` run prints its error as JSON on stdout).
fn said(r: &Run) -> String {
    format!("{}{}", r.stdout, r.stderr)
}

fn events_of(s: &Server, grant: &str) -> Vec<Value> {
    let out = std::process::Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.lines().count() > 1,
        "audit export: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|l| l["event"].clone())
        .filter(|e| e["grant"] == grant)
        .collect()
}

#[test]
fn grants_inside_a_people_drill_are_marked_training_by_the_server_and_reported_per_person() {
    let (slack, seen) = receiver();
    let server = Server::start_with(POLICY, &[("SLACK_URL", &slack)], &["--alert-backoff", "1s"]);
    let sam = server.user("sam", &["security"]);
    let alice = server.user("alice", &["oncall"]);
    server.add_user("bob", &["oncall"]);

    // A non-admin can neither open nor end nor list a game day; nothing is opened.
    let r = alice.run(&["drill", "start", "--people", "--reason", "mine"]);
    assert!(
        !r.ok && r.slug().contains("forbidden"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(said(&r).contains("admins"), "{}", r.stderr);
    assert!(!alice.run(&["drill", "stop"]).ok);
    assert!(!alice.run(&["drill", "windows"]).ok);
    assert_eq!(sam.ok(&["drill", "windows"]), json!([]));

    // Bad input is refused clearly and opens nothing.
    for (args, says) in [
        (vec!["--reason", "x"], "--people"),
        (vec!["--people", "--reason", "x", "--for", "48h"], "24h"),
        (
            vec!["--people", "--reason", "x", "--for", "soon"],
            "duration",
        ),
        (
            vec!["--people", "--reason", "x", "--resources", "nope"],
            "nope",
        ),
        (
            vec!["--people", "--reason", "a\u{1b}[2Jb"],
            "control character",
        ),
        (vec!["--people", "--reason", "  "], "reason"),
    ] {
        let mut a = vec!["drill", "start"];
        a.extend(args.iter());
        let r = sam.run(&a);
        assert!(!r.ok, "{a:?} was accepted: {}", r.stdout);
        assert!(said(&r).contains(says), "{a:?}: {}", r.stderr);
    }
    assert_eq!(sam.ok(&["drill", "windows"]), json!([]));

    // Before the game day: a real grant, not training.
    let before = alice.break_glass("k8s-admin", "INC-1");
    let before_id = before["id"].as_str().unwrap().to_string();
    assert!(before.get("training").is_none(), "{before}");

    let reason = "Q4 game day <!channel> <script>alert(1)</script> & *bold*";
    let w = sam.ok(&[
        "drill",
        "start",
        "--people",
        "--for",
        "1h",
        "--resources",
        "k8s-admin",
        "--reason",
        reason,
    ]);
    let wid = w["id"].as_str().unwrap().to_string();
    assert!(wid.starts_with("w-") && w["open"] == true, "{w}");
    assert_eq!(w["resources"], json!(["k8s-admin"]));

    // The security team hears of it; the admin's text is inert in Slack.
    let opened = poll("the people-drill alert", Duration::from_secs(30), || {
        texts(&seen)
            .into_iter()
            .find(|t| t.contains("drill.people_opened"))
    });
    assert!(opened.contains("&lt;!channel&gt;"), "{opened}");
    assert!(
        !opened.contains("<!channel>") && !opened.contains("<script>"),
        "{opened}"
    );

    // Inside the window, on its resource: training (decided by the server).
    let trained = alice.break_glass("k8s-admin", "GAMEDAY-1");
    let tid = trained["id"].as_str().unwrap().to_string();
    assert_eq!(trained["training"], wid.as_str(), "{trained}");
    assert_eq!(trained["state"], "active", "{trained}");
    // Not on a resource it does not cover; and the earlier grant is not re-marked.
    let other = alice.ok(&[
        "request",
        "k8s-other",
        "--reason",
        "pods down",
        "--ticket",
        "INC-2",
    ]);
    assert!(other.get("training").is_none(), "{other}");
    let b = alice.ok(&["status", &before_id]);
    assert!(b.get("training").is_none(), "{b}");

    // A client cannot mark its own grant: the field is refused and nothing is granted.
    let held = alice.ok(&["status"]).as_array().unwrap().len();
    let token = token_of(&alice);
    let body = json!({"resource": "k8s-other", "reason": "real incident",
                      "training": wid});
    let (code, text) = http(
        "POST",
        &server.url,
        "/api/v1/grants",
        Some(body.to_string().as_bytes()),
        Some(&token),
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("training"), "{text}");
    assert_eq!(alice.ok(&["status"]).as_array().unwrap().len(), held);

    // Every event of the training grant carries the window; the alert says TRAINING.
    let evs = events_of(&server, &tid);
    assert!(!evs.is_empty());
    for e in &evs {
        assert_eq!(e["data"]["training"], wid.as_str(), "{e}");
    }
    assert!(
        events_of(&server, &before_id)
            .iter()
            .all(|e| e["data"].get("training").is_none())
    );
    poll("the TRAINING alert", Duration::from_secs(30), || {
        texts(&seen)
            .into_iter()
            .find(|t| t.starts_with("TRAINING breakglass grant.activated") && t.contains(&tid))
    });

    // It is real access: ending it opens a review like any other.
    sam.ok(&["revoke", &tid, "--reason", "game day over"]);
    let ended = sam.ok(&["status", &tid]);
    assert_eq!(ended["review"]["state"], "open", "{ended}");

    // The period report: who last drilled, who is past 90 days (bob never did).
    let today = &breakglass_core_date();
    let r = sam.ok(&["report", "--since", today, "--format", "json"]);
    let people = r["people_drills"]["people"].as_array().unwrap();
    let row = |u: &str| people.iter().find(|p| p["user"] == u).cloned().unwrap();
    assert_eq!(row("alice")["overdue"], false, "{r}");
    assert_eq!(row("alice")["days_ago"], 0, "{r}");
    assert_eq!(row("bob")["overdue"], true, "{r}");
    assert!(row("bob")["last_drilled"].is_null(), "{r}");
    assert!(
        people.iter().all(|p| p["user"] != "sam"),
        "sam may not break glass: {r}"
    );
    assert!(
        people.iter().all(|p| p["user"] != "drill-bot"),
        "the drill identity: {r}"
    );
    assert_eq!(r["people_drills"]["overdue"], json!(["bob"]), "{r}");
    assert_eq!(r["practice"]["training_grants"], 1, "{r}");
    let md = sam.run_plain(&["report", "--since", today]).stdout;
    assert!(md.contains("| bob | never | - | OVERDUE |"), "{md}");
    assert!(md.contains("CP-4"), "{md}");

    // Ending the game day: later requests are real again; a second stop says none is open.
    let stopped = sam.ok(&["drill", "stop"]);
    assert_eq!(stopped[0]["id"], wid.as_str(), "{stopped}");
    assert_eq!(stopped[0]["open"], false, "{stopped}");
    let after = alice.break_glass("k8s-admin", "INC-3");
    assert!(after.get("training").is_none(), "{after}");
    let r = sam.run(&["drill", "stop"]);
    assert!(
        !r.ok && said(&r).contains("no people drill is open"),
        "{}",
        r.stderr
    );
    let list = sam.ok(&["drill", "windows"]);
    assert_eq!(list[0]["closed_by"], "sam", "{list}");
    let text = sam.run_plain(&["drill", "windows"]).stdout;
    assert!(text.contains("ended") && !text.contains('\u{1b}'), "{text}");

    // Every request reads the open windows: an admin cannot open them without bound.
    for i in 0..16 {
        sam.ok(&[
            "drill",
            "start",
            "--people",
            "--reason",
            &format!("day {i}"),
        ]);
    }
    let r = sam.run(&["drill", "start", "--people", "--reason", "one more"]);
    assert!(
        !r.ok && said(&r).contains("16 people drills are open"),
        "{}",
        said(&r)
    );
    assert_eq!(sam.ok(&["drill", "stop"]).as_array().unwrap().len(), 16);
}

/// Today's date (UTC) as the report wants it.
fn breakglass_core_date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
