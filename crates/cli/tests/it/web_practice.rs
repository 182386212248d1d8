//! Practice in the browser: while a people drill (game day) is open, the home page and the
//! break-glass form say so; the grant a responder gets there is marked TRAINING on its page, in
//! their list and on the security dashboard; the dashboard lists the open drill (the admin's
//! reason inert) and the sealed glass cases with how long each has left.

use crate::glass_case::{CUSTODIANS, pass_of, passphrases};
use crate::harness::Server;
use crate::web::{drive, policy};
use serde_json::json;

/// Typed by the admin who opens the game day: reaches the pages as text.
const DRILL_REASON: &str = "Q4 game day <script>window.__pwned=1</script><b>db locked</b>";

#[test]
fn a_game_day_and_the_glass_cases_are_shown_and_its_grants_marked_training() {
    let server = Server::start(&policy());
    let alice = server.user("alice", &["oncall"]);
    let sam = server.user("sam", &["security"]);
    let w = sam.ok(&[
        "drill",
        "start",
        "--people",
        "--for",
        "2h",
        "--resources",
        "prod-db",
        "--reason",
        DRILL_REASON,
    ]);
    let window = w["id"].as_str().unwrap_or("").to_string();
    assert!(!window.is_empty(), "{w}");
    // A case with 2 days left: inside the default 3-day warning, so the dashboard says reseal.
    let dir = server.dir.path();
    let all: Vec<(&str, String)> = CUSTODIANS.iter().map(|c| (*c, pass_of(c))).collect();
    let all: Vec<(&str, &str)> = all.iter().map(|(c, p)| (*c, p.as_str())).collect();
    let pf = passphrases(dir, "all.txt", &all);
    let case = sam.ok(&[
        "glass-case",
        "seal",
        "--custodians",
        &CUSTODIANS.join(","),
        "--threshold",
        "3",
        "--days",
        "2",
        "--out",
        &dir.join("case.json").display().to_string(),
        "--passphrase-file",
        &pf,
        "--otp",
        &sam.otp(),
    ]);
    let case_id = case["case_id"].as_str().unwrap_or("").to_string();
    assert!(!case_id.is_empty(), "{case}");

    let v = drive(&server, "practice", true, &[&alice, &sam], json!({}));
    let home = v["home"].as_str().unwrap_or("");
    assert!(
        home.contains("A people drill (game day) is open until"),
        "{home}"
    );
    assert!(home.contains("on prod-db"), "{home}");
    assert!(
        home.contains(DRILL_REASON),
        "reason not shown as typed:\n{home}"
    );
    let form = v["form"].as_str().unwrap_or("");
    assert!(form.contains("marked training"), "{form}");
    let grant = v["grant_page"].as_str().unwrap_or("");
    assert!(grant.contains("TRAINING"), "{grant}");
    assert!(
        grant.contains(&window),
        "the grant page names the drill:\n{grant}"
    );
    let id = v["grant"].as_str().unwrap_or("");
    // The server marked it (the browser sent no such field).
    let g = alice.ok(&["status", id]);
    assert_eq!(g["training"], window.as_str(), "{g}");
    assert!(v["home_after"].as_str().unwrap_or("").contains("TRAINING"));
    let dash = v["dashboard"].as_str().unwrap_or("");
    assert!(dash.contains("People drills open now 1"), "{dash}");
    assert!(
        dash.contains(&window) && dash.contains(DRILL_REASON),
        "{dash}"
    );
    assert!(dash.contains("Offline glass cases 1"), "{dash}");
    assert!(dash.contains(&case_id), "{dash}");
    assert!(dash.contains("1 day left"), "{dash}");
    assert!(
        dash.contains("3 of alice, bob, carol, dave, erin"),
        "{dash}"
    );
    assert!(dash.contains("seal a new one"), "{dash}");
    assert_eq!(v["live_marks"], 1, "the live grant carries its mark");
    assert_eq!(v["pwned"], false);
    assert_eq!(v["bold_in_reason"], 0);
}
