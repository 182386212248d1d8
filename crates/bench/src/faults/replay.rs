//! One TOTP code on several nodes: a fresh code is sent to two live nodes at the same moment
//! and then once more to a third (or again to one of the two). The store's compare-and-swap on
//! the user's MFA state must let at most one of them through, whichever nodes they reach and
//! whatever fault is going on.
//!
//! Bursts never lock the user out: at most one refusal comes before the code's one success
//! and two after it, and the next burst's success clears the count (5 in a row lock).

use crate::crash::load::{Load, token};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Default, Debug)]
pub struct Replay {
    /// Codes sent (each to 2-3 nodes).
    pub codes: u64,
    pub sent: u64,
    /// Codes accepted exactly once.
    pub accepted_once: u64,
    /// Codes accepted more than once: must stay empty.
    pub accepted_twice: Vec<String>,
    /// Answers by status and problem type (201 included).
    pub answers: BTreeMap<String, u64>,
}

/// POST a db-auto request with `code` as `user` to `base`: (status, problem slug, grant id).
async fn send(
    http: reqwest::Client,
    base: String,
    user: String,
    code: String,
) -> Option<(u16, String, Option<String>)> {
    let body = json!({"resource": "db-auto", "reason": "node faults: one code on every node",
                      "duration": "3s", "otp": code});
    let resp = http
        .post(format!("{base}/api/v1/grants"))
        .bearer_auth(token(&user))
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let slug = v["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("-")
        .to_string();
    let id = v["id"].as_str().filter(|_| status == 201).map(String::from);
    Some((status, slug, id))
}

pub async fn run(load: Arc<Load>, users: Vec<String>, stop: Arc<AtomicBool>) -> Replay {
    let mut r = Replay::default();
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
    else {
        return r;
    };
    let mut turn = 0usize;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let live: Vec<usize> = (0..load.bases.len())
            .filter(|i| load.live[*i].load(Ordering::SeqCst))
            .collect();
        if live.len() < 2 || users.is_empty() {
            continue;
        }
        turn += 1;
        let user = users[turn % users.len()].clone();
        let Some(code) = load.totp.code(&user) else {
            continue;
        };
        r.codes += 1;
        // Two at once, then one more on the node after them.
        let a = live[turn % live.len()];
        let b = live[(turn + 1) % live.len()];
        let c = live[(turn + 2) % live.len()];
        let at_once: Vec<_> = [a, b]
            .into_iter()
            .map(|i| {
                tokio::spawn(send(
                    http.clone(),
                    load.bases[i].clone(),
                    user.clone(),
                    code.clone(),
                ))
            })
            .collect();
        let mut answers = Vec::new();
        for (i, h) in [a, b].into_iter().zip(at_once) {
            answers.push((i, h.await.ok().flatten()));
        }
        let later = send(
            http.clone(),
            load.bases[c].clone(),
            user.clone(),
            code.clone(),
        )
        .await;
        answers.push((c, later));
        let mut accepted = Vec::new();
        for (node, ans) in answers {
            r.sent += 1;
            let key = match &ans {
                Some((s, slug, _)) => format!("{s} {slug}"),
                None => "no answer".to_string(),
            };
            *r.answers.entry(key).or_default() += 1;
            if let Some((201, _, id)) = ans {
                accepted.push(format!("node {node} (grant {})", id.unwrap_or_default()));
            }
        }
        match accepted.len() {
            0 => {}
            1 => r.accepted_once += 1,
            _ => r.accepted_twice.push(format!(
                "code of {user} accepted {} times: {}",
                accepted.len(),
                accepted.join(", ")
            )),
        }
    }
    r
}
