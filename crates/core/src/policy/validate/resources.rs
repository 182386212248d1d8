//! `resources:` entries and the connection settings of each kind.

use super::super::yaml::Node;
use super::super::{Resource, ResourceKind};
use super::hints::did_you_mean;
use super::walker::{N, Names, Obj, V, clip, name_of};

pub(super) fn resource(v: &mut V, n: &N, index: usize, declared: &mut Names) -> Option<Resource> {
    let Node::Map(entries) = &n.value else {
        v.err_h(
            &n.referenced,
            format!(
                "resource #{} must be a mapping with `name` and `kind`, found {}",
                index + 1,
                n.value.describe()
            ),
            "- name: prod-db\n    kind: postgres",
        );
        return None;
    };
    // Resources keep every other field as connector settings: accept any string key here.
    let mut o = Obj {
        loc: n.referenced,
        entries: Vec::with_capacity(entries.len()),
        suggested: Vec::new(),
    };
    for (k, val) in entries {
        match &k.value {
            Node::Str(key) => o.entries.push((key.as_str(), k, val)),
            other => v.err(
                &k.referenced,
                format!(
                    "keys in resource #{} must be field names, found {}",
                    index + 1,
                    other.describe()
                ),
                None,
            ),
        }
    }
    let name = name_of(v, &o, "resource", index, declared);
    let label = match &name {
        Some(n) => format!("resource `{n}`"),
        None => format!("resource #{}", index + 1),
    };
    const KIND_HINT: &str = "kind is one of postgres, ssh, secret, exec";
    let kind = v.req(&o, "kind", &label, KIND_HINT).and_then(|k| {
        let s = v.string(k, &format!("the kind of {label}"))?;
        match s {
            "postgres" => Some(ResourceKind::Postgres),
            "ssh" => Some(ResourceKind::Ssh),
            "secret" => Some(ResourceKind::Secret),
            "exec" => Some(ResourceKind::Exec),
            other => {
                let hint = match did_you_mean(other, &["postgres", "ssh", "secret", "exec"]) {
                    Some(s) => format!("did you mean `{s}`? {KIND_HINT}"),
                    None => KIND_HINT.to_string(),
                };
                v.err(
                    &k.referenced,
                    format!("{label} has unknown kind {:?}", clip(other)),
                    Some(hint),
                );
                None
            }
        }
    });
    if let Some(kind) = kind {
        resource_settings(v, &o, kind, &label);
    }
    let settings = o
        .entries
        .iter()
        .filter(|(k, _, _)| *k != "name" && *k != "kind")
        .map(|(k, _, val)| (k.to_string(), val.value.to_json()))
        .collect();
    Some(Resource {
        name: name?,
        kind: kind?,
        settings,
    })
}

/// Type checks for the connection settings the connectors know; other fields pass through.
fn resource_settings(v: &mut V, o: &Obj<'_>, kind: ResourceKind, label: &str) {
    let what = |f: &str| format!("`{f}` of {label}");
    match kind {
        ResourceKind::Ssh => {
            if let Some(p) = o.get("principals") {
                let names = v.strings(p, &what("principals"), "principals: [root]");
                if names.is_empty() && matches!(&p.value, Node::Seq(_)) {
                    v.err_h(
                        &p.referenced,
                        format!("{} is empty", what("principals")),
                        "list the login names the certificate allows, e.g. principals: [root]",
                    );
                }
            }
        }
        ResourceKind::Postgres => {
            if let Some(u) = o.get("admin_url_env") {
                v.string(u, &what("admin_url_env"));
            }
            if let Some(r) = o.get("grant_roles") {
                v.strings(r, &what("grant_roles"), "grant_roles: [app_admin]");
            }
            if let Some(g) = o.get("gateway") {
                gateway(v, g, &what("gateway"));
            }
            if let Some(g) = o.get("glass_case") {
                v.boolean(g, &what("glass_case"));
            }
            if let Some(c) = o.get("connection_limit")
                && v.uint(c, &what("connection_limit"), 10_000) == Some(0)
            {
                v.err_h(
                    &c.referenced,
                    format!("{} is 0", what("connection_limit")),
                    "allow at least one connection",
                );
            }
        }
        ResourceKind::Exec => {
            for key in ["grant", "revoke"] {
                let example = format!("{key}: [\"/usr/local/bin/{key}-hook\"]");
                let Some(a) = v.req(o, key, label, &example) else {
                    continue;
                };
                let argv = v.strings(a, &what(key), &example);
                match argv.first() {
                    None if matches!(&a.value, Node::Seq(_)) => {
                        v.err_h(&a.referenced, format!("{} is empty", what(key)), &example)
                    }
                    Some((prog, item)) if !prog.starts_with('/') => v.err_h(
                        &item.referenced,
                        format!(
                            "{} must start with an absolute program path, found {:?}",
                            what(key),
                            clip(prog)
                        ),
                        &example,
                    ),
                    _ => {}
                }
            }
            if let Some(t) = o.get("timeout") {
                v.duration(t, &what("timeout"));
            }
        }
        ResourceKind::Secret => {}
    }
}

/// `gateway: { listen: "127.0.0.1:6432", host: db-gw.internal }`: where the statement-recording
/// gateway listens, and the host name put in the URLs it hands out (default: the listen address).
fn gateway(v: &mut V, g: &N, what: &str) {
    const EXAMPLE: &str = "gateway: { listen: \"127.0.0.1:6432\" }";
    let Some(o) = v.obj(g, what, &["listen", "host"]) else {
        return;
    };
    if let Some(l) = v.req(&o, "listen", what, EXAMPLE)
        && let Some(addr) = v.string(l, &format!("`listen` of {what}"))
        && addr.parse::<std::net::SocketAddr>().is_err()
    {
        v.err_h(
            &l.referenced,
            format!(
                "`listen` of {what} is not an IP address and port: {:?}",
                clip(addr)
            ),
            EXAMPLE,
        );
    }
    if let Some(h) = o.get("host")
        && let Some(host) = v.string(h, &format!("`host` of {what}"))
        && (host.is_empty() || host.len() > 253 || host.contains(['/', '@', ':', ' ']))
    {
        v.err_h(
            &h.referenced,
            format!("`host` of {what} is not a host name: {:?}", clip(host)),
            "host: db-gateway.internal",
        );
    }
}
