//! `streams:` entries (the audit trail to a SIEM) and the `witness:` mapping.

use super::super::streams::{
    FACILITIES, FACILITY_AUDIT, JsonlTarget, Stream, StreamStart, StreamTarget, SyslogTarget,
    Witness,
};
use super::super::yaml::Node;
use super::fields::{JSONL_FIELDS, SYSLOG_FIELDS, WITNESS_FIELDS};
use super::hints::did_you_mean;
use super::walker::{N, Names, Obj, V, clip, name_of, peek_name};
use std::time::Duration;

const KIND_HINT: &str = "kind is syslog (RFC 5424 over TLS) or jsonl (a file of JSON lines)";
const SIZE_HINT: &str =
    "sizes are a number of bytes, or a number with KiB, MiB or GiB (e.g. 100MiB)";
/// Default rotation size of a JSON-lines stream.
pub const DEFAULT_MAX_SIZE: u64 = 100 * 1024 * 1024;
/// Default number of rotated files kept.
pub const DEFAULT_KEEP: u32 = 10;
/// Default longest syslog message.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// `100MiB`, `64KiB`, `1GiB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        .iter()
        .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n.trim_end(), *m)))
        .unwrap_or((s, 1));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 15 {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn kind_of(n: &N) -> Option<(&str, &N)> {
    let Node::Map(entries) = &n.value else {
        return None;
    };
    entries
        .iter()
        .find_map(|(k, val)| match (&k.value, &val.value) {
            (Node::Str(k), Node::Str(s)) if k == "kind" => Some((s.as_str(), val)),
            _ => None,
        })
}

pub(super) fn stream(v: &mut V, n: &N, index: usize, seen: &mut Names) -> Option<Stream> {
    let kind = match kind_of(n) {
        Some((k @ ("syslog" | "jsonl"), _)) => k,
        Some((other, at)) => {
            if let Some(name) = peek_name(n) {
                seen.entry(name.to_string()).or_insert(n.referenced);
            }
            let hint = match did_you_mean(other, &["syslog", "jsonl"]) {
                Some(s) => format!("did you mean `{s}`? {KIND_HINT}"),
                None => KIND_HINT.to_string(),
            };
            v.err(
                &at.referenced,
                format!("stream #{} has unknown kind {:?}", index + 1, clip(other)),
                Some(hint),
            );
            return None;
        }
        None => {
            let label = peek_name(n).map_or(format!("stream #{}", index + 1), |s| {
                format!("stream `{}`", clip(s))
            });
            v.err_h(&n.referenced, format!("{label} has no `kind`"), KIND_HINT);
            return None;
        }
    };
    let label = peek_name(n).map_or(format!("{kind} stream #{}", index + 1), |s| {
        format!("{kind} stream `{}`", clip(s))
    });
    let fields = if kind == "syslog" {
        SYSLOG_FIELDS
    } else {
        JSONL_FIELDS
    };
    let o = v.obj(n, &label, fields)?;
    let name = name_of(v, &o, "stream", index, seen);
    let start = match o.get("start") {
        None => Some(StreamStart::Beginning),
        Some(s) => match v.string(s, &format!("`start` of {label}")) {
            Some("beginning") => Some(StreamStart::Beginning),
            Some("now") => Some(StreamStart::Now),
            Some(other) => {
                v.err_h(
                    &s.referenced,
                    format!("`start` of {label} is {:?}", clip(other)),
                    "start is beginning (the whole trail, the default) or now (events after the stream was added)",
                );
                None
            }
            None => None,
        },
    };
    let target = if kind == "syslog" {
        syslog(v, &o, &label).map(StreamTarget::Syslog)
    } else {
        jsonl(v, &o, &label).map(StreamTarget::Jsonl)
    };
    Some(Stream {
        name: name?,
        start: start?,
        target: target?,
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A string field that must be an absolute path.
fn abs_path(v: &mut V, o: &Obj<'_>, key: &str, label: &str) -> Option<String> {
    let n = o.get(key)?;
    let s = v.string(n, &format!("`{key}` of {label}"))?;
    if !s.starts_with('/') {
        v.err_h(
            &n.referenced,
            format!(
                "`{key}` of {label} must be an absolute path, found {:?}",
                clip(s)
            ),
            "write the full path, e.g. /etc/breakglass/siem-ca.pem",
        );
        return None;
    }
    Some(s.to_string())
}

/// A host name or address: no spaces, no scheme, no port.
fn host(v: &mut V, n: &N, what: &str) -> Option<String> {
    let s = v.string(n, what)?;
    let bad = s.is_empty()
        || s.len() > 253
        || s.contains("://")
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/');
    let has_port = s.parse::<std::net::IpAddr>().is_err() && s.contains(':');
    if bad || has_port {
        v.err_h(
            &n.referenced,
            format!("{what} is not a host name or address: {:?}", clip(s)),
            "write the host alone (siem.example.org or 10.0.0.5) and the port under `port:`",
        );
        return None;
    }
    Some(s.to_string())
}

fn syslog(v: &mut V, o: &Obj<'_>, label: &str) -> Option<SyslogTarget> {
    let what = |f: &str| format!("`{f}` of {label}");
    let host = v
        .req(o, "host", label, "host: siem.example.org")
        .and_then(|h| host(v, h, &what("host")));
    let tls = match o.get("tls") {
        None => Some(true),
        Some(t) => match v.string(t, &what("tls")) {
            Some("required") => Some(true),
            Some("none") => {
                if let Some(h) = &host
                    && !is_loopback(h)
                {
                    v.err_h(
                        &t.referenced,
                        format!("{label} sends the audit trail unencrypted (`tls: none`) to {:?}, which is not this host", clip(h)),
                        "tls: none is only for a relay on this host (127.0.0.1, ::1 or localhost); use tls: required (the default) with ca_file",
                    );
                    None
                } else {
                    Some(false)
                }
            }
            Some(other) => {
                v.err_h(
                    &t.referenced,
                    format!("{} is {:?}", what("tls"), clip(other)),
                    "tls is required (the default: RFC 5425) or none (plain TCP to a relay on this host)",
                );
                None
            }
            None => None,
        },
    };
    let port = match o.get("port") {
        Some(p) => match v.uint(p, &what("port"), 65_535) {
            Some(0) => {
                v.err_h(
                    &p.referenced,
                    format!("{} is 0", what("port")),
                    "syslog over TLS is port 6514",
                );
                None
            }
            Some(p) => u16::try_from(p).ok(),
            None => None,
        },
        None => Some(if tls == Some(false) { 514 } else { 6514 }),
    };
    let ca_file = abs_path(v, o, "ca_file", label);
    if tls == Some(false) && o.get("ca_file").is_some() {
        v.err_h(
            &o.key("ca_file").map(|k| k.referenced).unwrap_or(o.loc),
            format!("{label} has `ca_file` but `tls: none`"),
            "remove ca_file, or use tls: required",
        );
    }
    let server_name = o
        .get("server_name")
        .and_then(|n| self::host(v, n, &what("server_name")));
    // Some(None): not given; None: given but wrong (reported).
    let hostname = match o.get("hostname") {
        None => Some(None),
        Some(n) => match v.string(n, &what("hostname")) {
            Some(s)
                if !s.is_empty()
                    && s.len() <= 255
                    && s.bytes().all(|b| (33..=126).contains(&b)) =>
            {
                Some(Some(s.to_string()))
            }
            Some(_) => {
                v.err_h(
                    &n.referenced,
                    format!(
                        "{} must be 1 to 255 printable ASCII characters without spaces",
                        what("hostname")
                    ),
                    "e.g. hostname: bg-prod-1 (RFC 5424 HOSTNAME)",
                );
                None
            }
            None => None,
        },
    };
    let facility = match o.get("facility") {
        None => Some(FACILITY_AUDIT),
        Some(n) => {
            let s = v.string(n, &what("facility"));
            match s.and_then(|s| FACILITIES.iter().find(|(f, _)| *f == s)) {
                Some((_, code)) => Some(*code),
                None => {
                    let names: Vec<&str> = FACILITIES.iter().map(|(f, _)| *f).collect();
                    if let Some(s) = s {
                        v.err(
                            &n.referenced,
                            format!("{} is {:?}", what("facility"), clip(s)),
                            Some(format!("facility is one of {}", names.join(", "))),
                        );
                    }
                    None
                }
            }
        }
    };
    let timeout = match o.get("timeout") {
        None => Some(Duration::from_secs(10)),
        Some(t) => v.duration(t, &what("timeout")).filter(|d| {
            let ok = !d.is_zero();
            if !ok {
                v.err_h(
                    &t.referenced,
                    format!("{} is 0", what("timeout")),
                    "e.g. timeout: 10s",
                );
            }
            ok
        }),
    };
    let max_message = match o.get("max_message") {
        None => Some(DEFAULT_MAX_MESSAGE),
        Some(m) => {
            size(v, m, &what("max_message"), 480, 16 << 20).and_then(|s| usize::try_from(s).ok())
        }
    };
    Some(SyslogTarget {
        host: host?,
        port: port?,
        tls: tls?,
        ca_file,
        server_name,
        hostname: hostname?,
        facility: facility?,
        timeout: timeout?,
        max_message: max_message?,
    })
}

/// A size between `min` and `max` bytes.
fn size(v: &mut V, n: &N, what: &str, min: u64, max: u64) -> Option<u64> {
    let s = match &n.value {
        Node::Int(i) => u64::try_from(*i).ok(),
        Node::Str(s) => parse_size(s),
        _ => None,
    };
    match s {
        Some(s) if (min..=max).contains(&s) => Some(s),
        Some(s) => {
            v.err(
                &n.referenced,
                format!("{what} is {s} bytes; it must be between {min} and {max}"),
                None,
            );
            None
        }
        None => {
            v.err_h(&n.referenced, format!("{what} is not a size"), SIZE_HINT);
            None
        }
    }
}

fn jsonl(v: &mut V, o: &Obj<'_>, label: &str) -> Option<JsonlTarget> {
    let what = |f: &str| format!("`{f}` of {label}");
    if o.get("path").is_none() {
        v.req(o, "path", label, "path: /var/log/breakglass/audit.jsonl");
    }
    let path = abs_path(v, o, "path", label);
    let max_size = match o.get("max_size") {
        None => Some(DEFAULT_MAX_SIZE),
        Some(m) => size(v, m, &what("max_size"), 4096, 1 << 40),
    };
    let keep = match o.get("keep") {
        None => Some(DEFAULT_KEEP),
        Some(k) => match v.uint(k, &what("keep"), 1000) {
            Some(0) => {
                v.err_h(
                    &k.referenced,
                    format!("{} is 0", what("keep")),
                    "keep at least 1 rotated file (a file is rotated only by renaming it)",
                );
                None
            }
            Some(k) => u32::try_from(k).ok(),
            None => None,
        },
    };
    Some(JsonlTarget {
        path: path?,
        max_size: max_size?,
        keep: keep?,
    })
}

pub(super) fn witness(v: &mut V, n: &N) -> Option<Witness> {
    let before = v.errs.len();
    let o = v.obj(n, "`witness`", WITNESS_FIELDS)?;
    let label = "`witness`";
    let dir = abs_path(v, &o, "dir", label);
    let url = match o.get("url") {
        None => None,
        Some(u) => {
            let s = v.string(u, "`url` of `witness`")?;
            if !(s.starts_with("https://") || s.starts_with("http://")) {
                v.err_h(
                    &u.referenced,
                    format!("`url` of `witness` is not an http(s) URL: {:?}", clip(s)),
                    "e.g. url: https://witness.example.org/checkpoints",
                );
                None
            } else {
                Some(s.to_string())
            }
        }
    };
    let mut string = |key: &str| {
        o.get(key)
            .and_then(|n| v.string(n, &format!("`{key}` of `witness`")))
            .map(String::from)
    };
    let secret_env = string("secret_env");
    let secret_file = string("secret_file");
    let timeout = o
        .get("timeout")
        .and_then(|t| v.duration(t, "`timeout` of `witness`"));
    if v.errs.len() > before {
        return None;
    }
    if dir.is_none() && url.is_none() {
        v.err_h(
            &o.loc,
            "`witness` names no destination",
            "give dir: (a directory on another volume) and/or url: (a webhook)",
        );
        return None;
    }
    if url.is_none() && (secret_env.is_some() || secret_file.is_some()) {
        v.err_h(
            &o.loc,
            "`witness` has a secret but no url",
            "the secret signs webhook deliveries: add url:, or remove the secret",
        );
        return None;
    }
    Some(Witness {
        dir,
        url,
        secret_env,
        secret_file,
        timeout,
    })
}
