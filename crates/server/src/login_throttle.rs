//! Login throttling: wrong passwords slow further guesses, they never lock an account.
//!
//! Three counters of failed password checks, each with its own free allowance and a delay that
//! doubles per failure beyond it (1 s, 2 s, 4 s … up to a cap):
//! - per (account, source): the guesser at one address (default: 5 free, cap 60 s);
//! - per source, across accounts: one address trying many accounts (20 free, cap 60 s);
//! - per account, across sources: a distributed guesser (10 free, cap 5 s). It only applies to
//!   sources that have themselves tried the account, and each waits from its own last try, so
//!   an attacker elsewhere can slow the responder by seconds but never lock them out: a
//!   responder at a new address with the right password gets in at once.
//!
//! The count is atomic: an attempt is reserved (counted as in flight) under the lock BEFORE the
//! password is checked. Within an allowance at most that many checks run at once; beyond it
//! one at a time, after the delay. A refusal does no password check.
//!
//! Bursts (`burst_threshold` failed or refused attempts within `burst_window` on one account
//! or one source) are reported once per window, for an `auth.login_burst` audit event.
//!
//! State is in memory per node, bounded by `max_entries` (idle entries are forgotten after
//! `forget_after`; when full, the oldest idle ones are evicted). Time is passed in. With
//! several nodes, the failure counts are also kept in the shared store (under
//! [`shared_keys`]): before a check each node raises its counters to the shared ones
//! ([`LoginThrottle::merge_shared`]), so wrong passwords spread over nodes count as one
//! guesser's. In-flight reservations and burst windows stay per node.

use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::time::Timestamp;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures per (account, source) before delays start, and the longest delay.
    pub pair_free: u32,
    pub pair_cap: Duration,
    /// Failures per source across accounts before delays start, and the longest delay.
    pub source_free: u32,
    pub source_cap: Duration,
    /// Failures per account across sources before delays start, and the (small) longest delay.
    pub account_free: u32,
    pub account_cap: Duration,
    /// The first delay; it doubles with each further failure.
    pub base: Duration,
    /// Failed or refused attempts within `burst_window` that make a burst.
    pub burst_threshold: u32,
    pub burst_window: Duration,
    /// An entry idle this long starts again from zero.
    pub forget_after: Duration,
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            pair_free: 5,
            pair_cap: Duration::from_secs(60),
            source_free: 20,
            source_cap: Duration::from_secs(60),
            account_free: 10,
            account_cap: Duration::from_secs(5),
            base: Duration::from_secs(1),
            burst_threshold: 10,
            burst_window: Duration::from_secs(60),
            forget_after: Duration::from_secs(15 * 60),
            max_entries: 50_000,
        }
    }
}

/// Where a login comes from: an IPv4 address, or an IPv6 /64 (one host's usual allotment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(String, Source),
    Account(String),
    Source(Source),
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: u32,
    in_flight: u32,
    /// Last failure (ms), or when the entry was made.
    last: i64,
    win_start: i64,
    win_count: u32,
    win_reported: bool,
}

/// Which counter refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Pair,
    Source,
    Account,
}

/// A burst to audit: `count` failed or refused attempts within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// "account" or "source".
    pub scope: &'static str,
    pub account: String,
    pub source: String,
    pub count: u32,
    pub window_secs: u64,
}

/// A login refused without a password check.
#[derive(Debug)]
pub struct Refusal {
    pub scope: Scope,
    /// Refused because checks are still in flight beyond the allowance (not yet by failures).
    pub concurrent: bool,
    pub retry_after: Duration,
    pub bursts: Vec<Burst>,
}

impl Refusal {
    /// Whole seconds to wait, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }
}

pub struct LoginThrottle {
    cfg: ThrottleConfig,
    state: Mutex<HashMap<Key, Entry>>,
}

/// A reserved password check. Report its outcome with [`Attempt::failed`] or
/// [`Attempt::succeeded`]; dropped without either (an error, or the caller went away before
/// learning the result), it counts as nothing.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    account: String,
    source: Source,
    done: bool,
}

