//! The `approval` section of a policy: auto, quorum or deny.

use super::super::yaml::Node;
use super::super::{Approval, OnTimeout};
use super::fields::APPROVAL_FIELDS;
use super::hints::did_you_mean;
use super::walker::{N, V, clip};

/// Largest approval quorum.
const MAX_QUORUM: u64 = 100;

pub(super) fn approval(v: &mut V, n: &N, label: &str) -> Option<Approval> {
    let what = format!("`approval` of {label}");
    let o = v.obj(n, &what, APPROVAL_FIELDS)?;
    const MODE_HINT: &str =
        "mode is auto (access now, review after), quorum (N approvals from named groups) or deny";
    let mode_node = v.req(&o, "mode", &what, MODE_HINT)?;
    let mode = v.string(mode_node, &format!("`approval.mode` of {label}"))?;
    let quorum_only = |v: &mut V, mode: &str| {
        for key in ["count", "from", "timeout", "on_timeout"] {
            if let Some(k) = o.get(key).and(o.key(key)) {
                v.err_h(
                    &k.referenced,
                    format!("`approval.{key}` of {label} only applies to mode quorum, not {mode}"),
                    "remove it, or use mode: quorum",
                );
            }
        }
    };
    match mode {
        "auto" => {
            quorum_only(v, "auto");
            Some(Approval::Auto)
        }
        "deny" => {
            quorum_only(v, "deny");
            Some(Approval::Deny)
        }
        "quorum" => {
            const EXAMPLE: &str = "approval: { mode: quorum, count: 1, from: [security] }";
            let mut ok = true;
            let count = match v.req(&o, "count", &format!("quorum {what}"), EXAMPLE) {
                None => None,
                Some(c) => match c.value {
                    Node::Int(i) if i > i128::from(MAX_QUORUM) => {
                        v.err_h(
                            &c.referenced,
                            format!(
                                "`approval.count` of {label} is {i}; the limit is {MAX_QUORUM}"
                            ),
                            "a quorum is a handful of people",
                        );
                        None
                    }
                    _ => match v.uint(c, &format!("`approval.count` of {label}"), MAX_QUORUM) {
                        Some(0) => {
                            v.err_h(
                                &c.referenced,
                                format!("`approval.count` of {label} is 0; a quorum needs at least 1 approval"),
                                "use count: 1 or more, or mode: auto",
                            );
                            None
                        }
                        x => x.and_then(|x| u32::try_from(x).ok()),
                    },
                },
            };
            let from = match v.req(&o, "from", &format!("quorum {what}"), EXAMPLE) {
                None => Vec::new(),
                Some(f) => {
                    let groups = v.names(
                        f,
                        &format!("`approval.from` of {label}"),
                        "from: [security]",
                    );
                    if groups.is_empty() && matches!(&f.value, Node::Seq(_)) {
                        v.err_h(
                            &f.referenced,
                            format!("`approval.from` of {label} names no groups"),
                            "from: [security]",
                        );
                    }
                    groups
                }
            };
            if from.is_empty() {
                ok = false;
            }
            let timeout = match o.get("timeout") {
                None => None,
                Some(t) => {
                    let d = v.duration(t, &format!("`approval.timeout` of {label}"));
                    ok &= d.is_some();
                    d
                }
            };
            let on_timeout = match o.get("on_timeout") {
                None => OnTimeout::Deny,
                Some(t) => {
                    let r = match v.string(t, &format!("`approval.on_timeout` of {label}")) {
                        Some("deny") => Some(OnTimeout::Deny),
                        Some("auto") => Some(OnTimeout::Auto),
                        Some(other) => {
                            v.err_h(
                                &t.referenced,
                                format!("`approval.on_timeout` of {label} is {:?}", clip(other)),
                                "on_timeout is deny (the default) or auto",
                            );
                            None
                        }
                        None => None,
                    };
                    if r.is_some() && o.get("timeout").is_none() {
                        v.err_h(
                            &t.referenced,
                            format!(
                                "`approval.on_timeout` of {label} has no effect without `timeout`"
                            ),
                            "add timeout: 10m, or remove on_timeout",
                        );
                        ok = false;
                    }
                    ok &= r.is_some();
                    r.unwrap_or(OnTimeout::Deny)
                }
            };
            let count = count?;
            ok.then_some(Approval::Quorum {
                count,
                from,
                timeout,
                on_timeout,
            })
        }
        other => {
            let hint = match did_you_mean(other, &["auto", "quorum", "deny"]) {
                Some(m) => format!("did you mean `{m}`? {MODE_HINT}"),
                None => MODE_HINT.to_string(),
            };
            v.err(
                &mode_node.referenced,
                format!("unknown approval mode {:?} in {label}", clip(other)),
                Some(hint),
            );
            None
        }
    }
}
