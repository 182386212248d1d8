//! Tests of the login throttle (kept apart so the module reads in one sitting).
use super::*;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

fn t(secs: f64) -> Timestamp {
    Timestamp((secs * 1000.0) as i64)
}

fn fail(th: &LoginThrottle, acct: &str, ip: IpAddr, at: f64) -> Vec<Burst> {
    th.reserve(acct, ip, t(at)).expect("allowed").failed(t(at))
}

#[test]
fn counts_from_other_nodes_raise_this_nodes_counters() {
    let th = LoginThrottle::new(ThrottleConfig::default());
    fail(&th, "bob", A, 0.0);
    fail(&th, "bob", A, 0.0);
    let [pair, source, account] = shared_keys("bob", A);
    // Other nodes saw 5 for the pair in all (this node's 2 among them).
    let shared = vec![
        (pair.clone(), 5, t(0.2)),
        (source, 5, t(0.2)),
        (account, 5, t(0.2)),
    ];
    th.merge_shared("bob", A, &shared, t(0.3));
    let r = th.reserve("bob", A, t(0.5)).err().expect("throttled");
    assert_eq!(r.scope, Scope::Pair);
    assert_eq!(r.retry_after_secs(), 1);
    // Lower shared counts never lower this node's; stale ones are ignored.
    th.merge_shared("bob", A, &[(pair.clone(), 1, t(0.2))], t(0.3));
    assert!(th.reserve("bob", A, t(0.5)).is_err());
    let fresh = LoginThrottle::new(ThrottleConfig::default());
    fresh.merge_shared("bob", A, &[(pair, 9, t(0.0))], t(16.0 * 60.0));
    assert!(fresh.reserve("bob", A, t(16.0 * 60.0)).is_ok());
    // Another source is untouched by the pair's count.
    assert!(th.reserve("bob", B, t(0.5)).is_ok());
}

#[test]
fn a_failure_stamped_after_this_requests_clock_does_not_refuse_it() {
    // Concurrent requests read the clock before awaiting the store; another one's failure
    // can land with a later stamp. Within every allowance that is no reason to refuse.
    let th = LoginThrottle::new(ThrottleConfig::default());
    fail(&th, "bob", A, 1.0);
    fail(&th, "bob", A, 1.0);
    assert!(th.reserve("bob", A, t(0.99)).is_ok());
}

#[test]
fn free_allowance_then_doubling_delays_capped() {
    let th = LoginThrottle::new(ThrottleConfig::default());
    for _ in 0..5 {
        fail(&th, "bob", A, 0.0);
    }
    let r = th.reserve("bob", A, t(0.5)).err().expect("throttled");
    assert_eq!(r.scope, Scope::Pair);
    assert!(!r.concurrent);
    assert_eq!(r.retry_after_secs(), 1);
    let e = refusal_error("bob", A, &r);
    assert!(
        e.to_string()
            .contains("too many wrong passwords for bob from 10.0.0.1"),
        "{e}"
    );
    assert!(
        crate::alerts::ALERTING.contains(&"auth.login_burst"),
        "bursts alert"
    );
    fail(&th, "bob", A, 1.0); // 6th: next delay 2 s
    assert!(th.reserve("bob", A, t(2.9)).is_err());
    fail(&th, "bob", A, 3.0); // 7th: 4 s
    let r = th.reserve("bob", A, t(3.0)).err().expect("throttled");
    assert_eq!(r.retry_after_secs(), 4);
    let mut now = 7.0;
    for _ in 0..20 {
        fail(&th, "bob", A, now);
        now += 60.0;
    }
    let r = th
        .reserve("bob", A, t(now - 60.0))
        .err()
        .expect("throttled");
    assert_eq!(r.retry_after_secs(), 60, "capped");
}

/// N concurrent reservations: only the free allowance is let through before any result.
#[test]
fn concurrent_attempts_are_counted_before_the_check() {
    let th = LoginThrottle::new(ThrottleConfig::default());
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        match th.reserve("bob", A, t(0.0)) {
            Ok(a) => held.push(a),
            Err(r) => {
                assert_eq!(r.scope, Scope::Pair);
                refused += 1;
            }
        }
    }
    assert_eq!(held.len(), 5);
    assert_eq!(refused, 95);
    let r = th.reserve("bob", A, t(0.0)).err().unwrap();
    assert!(r.concurrent);
    let e = refusal_error("bob", A, &r);
    assert_eq!(e.status().as_u16(), 429);
    assert_eq!(e.slug(), "login-throttled");
    assert!(e.to_string().contains("at once"), "{e}");
    for a in held {
        a.failed(t(0.1));
    }
    // Beyond the allowance: one check at a time.
    let one = th.reserve("bob", A, t(1.2)).expect("after the delay");
    assert!(th.reserve("bob", A, t(1.2)).is_err());
    drop(one); // not counted
    assert!(th.reserve("bob", A, t(1.2)).is_ok());
}

