//! The recorder over realistic sequences: simple queries, an error inside a transaction, the
//! extended protocol with parameters, pipelines, errors inside pipelines, redaction.

use super::wire::*;
use crate::pgwire::recorder::Caveat;
use crate::pgwire::*;

#[test]
fn simple_query() {
    let mut c = Conn::new();
    // The initial ReadyForQuery after authentication answers nothing: fine.
    c.s(all(&[
        parameter_status("server_version", "15.6"),
        ready(b'I'),
    ]))
    .unwrap();
    c.c(query("SELECT 1")).unwrap();
    assert_eq!(c.rec.in_flight(), 1);
    c.s(all(&[
        row_desc(1),
        data_row(&["1"]),
        complete("SELECT 1"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0],
        StatementRecord {
            protocol: Protocol::Simple,
            text: "SELECT 1".into(),
            params: vec![],
            outcome: ok("SELECT 1", Some(1)),
            started_at: 1003,
            ended_at: 1007,
            data_rows: 1,
            copy_bytes: 0,
            redacted: false,
            caveat: None,
        }
    );
    assert_eq!(c.rec.in_flight(), 0);
}

#[test]
fn a_multi_statement_string_is_one_record() {
    let mut c = Conn::new();
    c.c(query("BEGIN; UPDATE t SET a = 1; DELETE FROM u; COMMIT"))
        .unwrap();
    c.s(all(&[
        complete("BEGIN"),
        notice("something"),
        complete("UPDATE 3"),
        complete("DELETE 2"),
        complete("COMMIT"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].outcome,
        ok("BEGIN; UPDATE 3; DELETE 2; COMMIT", Some(5))
    );

    c.c(query("")).unwrap();
    c.s(all(&[empty_query(), ready(b'I')])).unwrap();
    assert_eq!(outcomes(&c.records()), vec![ok("", None)]);

    // An error stops the string: the record is the error.
    c.c(query("SELECT 1; SELECT 1/0; SELECT 3")).unwrap();
    c.s(all(&[
        row_desc(1),
        data_row(&["1"]),
        complete("SELECT 1"),
        error("22012", "division by zero"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(outcomes(&r), vec![err("22012", "division by zero")]);
    assert_eq!(r[0].data_rows, 1);
}

#[test]
fn an_error_inside_a_transaction() {
    let mut c = Conn::new();
    c.c(query("BEGIN")).unwrap();
    c.s(all(&[complete("BEGIN"), ready(b'T')])).unwrap();
    c.c(query("UPDATE nope SET a = 1")).unwrap();
    c.s(all(&[
        error("42P01", "relation \"nope\" does not exist"),
        ready(b'E'),
    ]))
    .unwrap();
    c.c(query("SELECT 1")).unwrap();
    c.s(all(&[
        error(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        ),
        ready(b'E'),
    ]))
    .unwrap();
    c.c(query("ROLLBACK")).unwrap();
    c.s(all(&[complete("ROLLBACK"), ready(b'I')])).unwrap();
    let r = c.records();
    assert_eq!(
        texts(&r),
        vec!["BEGIN", "UPDATE nope SET a = 1", "SELECT 1", "ROLLBACK"]
    );
    assert_eq!(
        outcomes(&r),
        vec![
            ok("BEGIN", None),
            err("42P01", "relation \"nope\" does not exist"),
            err(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block"
            ),
            ok("ROLLBACK", None),
        ]
    );
}

#[test]
fn extended_query_with_parameters() {
    let mut c = Conn::new();
    let sql = "SELECT * FROM t WHERE id = $1 AND tag = $2 AND blob = $3";
    c.c(all(&[
        parse("", sql),
        bind_formats(
            "",
            &[Format::Text, Format::Binary, Format::Text],
            &[Some(b"42"), Some(&[0xde, 0xad]), None],
        ),
        describe_portal(""),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        row_desc(2),
        data_row(&["42", "x"]),
        data_row(&["42", "y"]),
        complete("SELECT 2"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].protocol, Protocol::Extended);
    assert_eq!(r[0].text, sql);
    assert_eq!(
        r[0].params,
        vec![Some("42".into()), Some("\\xdead".into()), None]
    );
    assert_eq!(r[0].outcome, ok("SELECT 2", Some(2)));
    assert_eq!(r[0].data_rows, 2);
    // Sent with the Execute (4th client message), answered by CommandComplete.
    assert_eq!((r[0].started_at, r[0].ended_at), (1004, 1011));
    assert_eq!(c.rec.in_flight(), 0);
}

#[test]
fn a_named_statement_runs_again_with_new_parameters() {
    let mut c = Conn::new();
    c.c(all(&[
        parse("ins", "INSERT INTO t VALUES ($1)"),
        describe_statement("ins"),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        param_desc(1),
        no_data(),
        ready(b'I'),
    ]))
    .unwrap();
    for v in ["a", "b"] {
        c.c(all(&[bind("", "ins", &[Some(v)]), execute("", 0), sync()]))
            .unwrap();
        c.s(all(&[bind_complete(), complete("INSERT 0 1"), ready(b'I')]))
            .unwrap();
    }
    let r = c.records();
    assert_eq!(texts(&r), vec!["INSERT INTO t VALUES ($1)"; 2]);
    assert_eq!(r[0].params, vec![Some("a".into())]);
    assert_eq!(r[1].params, vec![Some("b".into())]);
    assert_eq!(outcomes(&r), vec![ok("INSERT 0 1", Some(1)); 2]);
}

fn pipeline3(c: &mut Conn, second: &str) {
    c.c(all(&[
        parse("", "INSERT INTO t VALUES ($1)"),
        bind("", "", &[Some("1")]),
        execute("", 0),
        parse("", second),
        bind("", "", &[Some("2")]),
        execute("", 0),
        parse("", "INSERT INTO t VALUES ($1) RETURNING id"),
        bind("", "", &[Some("3")]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
}

#[test]
fn pipelined_parse_bind_execute_three_times_then_sync() {
    let mut c = Conn::new();
    pipeline3(&mut c, "UPDATE t SET a = $1");
    assert_eq!(c.rec.in_flight(), 10);
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        complete("INSERT 0 1"),
        parse_complete(),
        bind_complete(),
        complete("UPDATE 7"),
        parse_complete(),
        bind_complete(),
        data_row(&["99"]),
        complete("INSERT 0 1"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(
        texts(&r),
        vec![
            "INSERT INTO t VALUES ($1)",
            "UPDATE t SET a = $1",
            "INSERT INTO t VALUES ($1) RETURNING id"
        ]
    );
    let params: Vec<_> = r.iter().map(|r| r.params.clone()).collect();
    assert_eq!(
        params,
        vec![
            vec![Some("1".into())],
            vec![Some("2".into())],
            vec![Some("3".into())]
        ]
    );
    assert_eq!(
        outcomes(&r),
        vec![
            ok("INSERT 0 1", Some(1)),
            ok("UPDATE 7", Some(7)),
            ok("INSERT 0 1", Some(1))
        ]
    );
    assert_eq!(c.rec.in_flight(), 0);
}

#[test]
fn a_failed_parse_in_a_pipeline_skips_to_sync() {
    let mut c = Conn::new();
    pipeline3(&mut c, "UPDAT t SET a = $1");
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        complete("INSERT 0 1"),
        error("42601", "syntax error at or near \"UPDAT\""),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    // The second statement carries its Parse's error (with the text and parameters sent);
    // the third never ran.
    assert_eq!(
        texts(&r),
        vec![
            "INSERT INTO t VALUES ($1)",
            "UPDAT t SET a = $1",
            "INSERT INTO t VALUES ($1) RETURNING id"
        ]
    );
    assert_eq!(
        outcomes(&r),
        vec![
            ok("INSERT 0 1", Some(1)),
            err("42601", "syntax error at or near \"UPDAT\""),
            Outcome::Skipped
        ]
    );
    assert_eq!(r[1].params, vec![Some("2".into())]);
    assert_eq!(r[2].params, vec![Some("3".into())]);
    assert!(r.iter().all(|r| r.caveat.is_none()));
    assert_eq!(c.rec.in_flight(), 0);

    // The connection goes on normally after the Sync.
    c.c(query("SELECT 1")).unwrap();
    c.s(all(&[complete("SELECT 1"), ready(b'I')])).unwrap();
    assert_eq!(outcomes(&c.records()), vec![ok("SELECT 1", Some(1))]);
}

#[test]
fn a_failed_execute_in_a_pipeline_skips_the_rest() {
    let mut c = Conn::new();
    pipeline3(&mut c, "UPDATE t SET a = 1 / ($1::int - 2)");
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        complete("INSERT 0 1"),
        parse_complete(),
        bind_complete(),
        error("22012", "division by zero"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(
        outcomes(&r),
        vec![
            ok("INSERT 0 1", Some(1)),
            err("22012", "division by zero"),
            Outcome::Skipped
        ]
    );
}

#[test]
fn messages_sent_after_the_error_arrived_are_skipped_too() {
    let mut c = Conn::new();
    c.c(all(&[
        parse("", "SELECT $1::int"),
        bind("", "", &[Some("abc")]),
        execute("", 0),
        flush(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        error("22P02", "invalid input syntax for type integer: \"abc\""),
    ]))
    .unwrap();
    // The client did not wait: more, then the Sync.
    c.c(all(&[
        parse("", "DELETE FROM t"),
        bind("", "", &[]),
        execute("", 0),
        query("SELECT 'ignored too'"),
        sync(),
    ]))
    .unwrap();
    c.s(ready(b'I')).unwrap();
    let r = c.records();
    assert_eq!(
        texts(&r),
        vec!["SELECT $1::int", "DELETE FROM t", "SELECT 'ignored too'"]
    );
    assert_eq!(
        outcomes(&r),
        vec![
            err("22P02", "invalid input syntax for type integer: \"abc\""),
            Outcome::Skipped,
            Outcome::Skipped
        ]
    );
    assert_eq!(r[0].params, vec![Some("abc".into())]);
    assert_eq!(c.rec.in_flight(), 0);
}

#[test]
fn a_refused_parse_cannot_change_what_an_execute_records() {
    let mut c = Conn::new();
    c.c(all(&[parse("s1", "SELECT 1"), sync()])).unwrap();
    c.s(all(&[parse_complete(), ready(b'I')])).unwrap();
    // Parse of an existing name is refused by the server: s1 stays SELECT 1.
    c.c(all(&[
        parse("s1", "DROP TABLE precious"),
        bind("", "s1", &[]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        error("42P05", "prepared statement \"s1\" already exists"),
        ready(b'I'),
    ]))
    .unwrap();
    c.c(all(&[bind("", "s1", &[]), execute("", 0), sync()]))
        .unwrap();
    c.s(all(&[bind_complete(), complete("SELECT 1"), ready(b'I')]))
        .unwrap();
    let r = c.records();
    assert_eq!(texts(&r), vec!["DROP TABLE precious", "SELECT 1"]);
    assert_eq!(
        outcomes(&r),
        vec![
            err("42P05", "prepared statement \"s1\" already exists"),
            ok("SELECT 1", Some(1))
        ]
    );
}

#[test]
fn a_failed_step_without_an_execute_is_a_record_of_its_own() {
    let mut c = Conn::new();
    c.c(all(&[
        parse("s", "SELEC 1"),
        describe_statement("s"),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        error("42601", "syntax error at or near \"SELEC\""),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(texts(&r), vec!["SELEC 1"]);
    assert_eq!(r[0].caveat, Some(Caveat::ProtocolStep));
    assert_eq!(r[0].started_at, 1001);

    c.c(all(&[describe_statement("nope"), sync()])).unwrap();
    c.s(all(&[
        error("26000", "prepared statement \"nope\" does not exist"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(texts(&r), vec!["[Describe statement \"nope\"]"]);
    assert_eq!(r[0].caveat, Some(Caveat::ProtocolStep));
}

#[test]
fn an_error_at_sync_is_the_implicit_commit() {
    let mut c = Conn::new();
    c.c(all(&[
        parse("", "INSERT INTO child VALUES (1)"),
        bind("", "", &[]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        complete("INSERT 0 1"),
        error(
            "23503",
            "insert or update on table \"child\" violates foreign key constraint",
        ),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].outcome, ok("INSERT 0 1", Some(1)));
    assert_eq!(
        r[1].text,
        "[error at Sync: the implicit COMMIT of the pipeline]"
    );
    assert_eq!(r[1].caveat, Some(Caveat::ProtocolStep));
    assert!(matches!(&r[1].outcome, Outcome::Error { sqlstate, .. } if sqlstate == "23503"));
}

#[test]
fn passwords_are_redacted_in_records() {
    let mut c = Conn::new();
    c.c(query("ALTER ROLE app PASSWORD 'hunter2'")).unwrap();
    c.s(all(&[complete("ALTER ROLE"), ready(b'I')])).unwrap();
    let r = c.records();
    assert_eq!(r[0].text, "ALTER ROLE app PASSWORD '***'");
    assert!(r[0].redacted);

    // A bound password: PostgreSQL refuses `PASSWORD $1` at Parse, but the value travelled in
    // the Bind of the same pipeline and shows in the record.
    c.c(all(&[
        parse("", "ALTER ROLE app PASSWORD $1"),
        bind("", "", &[Some("hunter2")]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        error("42601", "syntax error at or near \"$1\""),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(r[0].params, vec![Some("***".into())]);
    assert!(r[0].redacted);
    assert!(!format!("{r:?}").contains("hunter2"));

    // A connection string in a bound value.
    c.c(all(&[
        parse("", "SELECT dblink_connect($1)"),
        bind("", "", &[Some("host=db password=hunter2")]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        complete("SELECT 1"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(r[0].params, vec![Some("host=db password=***".into())]);
    assert!(r[0].redacted);
}

#[test]
fn redaction_follows_standard_conforming_strings() {
    let mut c = Conn::new();
    c.c(query("SET standard_conforming_strings = off")).unwrap();
    c.s(all(&[
        complete("SET"),
        parameter_status("standard_conforming_strings", "off"),
        ready(b'I'),
    ]))
    .unwrap();
    c.c(query("ALTER ROLE x PASSWORD 'a\\'b c'")).unwrap();
    c.s(all(&[complete("ALTER ROLE"), ready(b'I')])).unwrap();
    let r = c.records();
    assert_eq!(r[1].text, "ALTER ROLE x PASSWORD '***'");
}

#[test]
fn a_record_serializes_for_the_audit_event() {
    let mut c = Conn::new();
    c.c(query("DELETE FROM t WHERE id = 1")).unwrap();
    c.s(all(&[complete("DELETE 1"), ready(b'I')])).unwrap();
    let v = serde_json::to_value(&c.records()[0]).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "protocol": "simple",
            "text": "DELETE FROM t WHERE id = 1",
            "params": [],
            "outcome": "ok",
            "tag": "DELETE 1",
            "rows": 1,
            "started_at": 1001,
            "ended_at": 1003,
            "data_rows": 0,
            "copy_bytes": 0,
            "redacted": false,
            "caveat": null
        })
    );
    let mut c = Conn::new();
    c.c(query("SELEC")).unwrap();
    c.s(all(&[error("42601", "syntax error"), ready(b'I')]))
        .unwrap();
    let v = serde_json::to_value(&c.records()[0]).unwrap();
    assert_eq!(v["outcome"], "error");
    assert_eq!(v["sqlstate"], "42601");
}
