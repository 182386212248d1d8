//! `policies:` entries: what they cover, who may ask, and for how long; `require` and
//! `approval` have their own modules.

use super::super::yaml::Node;
use super::super::{Durations, MAX_GRANT, Policy, Require, Review, Who, fmt_d};
use super::approval::approval;
use super::fields::{DURATION_FIELDS, POLICY_FIELDS, REVIEW_FIELDS, WHO_FIELDS};
use super::hints::did_you_mean;
use super::require::require;
use super::sinks::notify_list;
use super::walker::{N, Names, V, clip, name_of, peek_name, sorted_names};

pub(super) fn policy(
    v: &mut V,
    n: &N,
    index: usize,
    resources: &Names,
    sinks: &Names,
    seen: &mut Names,
) -> Option<Policy> {
    let label = peek_name(n).map_or(format!("policy #{}", index + 1), |s| {
        format!("policy `{}`", clip(s))
    });
    let o = v.obj(n, &label, POLICY_FIELDS)?;
    let name = name_of(v, &o, "policy", index, seen);

    // resources
    let mut res: Vec<String> = Vec::new();
    if let Some(r) = v.req(
        &o,
        "resources",
        &label,
        "list the resources it covers, e.g. resources: [prod-db]",
    ) {
        let list = v.strings(
            r,
            &format!("`resources` of {label}"),
            "resources: [prod-db]",
        );
        if list.is_empty() && matches!(&r.value, Node::Seq(_)) {
            v.err_h(
                &r.referenced,
                format!("{label} lists no resources"),
                "resources: [prod-db]",
            );
        }
        for (s, item) in list {
            if !resources.contains_key(s) {
                let hint = match did_you_mean(s, &sorted_names(resources)) {
                    Some(m) => format!("declare it under resources: (or did you mean `{m}`?)"),
                    None => "declare it under resources:".to_string(),
                };
                v.err(
                    &item.referenced,
                    format!("{label} refers to undeclared resource {:?}", clip(s)),
                    Some(hint),
                );
            } else if !res.iter().any(|x| x == s) {
                res.push(s.to_string());
            }
        }
    }

    // who
    let who = v
        .req(&o, "who", &label, "who: { groups: [oncall] }")
        .and_then(|w| {
            let what = format!("`who` of {label}");
            let before = v.errs.len();
            let wo = v.obj(w, &what, WHO_FIELDS)?;
            let users = wo
                .get("users")
                .map(|n| v.names(n, &format!("`who.users` of {label}"), "users: [alice]"))
                .unwrap_or_default();
            let groups = wo
                .get("groups")
                .map(|n| v.names(n, &format!("`who.groups` of {label}"), "groups: [oncall]"))
                .unwrap_or_default();
            if users.is_empty() && groups.is_empty() {
                if v.errs.len() > before {
                    return None;
                }
                v.err_h(
                    &w.referenced,
                    format!("{what} names no users or groups"),
                    "who: { groups: [oncall] } or who: { users: [alice] }",
                );
                return None;
            }
            Some(Who { users, groups })
        });

    // require
    let require = match o.get("require") {
        None => Some(Require {
            mfa: true,
            ticket: None,
            min_reason: 0,
            hours: None,
        }),
        Some(r) => require(v, r, &label),
    };

    let approval = v
        .req(
            &o,
            "approval",
            &label,
            "approval: { mode: auto } (or quorum, or deny)",
        )
        .and_then(|a| approval(v, a, &label));

    let duration = v
        .req(
            &o,
            "duration",
            &label,
            "duration: { default: 30m, max: 2h }",
        )
        .and_then(|d| durations(v, d, &label));

    let review = match o.get("review") {
        None => Some(None),
        Some(r) => review(v, r, &label).map(Some),
    };

    let notify = o
        .get("notify")
        .map(|n| notify_list(v, n, &format!("`notify` of {label}"), sinks))
        .unwrap_or_default();

    Some(Policy {
        name: name?,
        resources: res,
        who: who?,
        require: require?,
        approval: approval?,
        duration: duration?,
        review: review?,
        notify,
    })
}

fn durations(v: &mut V, n: &N, label: &str) -> Option<Durations> {
    let what = format!("`duration` of {label}");
    let o = v.obj(n, &what, DURATION_FIELDS)?;
    const EXAMPLE: &str = "duration: { default: 30m, max: 2h }";
    let dn = v.req(&o, "default", &what, EXAMPLE);
    let mn = v.req(&o, "max", &what, EXAMPLE);
    let default = dn.and_then(|d| v.duration(d, &format!("`duration.default` of {label}")));
    let max = mn.and_then(|m| v.duration(m, &format!("`duration.max` of {label}")));
    let (Some(default), Some(max), Some(mn)) = (default, max, mn) else {
        return None;
    };
    let mut ok = true;
    if max > MAX_GRANT {
        v.err_h(
            &mn.referenced,
            format!(
                "`duration.max` of {label} is {}; no grant may be longer than {}",
                fmt_d(max),
                fmt_d(MAX_GRANT)
            ),
            "break-glass access is for emergencies: keep it short and extend if needed",
        );
        ok = false;
    }
    if max < default {
        v.err_h(
            &mn.referenced,
            format!(
                "`duration.max` of {label} ({}) is less than duration.default ({})",
                fmt_d(max),
                fmt_d(default)
            ),
            "max must be at least default",
        );
        ok = false;
    }
    ok.then_some(Durations { default, max })
}

fn review(v: &mut V, n: &N, label: &str) -> Option<Review> {
    let what = format!("`review` of {label}");
    let o = v.obj(n, &what, REVIEW_FIELDS)?;
    const EXAMPLE: &str = "review: { within: 72h, by: [security] }";
    let within = v
        .req(&o, "within", &what, EXAMPLE)
        .and_then(|w| v.duration(w, &format!("`review.within` of {label}")));
    let by = match v.req(&o, "by", &what, EXAMPLE) {
        None => Vec::new(),
        Some(b) => {
            let groups = v.names(b, &format!("`review.by` of {label}"), "by: [security]");
            if groups.is_empty() && matches!(&b.value, Node::Seq(_)) {
                v.err_h(
                    &b.referenced,
                    format!("`review.by` of {label} names no groups"),
                    "by: [security]",
                );
            }
            groups
        }
    };
    if by.is_empty() {
        return None;
    }
    Some(Review {
        within: within?,
        by,
    })
}