#[test]
fn another_source_is_never_locked_out_by_an_attacker() {
    let th = LoginThrottle::new(ThrottleConfig::default());
    let mut now = 0.0;
    // A distributed attack: many sources, all failing on bob.
    for i in 0..200u32 {
        let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        for _ in 0..3 {
            let _ = th.reserve("bob", ip, t(now)).map(|a| a.failed(t(now)));
        }
        now += 0.01;
    }
    // The responder at a fresh address is checked at once; after a typo they wait at most
    // the account cap (5 s), from their own last try, whatever the attackers do meanwhile.
    fail(&th, "bob", B, now);
    let r = th.reserve("bob", B, t(now)).err().expect("slowed");
    assert_eq!(r.scope, Scope::Account);
    assert!(r.retry_after <= Duration::from_secs(5), "{r:?}");
    for i in 0..50u32 {
        let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0c00_0000 + i));
        let _ = th
            .reserve("bob", ip, t(now + 1.0))
            .map(|a| a.failed(t(now + 1.0)));
    }
    th.reserve("bob", B, t(now + 5.0))
        .expect("after 5 s")
        .succeeded();
}

#[test]
fn one_source_across_accounts_is_capped() {
    let th = LoginThrottle::new(ThrottleConfig::default());
    for i in 0..20 {
        fail(&th, &format!("user{i}"), A, 0.0);
    }
    let r = th
        .reserve("fresh", A, t(0.0))
        .err()
        .expect("source throttled");
    assert_eq!(r.scope, Scope::Source);
    assert!(
        th.reserve("fresh", B, t(0.0)).is_ok(),
        "other sources unaffected"
    );
}

#[test]
fn success_clears_the_pair_but_not_the_source() {
    let th = LoginThrottle::new(ThrottleConfig::default());
    for _ in 0..5 {
        fail(&th, "bob", A, 0.0);
    }
    th.reserve("bob", A, t(1.0)).unwrap().succeeded();
    for _ in 0..5 {
        assert!(th.reserve("bob", A, t(1.0)).is_ok());
    }
    // Idle entries are forgotten.
    for _ in 0..5 {
        fail(&th, "eve", A, 2.0);
    }
    assert!(th.reserve("eve", A, t(2.5)).is_err());
    assert!(th.reserve("eve", A, t(2.0 + 15.0 * 60.0)).is_ok());
}

#[test]
fn bursts_are_reported_once_per_window() {
    let th = LoginThrottle::new(ThrottleConfig::default());
    let mut bursts = Vec::new();
    for _ in 0..50 {
        match th.reserve("bob", A, t(1.0)) {
            Ok(a) => bursts.extend(a.failed(t(1.0))),
            Err(r) => bursts.extend(r.bursts),
        }
    }
    assert_eq!(bursts.len(), 2, "{bursts:?}");
    assert!(
        bursts
            .iter()
            .any(|b| b.scope == "account" && b.account == "bob")
    );
    assert!(
        bursts
            .iter()
            .any(|b| b.scope == "source" && b.source == "10.0.0.1")
    );
    assert!(bursts.iter().all(|b| b.count == 10));
    // The next window reports again.
    let mut later = Vec::new();
    for _ in 0..10 {
        match th.reserve("bob", A, t(62.0)) {
            Ok(a) => later.extend(a.failed(t(62.0))),
            Err(r) => later.extend(r.bursts),
        }
    }
    assert_eq!(later.len(), 2, "{later:?}");
}

#[test]
fn state_is_bounded() {
    let th = LoginThrottle::new(ThrottleConfig {
        max_entries: 1000,
        ..ThrottleConfig::default()
    });
    for i in 0..20_000u32 {
        let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
        let _ = th
            .reserve(&format!("u{i}"), ip, t(f64::from(i) / 1000.0))
            .map(|a| a.failed(t(f64::from(i) / 1000.0)));
    }
    assert!(th.len() <= 1000, "{}", th.len());
}

#[test]
fn ipv6_sources_are_grouped_by_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(Source::of(a), Source::of(b));
    assert_ne!(Source::of(a), Source::of(c));
    assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(Source::of(mapped), Source::of(A));
}
