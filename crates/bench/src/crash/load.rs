//! The mixed load: a few concurrent clients breaking glass (auto and quorum), approving,
//! picking up credentials, revoking and extending over the real HTTP API, and the ledger of
//! what each of them was told. Only a definitive answer counts: a request cut by the kill is
//! "unknown", never recorded as done.

use super::rng::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Res {
    DbAuto,
    DbQuorum,
    SshAuto,
    SshQuorum,
}

impl Res {
    pub fn name(self) -> &'static str {
        match self {
            Res::DbAuto => "db-auto",
            Res::DbQuorum => "db-quorum",
            Res::SshAuto => "ssh-auto",
            Res::SshQuorum => "ssh-quorum",
        }
    }

    pub fn ssh(self) -> bool {
        matches!(self, Res::SshAuto | Res::SshQuorum)
    }

    pub fn quorum(self) -> bool {
        matches!(self, Res::DbQuorum | Res::SshQuorum)
    }

    /// Whether the requester proves MFA (requests and extensions); approvers always do.
    pub fn mfa(self) -> bool {
        self == Res::DbAuto
    }
}

/// A credential a client was handed: in the request's answer (auto) or by a pickup (quorum).
#[derive(Clone, Debug)]
pub enum Cred {
    Pg {
        role: String,
    },
    /// `valid_before_ms`: when the certificate stops working by itself.
    Ssh {
        certificate: String,
        valid_before_ms: i64,
    },
}

/// An RFC 3339 time as the server writes it (`…T12:34:56.789Z`), in Unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim_end_matches('Z');
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    // Milliseconds count: the expiry report measures lags of tens of ms (dropping them once
    // made every expiry look 0–999 ms later than it was).
    let ms: i64 = match frac.len() {
        0 => 0,
        _ => format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?,
    };
    breakglass_core::time::parse_date(&format!("{whole}Z")).map(|t| t.0 + ms)
}

/// What the server answered with success, so must survive any kill after the answer.
#[derive(Clone, Debug, Default)]
pub struct Acked {
    pub approvals: u32,
    pub extensions: u32,
    pub revoked: bool,
    pub cancelled: bool,
    pub picked_up: bool,
}

