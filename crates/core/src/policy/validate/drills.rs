//! The `drills` section: the drill identity, its sinks and the drilled resources. Each drilled
//! resource must be declared, drilled once, on a schedule of at least a minute, and reachable
//! by the drill identity through a policy that names it in `who.users` and approves
//! automatically (quorum policies have no drill mode yet); the identity must not be an admin.

use super::super::drills::{DEFAULT_DRILL_TICKET, DEFAULT_VERIFY_WITHIN, DrillSchedule, Drills};
use super::super::{Admins, Approval, Policy};
use super::fields::{DRILL_RUN_FIELDS, DRILLS_FIELDS};
use super::hints::did_you_mean;
use super::sinks::notify_list;
use super::walker::{N, Names, V, clip, sorted_names, valid_name};
use std::time::Duration;

const EXAMPLE: &str = "drills: { identity: drill-bot, resources: [{ resource: prod-db, every: 24h, at: \"03:00\" }] }";

pub(super) struct Known<'a> {
    pub resources: &'a Names,
    pub sinks: &'a Names,
    pub policies: &'a [Policy],
    pub admins: &'a Admins,
}

pub(super) fn drills(v: &mut V, n: &N, k: &Known<'_>) -> Option<Drills> {
    let o = v.obj(n, "`drills`", DRILLS_FIELDS)?;
    let identity = v
        .req(&o, "identity", "`drills`", EXAMPLE)
        .and_then(|n| v.string(n, "`drills.identity`").map(|s| (s, n)));
    let identity = match identity {
        Some((s, n)) if !valid_name(s) => {
            v.err_h(
                &n.referenced,
                format!("bad drill identity name {:?}", clip(s)),
                "names use lower-case letters, digits, '.', '_' and '-', e.g. drill-bot",
            );
            None
        }
        Some((s, n)) if k.admins.users.iter().any(|u| u == s) => {
            v.err_h(
                &n.referenced,
                format!("the drill identity {s} is an admin"),
                "the drill identity must be a dedicated user that is no admin and no responder: pick a new name such as drill-bot",
            );
            None
        }
        Some((s, _)) => Some(s.to_string()),
        None => None,
    };
    let notify = o
        .get("notify")
        .map(|n| notify_list(v, n, "`drills.notify`", k.sinks))
        .unwrap_or_default();
    let mut runs = Vec::new();
    if let Some(list) = v
        .req(&o, "resources", "`drills`", EXAMPLE)
        .and_then(|n| v.list(n, "`drills.resources`", EXAMPLE))
    {
        for (i, r) in list.iter().enumerate() {
            if let Some(r) = run(v, r, i, identity.as_deref(), k, &runs) {
                runs.push(r);
            }
        }
    }
    Some(Drills {
        identity: identity?,
        notify,
        runs,
    })
}

fn run(
    v: &mut V,
    n: &N,
    i: usize,
    identity: Option<&str>,
    k: &Known<'_>,
    seen: &[DrillSchedule],
) -> Option<DrillSchedule> {
    let what = format!("drill #{}", i + 1);
    let o = v.obj(n, &what, DRILL_RUN_FIELDS)?;
    let example = "{ resource: prod-db, every: 24h }";
    let rn = v.req(&o, "resource", &what, example)?;
    let resource = v.string(rn, &format!("`resource` of {what}"))?;
    let mut ok = true;
    if !k.resources.contains_key(resource) {
        let hint = match did_you_mean(resource, &sorted_names(k.resources)) {
            Some(m) => format!("did you mean `{m}`?"),
            None => "drill a resource declared under resources:".into(),
        };
        v.err(
            &rn.referenced,
            format!("{what} refers to undeclared resource {:?}", clip(resource)),
            Some(hint),
        );
        ok = false;
    } else if seen.iter().any(|s| s.resource == resource) {
        v.err_h(
            &rn.referenced,
            format!("resource {resource} is drilled twice"),
            "give each resource one drill entry",
        );
        ok = false;
    }
    let every = v
        .req(&o, "every", &what, example)
        .and_then(|d| v.duration(d, &format!("`every` of {what}")).map(|x| (x, d)));
    let every = match every {
        Some((d, n)) if d < Duration::from_secs(60) => {
            v.err_h(
                &n.referenced,
                format!("`every` of {what} is shorter than a minute"),
                "drill at most once a minute, e.g. every: 24h",
            );
            None
        }
        Some((d, _)) => Some(d),
        None => None,
    };
    let at_minute = match o.get("at") {
        None => Some(0),
        Some(a) => v.string(a, &format!("`at` of {what}")).and_then(|s| {
            let m = hhmm(s);
            if m.is_none() {
                v.err_h(
                    &a.referenced,
                    format!("`at` of {what} is {:?}, not a time of day", clip(s)),
                    "write the UTC time as \"HH:MM\" in quotes, e.g. at: \"03:00\"",
                );
            }
            m
        }),
    };
    let verify_within = match o.get("verify_within") {
        None => Some(DEFAULT_VERIFY_WITHIN),
        Some(d) => v
            .duration(d, &format!("`verify_within` of {what}"))
            .and_then(|x| {
                if x > Duration::from_secs(600) || x.is_zero() {
                    v.err_h(
                        &d.referenced,
                        format!("`verify_within` of {what} must be between 1s and 10m"),
                        "the time a host needs to read the new KRL, e.g. verify_within: 2m",
                    );
                    None
                } else {
                    Some(x)
                }
            }),
    };
    let ticket = match o.get("ticket") {
        None => Some(DEFAULT_DRILL_TICKET.to_string()),
        Some(t) => v
            .string(t, &format!("`ticket` of {what}"))
            .map(String::from),
    };
    if ok && let (Some(id), Some(t)) = (identity, ticket.as_deref()) {
        ok = reachable(v, rn, resource, id, t, k);
    }
    if !ok {
        return None;
    }
    Some(DrillSchedule {
        resource: resource.to_string(),
        every: every?,
        at_minute: at_minute?,
        verify_within: verify_within?,
        ticket: ticket?,
    })
}

