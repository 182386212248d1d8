//! The recorder: COPY both ways and both protocols, portals, what it cannot know (caveats),
//! limits, the end of a connection, and never-panic properties.

use super::wire::*;
use crate::pgwire::recorder::Caveat;
use crate::pgwire::*;

#[test]
fn copy_from_stdin_simple() {
    let mut c = Conn::new();
    c.c(query("COPY t (a, b) FROM STDIN")).unwrap();
    c.s(copy_in(2)).unwrap();
    c.c(all(&[
        copy_data(b"1\tone\n"),
        copy_data(b"2\ttwo\n"),
        copy_data(b"3\tthree\n"),
        copy_done(),
    ]))
    .unwrap();
    c.s(all(&[complete("COPY 3"), ready(b'I')])).unwrap();
    let r = c.records();
    assert_eq!(texts(&r), vec!["COPY t (a, b) FROM STDIN"]);
    assert_eq!(r[0].outcome, ok("COPY 3", Some(3)));
    assert_eq!(r[0].copy_bytes, 6 + 6 + 8);
    assert!(r[0].params.is_empty());
    assert_eq!(c.rec.in_flight(), 0);
}

#[test]
fn copy_fail_and_a_server_error_during_copy() {
    let mut c = Conn::new();
    c.c(query("COPY t FROM STDIN")).unwrap();
    c.s(copy_in(1)).unwrap();
    c.c(all(&[
        copy_data(b"x\n"),
        copy_fail("cancelled by the user"),
    ]))
    .unwrap();
    c.s(all(&[
        error("57014", "COPY from stdin failed: cancelled by the user"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(
        outcomes(&r),
        vec![err(
            "57014",
            "COPY from stdin failed: cancelled by the user"
        )]
    );
    assert_eq!(r[0].copy_bytes, 2);

    // Bad data: the server fails the COPY while the client still sends.
    c.c(query("COPY t FROM STDIN")).unwrap();
    c.s(copy_in(1)).unwrap();
    c.c(copy_data(b"not a number\n")).unwrap();
    c.s(all(&[
        error("22P02", "invalid input syntax for type integer"),
        ready(b'I'),
    ]))
    .unwrap();
    c.c(all(&[copy_data(b"more\n"), copy_done()])).unwrap();
    c.c(query("SELECT 1")).unwrap();
    c.s(all(&[complete("SELECT 1"), ready(b'I')])).unwrap();
    let r = c.records();
    assert_eq!(
        outcomes(&r),
        vec![
            err("22P02", "invalid input syntax for type integer"),
            ok("SELECT 1", Some(1))
        ]
    );
    assert_eq!(c.rec.stray_copy_bytes(), 5, "sent after the COPY failed");
}

/// libpq's PQexecParams("COPY … FROM STDIN"): Parse/Bind/Describe/Execute/Sync in one go; the
/// server reads (and ignores) that Sync during the COPY; libpq sends another after CopyDone.
#[test]
fn copy_from_stdin_extended_as_libpq_does_it() {
    let mut c = Conn::new();
    c.c(all(&[
        parse("", "COPY t FROM STDIN"),
        bind("", "", &[]),
        describe_portal(""),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        no_data(),
        copy_in(1),
    ]))
    .unwrap();
    c.c(all(&[
        copy_data(b"1\n"),
        copy_data(b"2\n"),
        copy_done(),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[complete("COPY 2"), ready(b'I')])).unwrap();
    let r = c.records();
    assert_eq!(outcomes(&r), vec![ok("COPY 2", Some(2))]);
    assert_eq!(r[0].copy_bytes, 4);
    assert_eq!(
        c.rec.in_flight(),
        0,
        "the Sync read during COPY awaits nothing"
    );
    // The next statement is matched to its own answer.
    c.c(query("SELECT 2")).unwrap();
    c.s(all(&[complete("SELECT 1"), ready(b'I')])).unwrap();
    assert_eq!(texts(&c.records()), vec!["SELECT 2"]);

    // A client that pipelines its data before the CopyInResponse.
    c.c(all(&[
        parse("", "COPY t FROM STDIN"),
        bind("", "", &[]),
        execute("", 0),
        sync(),
        copy_data(b"1\n"),
        copy_done(),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        copy_in(1),
        complete("COPY 1"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(outcomes(&r), vec![ok("COPY 1", Some(1))]);
    assert_eq!(r[0].copy_bytes, 2);
    assert_eq!(c.rec.in_flight(), 0);
}

#[test]
fn copy_to_stdout() {
    let mut c = Conn::new();
    c.c(query("COPY t TO STDOUT")).unwrap();
    c.s(all(&[
        copy_out(1),
        server_copy_data(b"a\n"),
        server_copy_data(b"bb\n"),
        server_copy_done(),
        complete("COPY 2"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(outcomes(&r), vec![ok("COPY 2", Some(2))]);
    assert_eq!(r[0].copy_bytes, 5);
}

#[test]
fn a_portal_suspended_at_its_row_limit() {
    let mut c = Conn::new();
    c.c(query("BEGIN")).unwrap();
    c.s(all(&[complete("BEGIN"), ready(b'T')])).unwrap();
    c.c(all(&[
        parse("", "SELECT g FROM generate_series(1, 3) g"),
        bind("cur", "", &[]),
        execute("cur", 2),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[
        parse_complete(),
        bind_complete(),
        data_row(&["1"]),
        data_row(&["2"]),
        suspended(),
        ready(b'T'),
    ]))
    .unwrap();
    c.c(all(&[execute("cur", 2), sync()])).unwrap();
    c.s(all(&[data_row(&["3"]), complete("SELECT 1"), ready(b'T')]))
        .unwrap();
    c.c(query("COMMIT")).unwrap();
    c.s(all(&[complete("COMMIT"), ready(b'I')])).unwrap();
    // The transaction ended: so did the portal.
    c.c(all(&[execute("cur", 0), sync()])).unwrap();
    c.s(all(&[
        error("34000", "portal \"cur\" does not exist"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(
        outcomes(&r),
        vec![
            ok("BEGIN", None),
            Outcome::Suspended { rows: 2 },
            ok("SELECT 1", Some(1)),
            ok("COMMIT", None),
            err("34000", "portal \"cur\" does not exist"),
        ]
    );
    assert_eq!(r[2].text, "SELECT g FROM generate_series(1, 3) g");
    assert_eq!(r[4].caveat, Some(Caveat::UnknownPortal));
}

#[test]
fn sql_cursors_and_prepares_are_flagged() {
    let mut c = Conn::new();
    // A cursor declared in SQL, fetched through the protocol.
    c.c(query(
        "BEGIN; DECLARE c CURSOR FOR SELECT secret FROM vault",
    ))
    .unwrap();
    c.s(all(&[
        complete("BEGIN"),
        complete("DECLARE CURSOR"),
        ready(b'T'),
    ]))
    .unwrap();
    c.c(all(&[execute("c", 0), sync()])).unwrap();
    c.s(all(&[data_row(&["s"]), complete("FETCH 1"), ready(b'T')]))
        .unwrap();
    let r = c.records();
    assert_eq!(
        r[1].text,
        "[portal \"c\" was not bound on this connection: a SQL cursor, or over the portal limit]"
    );
    assert_eq!(r[1].caveat, Some(Caveat::UnknownPortal));
    assert_eq!(r[1].outcome, ok("FETCH 1", Some(1)));
    c.c(query("COMMIT")).unwrap();
    c.s(all(&[complete("COMMIT"), ready(b'I')])).unwrap();

    // A statement prepared in SQL, bound through the protocol.
    c.c(all(&[
        bind("", "sqlprep", &[Some("1")]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[bind_complete(), complete("DELETE 1"), ready(b'I')]))
        .unwrap();
    let r = c.records();
    assert_eq!(r[1].caveat, Some(Caveat::UnknownStatement));
    assert!(
        r[1].text
            .starts_with("[statement \"sqlprep\" was not prepared")
    );
    assert_eq!(r[1].params, vec![Some("1".into())]);

    // SQL replacing a statement Parse made: the old text is flagged.
    c.c(all(&[parse("s", "SELECT 1"), sync()])).unwrap();
    c.s(all(&[parse_complete(), ready(b'I')])).unwrap();
    c.c(query("DEALLOCATE s; PREPARE s AS DELETE FROM t"))
        .unwrap();
    c.s(all(&[
        complete("DEALLOCATE"),
        complete("PREPARE"),
        ready(b'I'),
    ]))
    .unwrap();
    c.c(all(&[bind("", "s", &[]), execute("", 0), sync()]))
        .unwrap();
    c.s(all(&[bind_complete(), complete("DELETE 9"), ready(b'I')]))
        .unwrap();
    let r = c.records();
    let last = r.last().unwrap();
    assert_eq!(last.text, "SELECT 1");
    assert_eq!(last.caveat, Some(Caveat::MayBeOutdated));
    // Prepared again: trusted again.
    c.c(all(&[
        parse("s", "SELECT 3"),
        bind("", "s", &[]),
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
    assert_eq!(r[0].caveat, None);
}

#[test]
fn close_forgets_a_statement() {
    let mut c = Conn::with(RecorderLimits {
        max_statements: 2,
        ..RecorderLimits::default()
    });
    c.c(all(&[
        parse("a", "SELECT 'a'"),
        parse("b", "SELECT 'b'"),
        sync(),
    ]))
    .unwrap();
    c.s(all(&[parse_complete(), parse_complete(), ready(b'I')]))
        .unwrap();
    assert_eq!(
        c.c(parse("c", "SELECT 'c'")),
        Err(RecorderError::TooManyStatements { limit: 2 })
    );
    assert_eq!(
        c.rec.in_flight(),
        0,
        "a refused message is not taken into account"
    );
    // Re-preparing a known name and the unnamed statement are fine.
    c.c(all(&[parse("", "SELECT 0"), sync()])).unwrap();
    c.s(all(&[parse_complete(), ready(b'I')])).unwrap();
    c.c(all(&[close_statement("a"), sync()])).unwrap();
    c.s(all(&[close_complete(), ready(b'I')])).unwrap();
    c.c(all(&[parse("c", "SELECT 'c'"), sync()])).unwrap();
    c.s(all(&[parse_complete(), ready(b'I')])).unwrap();
    c.c(all(&[bind("", "a", &[]), execute("", 0), sync()]))
        .unwrap();
    c.s(all(&[
        error("26000", "prepared statement \"a\" does not exist"),
        ready(b'I'),
    ]))
    .unwrap();
    let r = c.records();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].caveat, Some(Caveat::UnknownStatement));
}

#[test]
fn limits_on_text_parameters_portals_and_pending() {
    let mut c = Conn::with(RecorderLimits {
        max_text: 20,
        max_param: 8,
        max_params_total: 12,
        max_portals: 1,
        max_pending: 4,
        ..RecorderLimits::default()
    });
    let long = format!("SELECT '{}'", "é".repeat(40));
    c.c(query(&long)).unwrap();
    c.s(all(&[complete("SELECT 1"), ready(b'I')])).unwrap();
    let r = c.records();
    assert_eq!(
        r[0].text,
        format!("SELECT 'éééééé…[truncated: {} bytes in all]", long.len())
    );

    c.c(all(&[
        parse("", "SELECT $1, $2, $3"),
        bind_formats(
            "",
            &[Format::Text, Format::Binary, Format::Text],
            &[Some(b"0123456789"), Some(&[1, 2, 3, 4, 5]), Some(b"abc")],
        ),
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
    assert_eq!(
        r[0].params,
        vec![
            Some("01234567…[truncated: 10 bytes in all]".into()),
            Some("\\x01…[truncated: 5 bytes in all]".into()),
            Some("…[truncated: 3 bytes in all]".into()),
        ]
    );

    c.c(all(&[bind("p1", "", &[]), sync()])).unwrap();
    c.s(all(&[bind_complete(), ready(b'T')])).unwrap();
    assert_eq!(
        c.c(bind("p2", "", &[])),
        Err(RecorderError::TooManyPortals { limit: 1 })
    );
    c.c(all(&[query("a"), query("b"), query("c"), query("d")]))
        .unwrap();
    assert_eq!(
        c.c(query("e")),
        Err(RecorderError::TooManyPending { limit: 4 })
    );
}

#[test]
fn function_calls_are_recorded() {
    let mut c = Conn::new();
    c.c(function_call(764, &[Some(&[0, 0, 0, 1]), None]))
        .unwrap();
    c.s(all(&[function_result(&[0, 0, 0, 3]), ready(b'I')]))
        .unwrap();
    let r = c.records();
    assert_eq!(r[0].protocol, Protocol::FunctionCall);
    assert_eq!(r[0].text, "[FunctionCall oid 764]");
    assert_eq!(r[0].params, vec![Some("\\x00000001".into()), None]);
    assert_eq!(r[0].outcome, ok("", None));
}

#[test]
fn the_end_of_a_connection_interrupts_what_is_unanswered() {
    let mut c = Conn::new();
    c.c(query("SELECT pg_sleep(100)")).unwrap();
    c.c(all(&[
        parse("", "UPDATE t SET a = $1"),
        bind("", "", &[Some("5")]),
        execute("", 0),
        sync(),
    ]))
    .unwrap();
    let r = c.rec.finish(2000);
    assert_eq!(
        texts(&r),
        vec!["SELECT pg_sleep(100)", "UPDATE t SET a = $1"]
    );
    assert_eq!(outcomes(&r), vec![Outcome::Interrupted; 2]);
    assert_eq!(r[1].params, vec![Some("5".into())]);
    assert!(r.iter().all(|r| r.ended_at == 2000));

    // A FATAL in the middle of a query: the query ends with it.
    let mut c = Conn::new();
    c.c(query("SELECT * FROM big")).unwrap();
    c.s(all(&[row_desc(1), data_row(&["1"])])).unwrap();
    c.s(error(
        "57P01",
        "terminating connection due to administrator command",
    ))
    .unwrap();
    let r = c.rec.finish(3000);
    assert_eq!(
        outcomes(&r),
        vec![err(
            "57P01",
            "terminating connection due to administrator command"
        )]
    );
    assert_eq!(r[0].data_rows, 1);
}

#[test]
fn answers_to_nothing_are_out_of_step() {
    let mut c = Conn::new();
    assert_eq!(
        c.s(parse_complete()),
        Err(RecorderError::OutOfStep {
            got: "ParseComplete"
        })
    );
    assert_eq!(
        c.s(complete("SELECT 1")),
        Err(RecorderError::OutOfStep {
            got: "CommandComplete"
        })
    );
    // An asynchronous error with nothing waiting is no record, and no error.
    c.s(error(
        "57P05",
        "terminating connection due to idle-session timeout",
    ))
    .unwrap();
    c.c(query("SELECT 1")).unwrap();
    assert_eq!(
        c.s(bind_complete()),
        Err(RecorderError::OutOfStep {
            got: "BindComplete"
        })
    );
    // Ignored, the query still matches its own answer.
    c.s(all(&[complete("SELECT 1"), ready(b'I')])).unwrap();
    assert_eq!(outcomes(&c.records()), vec![ok("SELECT 1", Some(1))]);
}

/// What the fuzz target does: arbitrary bytes, the first one saying where the client's part
/// ends, through both decoders into a recorder.
pub fn feed_arbitrary(data: &[u8]) -> Vec<StatementRecord> {
    let Some((first, rest)) = data.split_first() else {
        return Vec::new();
    };
    let (client, server) = rest.split_at(*first as usize * rest.len() / 256);
    feed(client, server)
}

/// Alternates one client message and one server message while either decodes.
fn feed(client: &[u8], server: &[u8]) -> Vec<StatementRecord> {
    let mut fd = FrontendDecoder::tagged(1 << 16);
    let bd = BackendDecoder::new(1 << 16);
    let mut rec = Recorder::new(RecorderLimits {
        max_statements: 4,
        max_portals: 4,
        max_pending: 64,
        max_text: 64,
        max_param: 16,
        max_params_total: 32,
    });
    let (mut ca, mut sa) = (0, 0);
    let mut out = Vec::new();
    for now in 0.. {
        let mut progressed = false;
        if let Ok(Some((f, n))) = fd.decode(&client[ca..]) {
            let _ = rec.frontend(&f.message, now);
            ca += n;
            progressed = true;
        }
        if let Ok(Some((f, n))) = bd.decode(&server[sa..]) {
            let _ = rec.backend(&f.message, now);
            sa += n;
            progressed = true;
        }
        out.extend(rec.take_records());
        if !progressed {
            break;
        }
    }
    out.extend(rec.finish(u64::MAX));
    out
}

/// A well-framed stream of plausible messages, in any order.
fn message_soup() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, Vec<u8>)> {
    use proptest::prelude::*;
    let client = prop_oneof![
        Just(query("SELECT 1")),
        Just(query("ALTER ROLE x PASSWORD 'p'; DEALLOCATE ALL")),
        Just(parse("", "SELECT $1")),
        Just(parse("s", "UPDATE t SET a = $1")),
        Just(bind("", "", &[Some("v")])),
        Just(bind("p", "s", &[None])),
        Just(execute("", 0)),
        Just(execute("p", 1)),
        Just(describe_portal("")),
        Just(close_statement("s")),
        Just(sync()),
        Just(flush()),
        Just(copy_data(b"x")),
        Just(copy_done()),
        Just(copy_fail("no")),
        Just(function_call(1, &[None])),
    ];
    let server = prop_oneof![
        Just(parse_complete()),
        Just(bind_complete()),
        Just(close_complete()),
        Just(no_data()),
        Just(param_desc(1)),
        Just(row_desc(1)),
        Just(data_row(&["1"])),
        Just(complete("SELECT 1")),
        Just(empty_query()),
        Just(suspended()),
        Just(error("XX000", "boom")),
        Just(ready(b'I')),
        Just(ready(b'T')),
        Just(copy_in(1)),
        Just(copy_out(1)),
        Just(server_copy_data(b"y")),
        Just(function_result(b"r")),
        Just(parameter_status("standard_conforming_strings", "off")),
    ];
    (
        proptest::collection::vec(client, 0..40).prop_map(|v| v.concat()),
        proptest::collection::vec(server, 0..40).prop_map(|v| v.concat()),
    )
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
        let _ = feed_arbitrary(&data);
    }

    #[test]
    fn any_order_of_plausible_messages_never_panics((client, server) in message_soup()) {
        let records = feed(&client, &server);
        for r in &records {
            proptest::prop_assert!(!r.text.contains("'p'"), "{}", r.text);
            proptest::prop_assert!(r.text.len() <= 64 + 40);
        }
    }
}