#[derive(Clone, Debug)]
pub struct ClientGrant {
    pub user: String,
    pub res: Res,
    /// The state in the last definitive answer about it.
    pub last_state: String,
    pub acked: Acked,
    pub creds: Vec<Cred>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct OpCounts {
    pub requests: u64,
    pub approvals: u64,
    pub pickups: u64,
    pub revocations: u64,
    pub cancels: u64,
    pub extensions: u64,
    /// Answered with a refusal (4xx/5xx): nothing to check beyond the audit trail.
    pub refused: u64,
    /// No answer (the kill cut it, or the server was down).
    pub unanswered: u64,
}

#[derive(Default)]
pub struct Ledger {
    pub grants: BTreeMap<String, ClientGrant>,
    pub ops: OpCounts,
    /// Refusals by `operation status problem-slug`.
    pub refusals: BTreeMap<String, u64>,
    /// Milliseconds of each answered call since the soak last took them.
    pub latencies_ms: Vec<f64>,
}

/// TOTP codes for every seeded user (one secret for all; each code is spent once per user,
/// so codes walk forward and a user whose codes are used up waits for the clock).
pub struct Totp {
    secret: Vec<u8>,
    last: Mutex<HashMap<String, u64>>,
}

impl Totp {
    pub fn new(secret: Vec<u8>) -> Totp {
        Totp {
            secret,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// A never-used code the server accepts now, or None when `user` has spent them all.
    pub fn code(&self, user: &str) -> Option<String> {
        let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let cur = now / 30;
        // Keep 3 s away from the end of the oldest accepted step.
        let lo = if now % 30 < 27 { cur - 1 } else { cur };
        let mut last = self.last.lock().ok()?;
        let entry = last.entry(user.to_string()).or_insert(0);
        let step = (*entry + 1).max(lo);
        if step > cur + 1 {
            return None;
        }
        *entry = step;
        Some(breakglass_core::mfa::code_for_step(&self.secret, step))
    }
}

/// Everything the clients share.
pub struct Load {
    /// Every node's address; a call goes to one of the nodes marked live (a load balancer's
    /// view: the harness marks a node down when it kills or stops it).
    pub bases: Vec<String>,
    pub live: Vec<AtomicBool>,
    /// Grants of seconds only (the node-fault runs: many expiries to time).
    pub short: bool,
    pub totp: Totp,
    pub ledger: Mutex<Ledger>,
    /// Requesters per client (group oncall), approvers (group security).
    pub requesters: Vec<Vec<String>>,
    pub approvers: Vec<String>,
    pub ssh_public_key: String,
}

impl Load {
    /// A live node's address, chosen by `rng` (node 0 when none is marked live).
    pub fn base(&self, rng: &mut Rng) -> &str {
        let live: Vec<&String> = self
            .bases
            .iter()
            .zip(&self.live)
            .filter(|(_, l)| l.load(Ordering::SeqCst))
            .map(|(b, _)| b)
            .collect();
        match rng.pick(&live) {
            Some(b) => b.as_str(),
            None => self.bases[0].as_str(),
        }
    }

    /// `refusals (operation, status, problem): …` — what the server refused, counted.
    pub fn refusals_line(&self) -> String {
        let r: Vec<String> = self
            .ledger
            .lock()
            .map(|l| {
                l.refusals
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect()
            })
            .unwrap_or_default();
        format!("refusals (operation, status, problem): {}", r.join("; "))
    }

    /// The latencies recorded since the last call.
    pub fn take_latencies(&self) -> Vec<f64> {
        self.ledger
            .lock()
            .map(|mut l| std::mem::take(&mut l.latencies_ms))
            .unwrap_or_default()
    }

    /// Drops grants that cannot change any more from the ledger (the soak: the clients pick
    /// among the ledger's grants, which would otherwise grow for the whole run).
    pub fn forget_settled(&self) {
        const ENDED: [&str; 5] = ["expired", "revoked", "denied", "cancelled", "timed_out"];
        if let Ok(mut l) = self.ledger.lock() {
            l.grants
                .retain(|_, g| !ENDED.contains(&g.last_state.as_str()));
        }
    }
}

pub fn token(user: &str) -> String {
    format!("tok-{user}")
}

/// One HTTP call; `None` when no answer came (connection refused or cut).
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token(user));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.ok()?;
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn cred_of(res: Res, c: &Value) -> Option<Cred> {
    if res.ssh() {
        Some(Cred::Ssh {
            certificate: c["certificate"].as_str()?.to_string(),
            valid_before_ms: c["valid_before"].as_str().and_then(parse_time)?,
        })
    } else {
        c["user"].as_str().map(|s| Cred::Pg {
            role: s.to_string(),
        })
    }
}

#[derive(Clone, Copy)]
enum Op {
    Request(Res),
    Approve,
    Pickup,
    Revoke,
    Extend,
    Status,
}

const OPS: [(Op, u64); 9] = [
    (Op::Request(Res::DbAuto), 3),
    (Op::Request(Res::SshAuto), 3),
    (Op::Request(Res::DbQuorum), 2),
    (Op::Request(Res::SshQuorum), 2),
    (Op::Approve, 5),
    (Op::Pickup, 3),
    (Op::Revoke, 2),
    (Op::Extend, 2),
    (Op::Status, 1),
];

struct Client {
    load: Arc<Load>,
    http: reqwest::Client,
    rng: Rng,
    users: Vec<String>,
}

/// Runs client `c` until `stop` is set.
pub async fn client(load: Arc<Load>, c: usize, rng: Rng, stop: Arc<AtomicBool>) {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    else {
        return;
    };
    let users = load.requesters.get(c).cloned().unwrap_or_default();
    let mut cl = Client {
        load,
        http,
        rng,
        users,
    };
    let weights: Vec<u64> = OPS.iter().map(|(_, w)| *w).collect();
    while !stop.load(Ordering::SeqCst) {
        let op = OPS[cl.rng.weighted(&weights)].0;
        let answered = match op {
            Op::Request(r) => cl.request(r).await,
            Op::Approve => cl.approve().await,
            Op::Pickup => cl.pickup().await,
            Op::Revoke => cl.revoke().await,
            Op::Extend => cl.extend().await,
            Op::Status => cl.status().await,
        };
        if answered == Some(false) {
            cl.count(|o| o.unanswered += 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let think = cl.rng.below(15);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

impl Client {
    fn count(&self, f: impl FnOnce(&mut OpCounts)) {
        if let Ok(mut l) = self.load.ledger.lock() {
            f(&mut l.ops);
        }
    }

    fn refused(&self, op: &str, status: u16, v: &Value) {
        let slug = v["type"]
            .as_str()
            .and_then(|t| t.rsplit('/').next())
            .unwrap_or("-");
        if let Ok(mut l) = self.load.ledger.lock() {
            l.ops.refused += 1;
            *l.refusals
                .entry(format!("{op} {status} {slug}"))
                .or_default() += 1;
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ClientGrant)) {
        if let Ok(mut l) = self.load.ledger.lock()
            && let Some(g) = l.grants.get_mut(id)
        {
            f(g);
        }
    }

    /// A grant of this client's users matching `pred`, chosen at random: (id, user, resource).
    fn own(&mut self, pred: impl Fn(&ClientGrant) -> bool) -> Option<(String, String, Res)> {
        let list: Vec<(String, String, Res)> = {
            let l = self.load.ledger.lock().ok()?;
            l.grants
                .iter()
                .filter(|(_, g)| self.users.contains(&g.user) && pred(g))
                .map(|(id, g)| (id.clone(), g.user.clone(), g.res))
                .collect()
        };
        self.rng.pick(&list).cloned()
    }

    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let t = std::time::Instant::now();
        let base = self.load.base(&mut self.rng).to_string();
        let answer = call(&self.http, &base, method, path, user, body).await;
        if answer.is_some()
            && let Ok(mut l) = self.load.ledger.lock()
            && l.latencies_ms.len() < 1_000_000
        {
            l.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        answer
    }

    /// Some(true): answered with success; Some(false): no answer; None: refused or nothing to do.
    async fn request(&mut self, res: Res) -> Option<bool> {
        let user = self.rng.pick(&self.users)?.clone();
        let otp = if res.mfa() {
            Some(self.load.totp.code(&user)?)
        } else {
            None
        };
        let duration = if self.load.short || (!res.quorum() && self.rng.chance(0.35)) {
            format!("{}s", self.rng.between(2, 8))
        } else {
            format!("{}s", self.rng.between(20, 150))
        };
        let mut body = json!({"resource": res.name(), "reason": "crash trial: orders table locked", "duration": duration});
        if let Some(o) = otp {
            body["otp"] = json!(o);
        }
        if res.ssh() {
            body["ssh_public_key"] = json!(self.load.ssh_public_key);
        }
        let Some((status, v)) = self
            .send(reqwest::Method::POST, "/api/v1/grants", &user, Some(body))
            .await
        else {
            return Some(false);
        };
        let id = v["id"].as_str().filter(|_| status == 201);
        let Some(id) = id else {
            self.refused("request", status, &v);
            return None;
        };
        let g = ClientGrant {
            user,
            res,
            last_state: v["state"].as_str().unwrap_or("").to_string(),
            acked: Acked::default(),
            creds: cred_of(res, &v["credential"]).into_iter().collect(),
        };
        if let Ok(mut l) = self.load.ledger.lock() {
            l.grants.insert(id.to_string(), g);
            l.ops.requests += 1;
        }
        Some(true)
    }

    async fn approve(&mut self) -> Option<bool> {
        let pending: Vec<String> = {
            let l = self.load.ledger.lock().ok()?;
            l.grants
                .iter()
                .filter(|(_, g)| g.res.quorum() && g.last_state == "pending")
                .map(|(id, _)| id.clone())
                .collect()
        };
        let id = self.rng.pick(&pending)?.clone();
        // Approvers' codes are few (one per 30 s each): spend one only on a grant still pending.
        let looker = self.rng.pick(&self.load.approvers)?.clone();
        let path = format!("/api/v1/grants/{id}");
        match self.send(reqwest::Method::GET, &path, &looker, None).await {
            None => return Some(false),
            Some((200, v)) if v["state"] != "pending" => {
                let state = v["state"].as_str().unwrap_or("").to_string();
                self.update(&id, |g| g.last_state = state);
                return None;
            }
            Some(_) => {}
        }
        let mut picked = None;
        for _ in 0..4 {
            let a = self.rng.pick(&self.load.approvers)?.clone();
            if let Some(code) = self.load.totp.code(&a) {
                picked = Some((a, code));
                break;
            }
        }
        let (approver, code) = picked?;
        let path = format!("/api/v1/grants/{id}/approve");
        let Some((status, v)) = self
            .send(
                reqwest::Method::POST,
                &path,
                &approver,
                Some(json!({"otp": code})),
            )
            .await
        else {
            return Some(false);
        };
        if status != 200 {
            self.refused("approve", status, &v);
            if status == 409 {
                self.refresh(&id).await;
            }
            return None;
        }
        let state = v["state"].as_str().unwrap_or("").to_string();
        self.update(&id, |g| {
            g.acked.approvals += 1;
            g.last_state = state;
        });
        self.count(|o| o.approvals += 1);
        Some(true)
    }

    async fn pickup(&mut self) -> Option<bool> {
        let (id, user, res) = self.own(|g| {
            g.res.quorum()
                && g.creds.is_empty()
                && !g.acked.picked_up
                && matches!(g.last_state.as_str(), "pending" | "active")
        })?;
        let path = format!("/api/v1/grants/{id}/credential");
        let Some((status, v)) = self.send(reqwest::Method::POST, &path, &user, None).await else {
            return Some(false);
        };
        if status != 200 {
            self.refused("pickup", status, &v);
            self.refresh(&id).await;
            return None;
        }
        let cred = cred_of(res, &v["credential"]);
        self.update(&id, |g| {
            g.acked.picked_up = true;
            g.creds.extend(cred);
        });
        self.count(|o| o.pickups += 1);
        Some(true)
    }

    async fn revoke(&mut self) -> Option<bool> {
        let (id, user, _) = self.own(|g| matches!(g.last_state.as_str(), "pending" | "active"))?;
        let path = format!("/api/v1/grants/{id}/revoke");
        let body = json!({"reason": "crash trial: done"});
        let Some((status, v)) = self
            .send(reqwest::Method::POST, &path, &user, Some(body))
            .await
        else {
            return Some(false);
        };
        if status != 200 {
            self.refused("revoke", status, &v);
            self.refresh(&id).await;
            return None;
        }
        let state = v["state"].as_str().unwrap_or("").to_string();
        let cancelled = state == "cancelled";
        self.update(&id, |g| {
            if cancelled {
                g.acked.cancelled = true;
            } else {
                g.acked.revoked = true;
            }
            g.last_state = state;
        });
        self.count(|o| {
            if cancelled {
                o.cancels += 1
            } else {
                o.revocations += 1
            }
        });
        Some(true)
    }

    async fn extend(&mut self) -> Option<bool> {
        let (id, user, res) = self.own(|g| g.last_state == "active")?;
        let mut body = json!({"by": format!("{}s", self.rng.between(5, 60))});
        if res.mfa() {
            body["otp"] = json!(self.load.totp.code(&user)?);
        }
        let path = format!("/api/v1/grants/{id}/extend");
        let Some((status, v)) = self
            .send(reqwest::Method::POST, &path, &user, Some(body))
            .await
        else {
            return Some(false);
        };
        if status != 200 {
            self.refused("extend", status, &v);
            self.refresh(&id).await;
            return None;
        }
        self.update(&id, |g| g.acked.extensions += 1);
        self.count(|o| o.extensions += 1);
        Some(true)
    }

    async fn status(&mut self) -> Option<bool> {
        let (id, _, _) = self.own(|g| matches!(g.last_state.as_str(), "pending" | "active"))?;
        Some(self.refresh(&id).await)
    }

    /// Reads the grant again as its holder and notes its state; false when unanswered.
    async fn refresh(&mut self, id: &str) -> bool {
        let user = {
            let Ok(l) = self.load.ledger.lock() else {
                return false;
            };
            match l.grants.get(id) {
                Some(g) => g.user.clone(),
                None => return false,
            }
        };
        let path = format!("/api/v1/grants/{id}");
        match self.send(reqwest::Method::GET, &path, &user, None).await {
            Some((200, v)) => {
                let state = v["state"].as_str().unwrap_or("").to_string();
                self.update(id, |g| g.last_state = state);
                true
            }
            Some(_) => true,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_keep_their_milliseconds() {
        let whole = super::parse_time("2026-12-03T12:00:00Z").unwrap();
        assert_eq!(
            super::parse_time("2026-12-03T12:00:00.457Z"),
            Some(whole + 457)
        );
        assert_eq!(
            super::parse_time("2026-12-03T12:00:00.5Z"),
            Some(whole + 500)
        );
        assert_eq!(
            super::parse_time("2026-12-03T12:00:00.123456Z"),
            Some(whole + 123)
        );
        assert_eq!(super::parse_time("2026-12-03T12:00:00.x"), None);
    }
}
