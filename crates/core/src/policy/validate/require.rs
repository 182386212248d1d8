//! The `require` section of a policy: MFA, ticket pattern, reason length, hours.

use super::super::Require;
use super::fields::REQUIRE_FIELDS;
use super::hours::hours;
use super::walker::{N, V, clip};
use regex::RegexBuilder;

/// Longest accepted ticket pattern, in bytes.
const MAX_PATTERN: usize = 512;
/// The server refuses reasons longer than this, so a higher minimum could never be met.
const MAX_REASON: u64 = 2000;

pub(super) fn require(v: &mut V, n: &N, label: &str) -> Option<Require> {
    let what = format!("`require` of {label}");
    let o = v.obj(n, &what, REQUIRE_FIELDS)?;
    let mut ok = true;
    let mfa = match o.get("mfa") {
        None => true,
        Some(m) => v
            .boolean(m, &format!("`require.mfa` of {label}"))
            .unwrap_or_else(|| {
                ok = false;
                true
            }),
    };
    let min_reason = match o.get("min_reason") {
        None => 0,
        Some(m) => match v.uint(m, &format!("`require.min_reason` of {label}"), MAX_REASON) {
            Some(x) => usize::try_from(x).unwrap_or(0),
            None => {
                ok = false;
                0
            }
        },
    };
    let mut ticket = None;
    if let Some(t) = o.get("ticket") {
        match v.string(t, &format!("`require.ticket` of {label}")) {
            None => ok = false,
            Some(src) if src.len() > MAX_PATTERN => {
                v.err_h(
                    &t.referenced,
                    format!(
                        "ticket pattern of {label} is {} bytes long; the limit is {MAX_PATTERN}",
                        src.len()
                    ),
                    "use a short regular expression such as ^INC-[0-9]+$",
                );
                ok = false;
            }
            Some(src) => match RegexBuilder::new(src)
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20)
                .nest_limit(32)
                .build()
            {
                Ok(re) => ticket = Some(re),
                Err(e) => {
                    let detail = e.to_string();
                    let detail = detail
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("error: "))
                        .map_or(detail.trim(), |l| l.trim_start_matches("error: "));
                    v.err_h(
                        &t.referenced,
                        format!("bad ticket pattern {:?} in {label}: {detail}", clip(src)),
                        "write a regular expression such as ^INC-[0-9]+$ (quote it in YAML)",
                    );
                    ok = false;
                }
            },
        }
    }
    let hours = match o.get("hours") {
        None => None,
        Some(h) => {
            let h = hours(v, h, &format!("`require.hours` of {label}"));
            ok &= h.is_some();
            h
        }
    };
    ok.then_some(Require {
        mfa,
        ticket,
        min_reason,
        hours,
    })
}