fn delay(failures: u32, free: u32, base: Duration, cap: Duration) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    base.saturating_mul(1u32 << (failures - free).min(20))
        .min(cap)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LoginThrottle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        LoginThrottle {
            cfg,
            state: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Raises the counters of `account` from `source` to what every node counted (`shared`:
    /// key from [`shared_keys`], failures, last failure); counts idle for `forget_after` are
    /// ignored.
    pub fn merge_shared(
        &self,
        account: &str,
        source: IpAddr,
        shared: &[(String, u32, Timestamp)],
        now: Timestamp,
    ) {
        let source = Source::of(source);
        let now = now.0;
        let names = shared_keys(account, source.0);
        let keys = [
            Key::Pair(account.to_string(), source),
            Key::Source(source),
            Key::Account(account.to_string()),
        ];
        let mut map = self.lock();
        for (name, k) in names.iter().zip(keys) {
            let Some((_, failures, last)) = shared.iter().find(|(n, _, _)| n == name) else {
                continue;
            };
            if now - last.0 >= ms(self.cfg.forget_after) {
                continue;
            }
            let mut e = self.current(&map, &k, now);
            if *failures > e.failures {
                e.last = if e.failures > 0 {
                    e.last.max(last.0)
                } else {
                    last.0
                };
                e.failures = *failures;
            } else if e.failures > 0 {
                e.last = e.last.max(last.0);
            } else {
                continue;
            }
            if !map.contains_key(&k) {
                self.make_room(&mut map, now);
            }
            map.insert(k, e);
        }
    }

    /// Reserves a password check for `account` from `source`, or refuses it (with how long to
    /// wait). A refusal counts towards bursts but not towards the delays.
    pub fn reserve(
        &self,
        account: &str,
        source: IpAddr,
        now: Timestamp,
    ) -> Result<Attempt<'_>, Refusal> {
        let source = Source::of(source);
        let now = now.0;
        let c = &self.cfg;
        let mut map = self.lock();
        let keys = [
            Key::Pair(account.to_string(), source),
            Key::Source(source),
            Key::Account(account.to_string()),
        ];
        let [pair, src, acct] = keys.each_ref().map(|k| self.current(&map, k, now));
        // Each counter: within its allowance anything goes (in-flight checks count); beyond it
        // one check at a time, `delay` after the last failure.
        let gate = |e: &Entry, free: u32, cap: Duration| -> i64 {
            if e.failures + e.in_flight < free {
                return 0;
            }
            if e.in_flight > 0 {
                return ms(delay(e.failures + e.in_flight, free, c.base, cap).max(c.base));
            }
            e.last + ms(delay(e.failures, free, c.base, cap)) - now
        };
        let pair_wait = gate(&pair, c.pair_free, c.pair_cap);
        let source_wait = gate(&src, c.source_free, c.source_cap);
        // The account counter slows only sources that have tried this account themselves, each
        // from its own last try: it cannot stop a responder elsewhere.
        // Within the account's allowance there is no wait at all: a concurrent failure stamped
        // after this request read the clock must not turn into a refusal.
        let d = delay(acct.failures, c.account_free, c.base, c.account_cap);
        let account_wait = if (pair.failures > 0 || pair.in_flight > 0) && !d.is_zero() {
            if pair.in_flight > 0 {
                ms(d)
            } else {
                pair.last + ms(d) - now
            }
        } else {
            0
        };
        let concurrent = (pair.in_flight > 0 && pair.failures < c.pair_free)
            || (src.in_flight > 0 && src.failures < c.source_free);
        let (scope, wait) = [
            (Scope::Pair, pair_wait),
            (Scope::Source, source_wait),
            (Scope::Account, account_wait),
        ]
        .into_iter()
        .max_by_key(|(_, w)| *w)
        .unwrap_or((Scope::Pair, 0));
        if wait > 0 {
            let bursts = self.note_attempt(&mut map, account, source, now);
            return Err(Refusal {
                scope,
                concurrent: concurrent && scope != Scope::Account,
                retry_after: Duration::from_millis(u64::try_from(wait).unwrap_or(0)),
                bursts,
            });
        }
        self.make_room(&mut map, now);
        for (k, mut e) in keys.into_iter().zip([pair, src, acct]) {
            if !matches!(k, Key::Account(_)) {
                e.in_flight += 1;
            }
            map.insert(k, e);
        }
        Ok(Attempt {
            throttle: self,
            account: account.to_string(),
            source,
            done: false,
        })
    }

    /// The entry for `k` as of `now` (fresh when unknown or idle for `forget_after`).
    fn current(&self, map: &HashMap<Key, Entry>, k: &Key, now: i64) -> Entry {
        match map.get(k) {
            Some(e) if e.in_flight > 0 || now - e.last < ms(self.cfg.forget_after) => *e,
            _ => Entry {
                last: now,
                win_start: now,
                ..Entry::default()
            },
        }
    }

    /// Counts a failed or refused attempt in the burst windows of the account and the source;
    /// returns the bursts to report (once per window each).
    fn note_attempt(
        &self,
        map: &mut HashMap<Key, Entry>,
        account: &str,
        source: Source,
        now: i64,
    ) -> Vec<Burst> {
        let mut out = Vec::new();
        for (scope, k) in [
            ("account", Key::Account(account.to_string())),
            ("source", Key::Source(source)),
        ] {
            let mut e = self.current(map, &k, now);
            if now - e.win_start >= ms(self.cfg.burst_window) {
                e.win_start = now;
                e.win_count = 0;
                e.win_reported = false;
            }
            e.win_count = e.win_count.saturating_add(1);
            if e.win_count >= self.cfg.burst_threshold && !e.win_reported {
                e.win_reported = true;
                out.push(Burst {
                    scope,
                    account: account.to_string(),
                    source: source.to_string(),
                    count: e.win_count,
                    window_secs: self.cfg.burst_window.as_secs(),
                });
            }
            if !map.contains_key(&k) {
                self.make_room(map, now);
            }
            map.insert(k, e);
        }
        out
    }

    /// Keeps the map under `max_entries`: forgets idle entries, then the oldest.
    fn make_room(&self, map: &mut HashMap<Key, Entry>, now: i64) {
        if map.len() + 3 <= self.cfg.max_entries {
            return;
        }
        let forget = ms(self.cfg.forget_after);
        map.retain(|_, e| e.in_flight > 0 || now - e.last < forget);
        if map.len() + 3 > self.cfg.max_entries {
            // Still full (a flood of fresh keys): drop the older half of the idle entries.
            let mut lasts: Vec<i64> = map
                .values()
                .filter(|e| e.in_flight == 0)
                .map(|e| e.last)
                .collect();
            lasts.sort_unstable();
            if let Some(cut) = lasts.get(lasts.len() / 2).copied() {
                map.retain(|_, e| e.in_flight > 0 || e.last > cut);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn finish(&self, a: &Attempt<'_>, outcome: Option<(bool, i64)>) -> Vec<Burst> {
        let mut map = self.lock();
        let pair_key = Key::Pair(a.account.clone(), a.source);
        let source_key = Key::Source(a.source);
        for k in [&pair_key, &source_key] {
            if let Some(e) = map.get_mut(k) {
                e.in_flight = e.in_flight.saturating_sub(1);
            }
        }
        match outcome {
            None => Vec::new(),
            Some((true, _)) => {
                // The right password: this source starts afresh on this account, and the
                // account's counter too (only the password's holder can do this). The source's
                // counter stays: a guesser must not clear it by logging into its own account.
                map.remove(&pair_key);
                if let Some(e) = map.get_mut(&Key::Account(a.account.clone())) {
                    e.failures = 0;
                }
                Vec::new()
            }
            Some((false, now)) => {
                let acct_key = Key::Account(a.account.clone());
                for k in [pair_key, source_key, acct_key] {
                    let mut e = self.current(&map, &k, now);
                    e.failures = e.failures.saturating_add(1);
                    e.last = now;
                    map.insert(k, e);
                }
                self.note_attempt(&mut map, &a.account, a.source, now)
            }
        }
    }
}

impl Attempt<'_> {
    /// The password was wrong (or the account unknown or disabled): counted; returns bursts.
    pub fn failed(mut self, now: Timestamp) -> Vec<Burst> {
        self.done = true;
        self.throttle.finish(&self, Some((false, now.0)))
    }

    /// The password was right.
    pub fn succeeded(mut self) {
        self.done = true;
        self.throttle.finish(&self, Some((true, 0)));
    }

    pub fn source(&self) -> String {
        self.source.to_string()
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.throttle.finish(self, None);
        }
    }
}

/// The names under which the store keeps the counters of `account` from `source`, shared by
/// every node: (account, source) pair, source, account. Account names are validated first
/// (no `:`), so the names cannot collide.
pub fn shared_keys(account: &str, source: IpAddr) -> [String; 3] {
    let src = Source::of(source);
    [
        format!("pair:{account}:{src}"),
        format!("source:{src}"),
        format!("account:{account}"),
    ]
}

/// The `auth.login_burst` audit events for `bursts` (alertable).
pub fn burst_events(now: Timestamp, bursts: &[Burst]) -> Vec<NewEvent> {
    bursts
        .iter()
        .map(|b| {
            let mut data =
                json!({"scope": b.scope, "count": b.count, "window_secs": b.window_secs});
            match b.scope {
                "account" => data["account"] = json!(b.account),
                _ => data["source"] = json!(b.source),
            }
            data["last_account"] = json!(b.account);
            data["last_source"] = json!(b.source);
            breakglass_core::audit::event(now, "auth.login_burst", None, None, data)
        })
        .collect()
}

/// The 429 for a throttled login: which counter, how long to wait, what to do.
pub fn refusal_error(account: &str, source: IpAddr, r: &Refusal) -> ApiError {
    let secs = r.retry_after_secs();
    let src = Source::of(source);
    let message = match r.scope {
        _ if r.concurrent => format!(
            "too many logins at once for {account} from {src} (checks still running): login is throttled; retry after {secs} s"
        ),
        Scope::Pair => format!(
            "too many wrong passwords for {account} from {src}: login is throttled; retry after {secs} s"
        ),
        Scope::Source => format!(
            "too many failed logins from {src} (several accounts): login is throttled; retry after {secs} s"
        ),
        Scope::Account => format!(
            "too many failed logins for {account} from several addresses: login is throttled; retry after {secs} s"
        ),
    };
    ApiError::TooMany {
        slug: "login-throttled",
        message,
        hint: Some(format!(
            "wait {secs} s and try again with the right password (no password was checked); \
             each further wrong password doubles the wait, up to a minute"
        )),
        retry_after_secs: secs,
    }
}

#[cfg(test)]
#[path = "login_throttle_tests.rs"]
mod tests;
