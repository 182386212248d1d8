//! `streams:` and `witness:`: what a valid file means, and every mistake at its line and column.

use super::*;

fn with(extra: &str) -> String {
    format!("{EXAMPLE}{extra}")
}

/// Line numbers below count from the end of EXAMPLE.
fn line(n: usize) -> usize {
    EXAMPLE.lines().count() + n
}

#[test]
fn a_valid_configuration_means_what_it_says() {
    let p = PolicySet::parse(&with(
        "streams:
  - name: siem
    kind: syslog
    host: siem.example.org
    ca_file: /etc/breakglass/siem-ca.pem
    facility: local3
  - { name: relay, kind: syslog, host: 127.0.0.1, tls: none, start: now, hostname: bg-1 }
  - { name: archive, kind: jsonl, path: /var/log/bg/audit.jsonl, max_size: 64KiB, keep: 3 }
witness:
  dir: /mnt/offsite/witness
  url: https://witness.example.org/cp
  secret_env: WITNESS_SECRET
",
    ))
    .unwrap();
    assert_eq!(p.streams.len(), 3);
    let StreamTarget::Syslog(s) = &p.streams[0].target else {
        panic!("{:?}", p.streams[0])
    };
    assert_eq!(
        (s.host.as_str(), s.port, s.tls),
        ("siem.example.org", 6514, true)
    );
    assert_eq!(s.ca_file.as_deref(), Some("/etc/breakglass/siem-ca.pem"));
    assert_eq!((s.facility, s.max_message), (19, DEFAULT_MAX_MESSAGE));
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(p.streams[0].start, StreamStart::Beginning);
    let StreamTarget::Syslog(r) = &p.streams[1].target else {
        panic!()
    };
    assert_eq!((r.port, r.tls, r.facility), (514, false, 13));
    assert_eq!(r.hostname.as_deref(), Some("bg-1"));
    assert_eq!(p.streams[1].start, StreamStart::Now);
    let StreamTarget::Jsonl(j) = &p.stream("archive").unwrap().target else {
        panic!()
    };
    assert_eq!((j.max_size, j.keep), (64 * 1024, 3));
    let w = p.witness.unwrap();
    assert_eq!(w.dir.as_deref(), Some("/mnt/offsite/witness"));
    assert_eq!(w.secret_env.as_deref(), Some("WITNESS_SECRET"));
    // The API view says where the trail goes.
    let p = PolicySet::parse(&with(
        "streams: [{ name: a, kind: jsonl, path: /tmp/a.jsonl }]\n",
    ))
    .unwrap();
    let v = p.to_json();
    assert_eq!(v["streams"][0]["max_size"], DEFAULT_MAX_SIZE);
    assert_eq!(v["streams"][0]["keep"], DEFAULT_KEEP);
    assert_eq!(v["witness"], serde_json::Value::Null);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("100MiB"), Some(100 << 20));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("1 GiB"), Some(1 << 30));
    for bad in [
        "",
        "MiB",
        "1.5MiB",
        "-1",
        "10MB",
        "1e6",
        "99999999999999999999",
    ] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn stream_mistakes_are_named_at_their_place() {
    let e = one_error_at(
        &with("streams:\n  - { name: siem, kind: sislog, host: x }\n"),
        line(2),
        "sislog",
        "stream #1 has unknown kind \"sislog\"",
    );
    assert!(e.hint.unwrap().starts_with("did you mean `syslog`?"));
    one_error_at(
        &with("streams:\n  - { name: siem, host: x }\n"),
        line(2),
        "{",
        "stream `siem` has no `kind`",
    );
    one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog }\n"),
        line(2),
        "{",
        "syslog stream `siem` has no `host`",
    );
    let e = one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: siem.example.org, tls: none }\n"),
        line(2),
        "none",
        "sends the audit trail unencrypted (`tls: none`) to \"siem.example.org\", which is not this host",
    );
    assert!(e.hint.unwrap().contains("127.0.0.1"));
    one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: x, tls: yes-please }\n"),
        line(2),
        "yes-please",
        "`tls` of syslog stream `siem` is \"yes-please\"",
    );
    one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: \"x:6514\" }\n"),
        line(2),
        "\"x:6514\"",
        "is not a host name or address",
    );
    one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: x, ca_file: ca.pem }\n"),
        line(2),
        "ca.pem",
        "`ca_file` of syslog stream `siem` must be an absolute path",
    );
    one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: x, facility: kernel }\n"),
        line(2),
        "kernel",
        "`facility` of syslog stream `siem` is \"kernel\"",
    );
    one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: x, port: 0 }\n"),
        line(2),
        "0 }",
        "`port` of syslog stream `siem` is 0",
    );
    one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: x, max_message: 10 }\n"),
        line(2),
        "10 }",
        "`max_message` of syslog stream `siem` is 10 bytes; it must be between 480",
    );
    let e = one_error_at(
        &with("streams:\n  - { name: siem, kind: syslog, host: x, cafile: /x }\n"),
        line(2),
        "cafile",
        "unknown field `cafile` in syslog stream `siem`",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `ca_file`?"));
    one_error_at(
        &with("streams:\n  - { name: a, kind: jsonl }\n"),
        line(2),
        "{",
        "jsonl stream `a` has no `path`",
    );
    one_error_at(
        &with("streams:\n  - { name: a, kind: jsonl, path: /x, max_size: 10MB }\n"),
        line(2),
        "10MB",
        "`max_size` of jsonl stream `a` is not a size",
    );
    one_error_at(
        &with("streams:\n  - { name: a, kind: jsonl, path: /x, keep: 0 }\n"),
        line(2),
        "0 }",
        "`keep` of jsonl stream `a` is 0",
    );
    one_error_at(
        &with("streams:\n  - { name: a, kind: jsonl, path: /x, start: yesterday }\n"),
        line(2),
        "yesterday",
        "`start` of jsonl stream `a` is \"yesterday\"",
    );
    one_error_at(
        &with(
            "streams:\n  - { name: a, kind: jsonl, path: /x }\n  - { name: a, kind: jsonl, path: /y }\n",
        ),
        line(3),
        "a,",
        "stream `a` is declared twice",
    );
    // Every problem of a stream at once.
    let e = errors(&with(
        "streams:\n  - { name: s, kind: syslog, host: x, ca_file: rel, timeout: 5, port: 99999 }\n",
    ));
    assert_eq!(e.len(), 3, "{e:#?}");
}

#[test]
fn witness_mistakes() {
    one_error_at(
        &with("witness:\n  secret_env: X\n"),
        line(2),
        "secret_env",
        "`witness` names no destination",
    );
    one_error_at(
        &with("witness:\n  dir: /w\n  secret_env: X\n"),
        line(2),
        "dir",
        "`witness` has a secret but no url",
    );
    one_error_at(
        &with("witness:\n  dir: relative/dir\n"),
        line(2),
        "relative",
        "`dir` of `witness` must be an absolute path",
    );
    one_error_at(
        &with("witness:\n  url: ftp://x\n"),
        line(2),
        "ftp",
        "`url` of `witness` is not an http(s) URL",
    );
    let e = one_error_at(
        &with("witness:\n  directory: /w\n"),
        line(2),
        "directory",
        "unknown field `directory` in `witness`",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `dir`?"));
}