/// The drill identity may break glass on `resource` under a policy naming it that approves
/// automatically and accepts the drill's ticket.
fn reachable(v: &mut V, at: &N, resource: &str, id: &str, ticket: &str, k: &Known<'_>) -> bool {
    let naming: Vec<&Policy> = k
        .policies
        .iter()
        .filter(|p| {
            p.resources.iter().any(|r| r == resource) && p.who.users.iter().any(|u| u == id)
        })
        .collect();
    let Some(p) = naming.first() else {
        v.err_h(
            &at.referenced,
            format!("the drill identity {id} may not break glass on {resource}: no policy covering it names {id} in who.users"),
            &format!("add a policy for the drill: resources: [{resource}], who: {{ users: [{id}] }}, approval: {{ mode: auto }}"),
        );
        return false;
    };
    if p.approval != Approval::Auto {
        v.err_h(
            &at.referenced,
            format!("policy {} gives the drill identity {id} {resource} only with approval", p.name),
            "drills need a policy that approves the drill identity automatically (quorum drill mode is not supported): give the drill its own policy with approval: { mode: auto }",
        );
        return false;
    }
    if let Some(re) = &p.require.ticket
        && !re.is_match(ticket)
    {
        v.err_h(
            &at.referenced,
            format!(
                "the drill's ticket {:?} does not match policy {}'s ticket pattern {}",
                clip(ticket),
                p.name,
                re.as_str()
            ),
            "set `ticket:` in the drill entry to a ticket the pattern accepts, e.g. ticket: INC-0",
        );
        return false;
    }
    true
}

/// `HH:MM` → minutes after midnight.
fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::policy::PolicySet;

    const BASE: &str = r#"
admins: { groups: [security] }
resources:
  - { name: db, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
  - { name: web, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
policies:
  - name: drill
    resources: [db]
    who: { users: [drill-bot] }
    require: { mfa: true, ticket: "^INC-" }
    approval: { mode: auto }
    duration: { default: 10m, max: 1h }
  - name: web-quorum
    resources: [web]
    who: { users: [drill-bot] }
    approval: { mode: quorum, count: 1, from: [security] }
    duration: { default: 10m, max: 1h }
"#;

    fn errors(drills: &str) -> String {
        match PolicySet::parse(&format!("{BASE}{drills}")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_drill_parses() {
        let p = PolicySet::parse(&format!(
            "{BASE}drills:\n  identity: drill-bot\n  resources:\n    - {{ resource: db, every: 24h, at: \"03:00\", ticket: INC-0 }}\n"
        ))
        .unwrap();
        let d = p.drills.unwrap();
        assert_eq!(d.identity, "drill-bot");
        assert_eq!(d.runs[0].at_minute, 180);
        assert_eq!(d.runs[0].every.as_secs(), 86_400);
    }

    #[test]
    fn every_problem_is_reported_with_its_position_and_a_hint() {
        let e = errors(
            "drills:\n  identity: drill-bot\n  resources:\n    - { resource: dbb, every: 24h }\n    - { resource: db, every: 10s, at: \"25:00\", ticket: INC-0 }\n    - { resource: web, every: 1h }\n",
        );
        assert!(
            e.contains("line 21")
                && e.contains("undeclared resource \"dbb\"")
                && e.contains("did you mean `db`"),
            "{e}"
        );
        assert!(e.contains("shorter than a minute"), "{e}");
        assert!(e.contains("not a time of day"), "{e}");
        assert!(e.contains("only with approval"), "{e}");
        let e = errors(
            "drills:\n  identity: drill-bot\n  resources:\n    - { resource: db, every: 1h }\n",
        );
        assert!(e.contains("ticket \"DRILL\" does not match"), "{e}");
        let e = errors(
            "drills:\n  identity: nobody\n  resources:\n    - { resource: db, every: 1h, ticket: INC-1 }\n",
        );
        assert!(e.contains("no policy covering it names nobody"), "{e}");
    }
}
