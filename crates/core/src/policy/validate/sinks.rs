//! `sinks:` entries and the `notify` lists that refer to them.

use super::super::yaml::Node;
use super::super::{Sink, SinkKind};
use super::fields::sink_fields;
use super::hints::did_you_mean;
use super::walker::{N, Names, V, clip, name_of, peek_name, sorted_names};

pub(super) fn sink(v: &mut V, n: &N, index: usize, seen: &mut Names) -> Option<Sink> {
    const KIND_HINT: &str = "kind is one of webhook, slack, pagerduty, email";
    let kind = match &n.value {
        Node::Map(entries) => entries
            .iter()
            .find_map(|(k, val)| match (&k.value, &val.value) {
                (Node::Str(k), Node::Str(s)) if k == "kind" => Some((s.as_str(), val)),
                _ => None,
            }),
        _ => None,
    };
    let kind = match kind {
        Some(("webhook", _)) => SinkKind::Webhook,
        Some(("slack", _)) => SinkKind::Slack,
        Some(("pagerduty", _)) => SinkKind::Pagerduty,
        Some(("email", _)) => SinkKind::Email,
        Some((other, at)) => {
            // Keep the name known so that references to it are not reported as well.
            if let Some(name) = peek_name(n) {
                seen.entry(name.to_string()).or_insert(n.referenced);
            }
            v.err_h(
                &at.referenced,
                format!("sink #{} has unknown kind {:?}", index + 1, clip(other)),
                KIND_HINT,
            );
            return None;
        }
        None => {
            let label = peek_name(n).map_or(format!("sink #{}", index + 1), |s| {
                format!("sink `{}`", clip(s))
            });
            v.err_h(&n.referenced, format!("{label} has no `kind`"), KIND_HINT);
            return None;
        }
    };
    let label = peek_name(n).map_or(format!("{} sink #{}", kind.as_str(), index + 1), |s| {
        format!("{} sink `{}`", kind.as_str(), clip(s))
    });
    let o = v.obj(n, &label, sink_fields(kind))?;
    let name = name_of(v, &o, "sink", index, seen);
    let has = |k: &str| match o.get(k).map(|n| &n.value) {
        Some(Node::Str(s)) => !s.is_empty(),
        Some(Node::Seq(items)) => !items.is_empty(),
        _ => false,
    };
    let ok = match kind {
        SinkKind::Webhook => {
            (has("url") || has("url_env")) && (has("secret_env") || has("secret_file"))
        }
        SinkKind::Slack => has("url_env") || has("url_file"),
        SinkKind::Pagerduty => has("routing_key_env") || has("routing_key_file"),
        SinkKind::Email => has("host") && has("from") && has("to"),
    };
    if !ok {
        v.err_h(
            &o.loc,
            format!("{label} is missing its destination or secret"),
            match kind {
                SinkKind::Webhook => "webhook sinks need url (or url_env) and secret_env (or secret_file) for the HMAC signature",
                SinkKind::Slack => "slack sinks need url_env or url_file (the incoming-webhook URL is a secret)",
                SinkKind::Pagerduty => "pagerduty sinks need routing_key_env or routing_key_file",
                SinkKind::Email => "email sinks need host, from and to",
            },
        );
    }
    if let Some(t) = o.get("tls")
        && let Some(s) = v.string(t, &format!("`tls` of {label}"))
        && s != "starttls"
        && s != "none"
    {
        v.err_h(
            &t.referenced,
            format!("`tls` of {label} is {:?}", clip(s)),
            "tls is starttls (the default) or none",
        );
    }
    if let Some(p) = o.get("port") {
        v.uint(p, &format!("`port` of {label}"), 65_535);
    }
    if let Some(t) = o.get("timeout") {
        v.duration(t, &format!("`timeout` of {label}"));
    }
    let settings = o
        .entries
        .iter()
        .filter(|(k, _, _)| *k != "name" && *k != "kind")
        .map(|(k, _, val)| (k.to_string(), val.value.to_json()))
        .collect();
    Some(Sink {
        name: name?,
        kind,
        settings,
    })
}

pub(super) fn notify_list(v: &mut V, n: &N, what: &str, sinks: &Names) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (s, item) in v.strings(n, what, "notify: [sec-hook]") {
        if !sinks.contains_key(s) {
            let hint = match did_you_mean(s, &sorted_names(sinks)) {
                Some(m) => format!("declare it under sinks: (or did you mean `{m}`?)"),
                None => "declare it under sinks:".to_string(),
            };
            v.err(
                &item.referenced,
                format!("{what} refers to undeclared sink {:?}", clip(s)),
                Some(hint),
            );
        } else if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    out
}
