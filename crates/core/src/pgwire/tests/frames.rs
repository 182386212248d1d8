//! Framing: every message type round-trips (encode → decode, byte for byte, and every proper
//! prefix asks for more), known wire bytes, every `WireError`, and never-panic properties.

use crate::pgwire::backend::{
    Authentication, BackendMessage, CommandComplete, CopyResponse, DataRow, FieldDescription,
    Fields, RowDescription, TransactionStatus, command_rows,
};
use crate::pgwire::encode::{self, ErrorSpec, Severity, encode_backend, encode_frontend};
use crate::pgwire::frontend::{
    AuthResponse, Bind, CancelRequest, Execute, FunctionCall, Parse, Phase, Startup, Target,
    TargetKind,
};
use crate::pgwire::*;

fn fe_bytes(m: &FrontendMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frontend(m, &mut out).unwrap();
    out
}

fn be_bytes(m: &BackendMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_backend(m, &mut out).unwrap();
    out
}

fn is_startup_phase(m: &FrontendMessage<'_>) -> bool {
    matches!(
        m,
        FrontendMessage::SslRequest
            | FrontendMessage::GssEncRequest
            | FrontendMessage::Startup(_)
            | FrontendMessage::CancelRequest(_)
    )
}

fn fe_decoder(m: &FrontendMessage<'_>) -> FrontendDecoder {
    if is_startup_phase(m) {
        FrontendDecoder::default()
    } else {
        FrontendDecoder::tagged(DEFAULT_MAX_MESSAGE)
    }
}

fn decode_fe(bytes: &[u8]) -> Result<Option<(FrontendFrame<'_>, usize)>, WireError> {
    FrontendDecoder::tagged(DEFAULT_MAX_MESSAGE).decode(bytes)
}

fn decode_be(bytes: &[u8]) -> Result<Option<(BackendFrame<'_>, usize)>, WireError> {
    BackendDecoder::default().decode(bytes)
}

fn all_frontend() -> Vec<FrontendMessage<'static>> {
    use FrontendMessage as F;
    vec![
        F::SslRequest,
        F::GssEncRequest,
        F::Startup(Startup {
            params: vec![
                (b"user", b"g-42"),
                (b"database", b"prod"),
                (b"options", b""),
            ],
        }),
        F::Startup(Startup::default()),
        F::CancelRequest(CancelRequest {
            pid: 4711,
            secret: 0xdead_beef,
        }),
        F::Query(b"SELECT 1; SELECT 2"),
        F::Query(b""),
        F::Parse(Parse {
            name: b"s1",
            query: b"SELECT $1::int, $2",
            param_types: vec![23, 0],
        }),
        F::Parse(Parse {
            name: b"",
            query: b"SELECT 1",
            param_types: vec![],
        }),
        F::Bind(Bind {
            portal: b"p1",
            statement: b"s1",
            param_formats: vec![Format::Text, Format::Binary],
            params: vec![Some(b"42"), None],
            result_formats: vec![Format::Binary],
        }),
        F::Bind(Bind {
            portal: b"",
            statement: b"",
            param_formats: vec![Format::Binary],
            params: vec![Some(&[0, 0, 0, 7]), Some(b""), None],
            result_formats: vec![],
        }),
        F::Execute(Execute {
            portal: b"p1",
            max_rows: 100,
        }),
        F::Execute(Execute {
            portal: b"",
            max_rows: 0,
        }),
        F::Describe(Target {
            kind: TargetKind::Statement,
            name: b"s1",
        }),
        F::Describe(Target {
            kind: TargetKind::Portal,
            name: b"",
        }),
        F::Close(Target {
            kind: TargetKind::Portal,
            name: b"p1",
        }),
        F::Close(Target {
            kind: TargetKind::Statement,
            name: b"",
        }),
        F::Sync,
        F::Flush,
        F::Terminate,
        F::CopyData(b"1\tone\n2\ttwo\n"),
        F::CopyData(b""),
        F::CopyDone,
        F::CopyFail(b"aborted by the user"),
        F::AuthResponse(AuthResponse { body: b"md5abc\0" }),
        F::FunctionCall(FunctionCall {
            function: 764,
            arg_formats: vec![Format::Binary],
            args: vec![Some(&[0, 0, 0, 1]), None],
            result_format: Format::Binary,
        }),
    ]
}

fn field_desc(name: &[u8]) -> FieldDescription<'_> {
    FieldDescription {
        name,
        table_oid: 16384,
        column: 1,
        type_oid: 23,
        type_size: 4,
        type_modifier: -1,
        format: 0,
    }
}

/// Backend messages; bodies of rows, descriptions and fields are built by the encoders.
fn all_backend(scratch: &mut Vec<Vec<u8>>) -> Vec<BackendMessage<'_>> {
    let mut row = Vec::new();
    encode::data_row(&mut row, &[Some(b"1"), None, Some(b"")]).unwrap();
    let mut desc = Vec::new();
    encode::row_description(&mut desc, &[field_desc(b"id"), field_desc(b"name")]).unwrap();
    let fields = encode::fields_body(&[
        (b'S', b"ERROR"),
        (b'V', b"ERROR"),
        (b'C', b"42P01"),
        (b'M', b"relation \"nope\" does not exist"),
        (b'P', b"15"),
    ])
    .unwrap();
    scratch.push(row);
    scratch.push(desc);
    scratch.push(fields);
    let [row, desc, fields] = scratch.as_slice() else {
        unreachable!()
    };
    use BackendMessage as B;
    vec![
        B::Authentication(Authentication::Ok),
        B::Authentication(Authentication::KerberosV5),
        B::Authentication(Authentication::CleartextPassword),
        B::Authentication(Authentication::Md5Password { salt: [1, 2, 3, 4] }),
        B::Authentication(Authentication::Gss),
        B::Authentication(Authentication::GssContinue(b"token")),
        B::Authentication(Authentication::Sspi),
        B::Authentication(Authentication::Sasl(vec![
            b"SCRAM-SHA-256-PLUS",
            b"SCRAM-SHA-256",
        ])),
        B::Authentication(Authentication::SaslContinue(b"r=abc,s=c2FsdA==,i=4096")),
        B::Authentication(Authentication::SaslFinal(b"v=c2lnbmF0dXJl")),
        B::BackendKeyData {
            pid: 99,
            secret: 0x0102_0304,
        },
        B::ParameterStatus {
            name: b"server_version",
            value: b"15.6",
        },
        B::ReadyForQuery(TransactionStatus::Idle),
        B::ReadyForQuery(TransactionStatus::InTransaction),
        B::ReadyForQuery(TransactionStatus::Failed),
        B::CommandComplete(CommandComplete { tag: b"INSERT 0 5" }),
        B::ErrorResponse(Fields { body: &fields[..] }),
        B::NoticeResponse(Fields { body: &fields[..] }),
        B::RowDescription(RowDescription {
            count: 2,
            body: &desc[7..],
        }),
        B::DataRow(DataRow {
            count: 3,
            body: &row[7..],
        }),
        B::CopyInResponse(CopyResponse {
            format: Format::Text,
            columns: vec![Format::Text, Format::Text],
        }),
        B::CopyOutResponse(CopyResponse {
            format: Format::Binary,
            columns: vec![Format::Binary],
        }),
        B::CopyBothResponse(CopyResponse {
            format: Format::Binary,
            columns: vec![],
        }),
        B::CopyData(b"\x00\x01"),
        B::CopyDone,
        B::ParseComplete,
        B::BindComplete,
        B::CloseComplete,
        B::NoData,
        B::PortalSuspended,
        B::EmptyQueryResponse,
        B::ParameterDescription(vec![23, 25]),
        B::FunctionCallResponse(Some(b"\x00\x00\x00\x01")),
        B::FunctionCallResponse(None),
        B::NotificationResponse {
            pid: 7,
            channel: b"grants",
            payload: b"g-1",
        },
        B::NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized: vec![b"_pq_.compression"],
        },
    ]
}

#[test]
fn every_frontend_message_round_trips() {
    for m in all_frontend() {
        let bytes = fe_bytes(&m);
        let mut d = fe_decoder(&m);
        let (frame, n) = d.decode(&bytes).unwrap().unwrap();
        assert_eq!(frame.message, m);
        assert_eq!(frame.raw, &bytes[..], "{m:?}");
        assert_eq!(n, bytes.len());
        for cut in 0..bytes.len() {
            let mut d = fe_decoder(&m);
            assert_eq!(d.decode(&bytes[..cut]), Ok(None), "{m:?} cut at {cut}");
        }
        // Followed by more bytes, it still takes exactly its own.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"Q\0\0");
        let (_, n) = fe_decoder(&m).decode(&longer).unwrap().unwrap();
        assert_eq!(n, bytes.len());
    }
}

#[test]
fn every_backend_message_round_trips() {
    let mut scratch = Vec::new();
    for m in all_backend(&mut scratch) {
        let bytes = be_bytes(&m);
        let (frame, n) = decode_be(&bytes).unwrap().unwrap();
        assert_eq!(frame.message, m);
        assert_eq!(frame.raw, &bytes[..]);
        assert_eq!(n, bytes.len());
        for cut in 0..bytes.len() {
            assert_eq!(decode_be(&bytes[..cut]), Ok(None), "{m:?} cut at {cut}");
        }
    }
}

#[test]
fn known_wire_bytes() {
    assert_eq!(
        fe_bytes(&FrontendMessage::Query(b"SELECT 1")),
        b"Q\0\0\0\x0dSELECT 1\0"
    );
    let mut out = Vec::new();
    encode::ssl_request(&mut out);
    assert_eq!(out, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    out.clear();
    encode::authentication_ok(&mut out);
    assert_eq!(out, b"R\0\0\0\x08\0\0\0\0");
    out.clear();
    encode::ready_for_query(&mut out, TransactionStatus::Idle);
    assert_eq!(out, b"Z\0\0\0\x05I");
    out.clear();
    encode::terminate(&mut out);
    encode::sync(&mut out);
    assert_eq!(out, b"X\0\0\0\x04S\0\0\0\x04");
    out.clear();
    encode::cancel_request(&mut out, 1, 2);
    assert_eq!(
        out,
        [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2]
    );
    // A StartupMessage as libpq sends it.
    out.clear();
    encode::startup_message(&mut out, "bob", None, None, &[]).unwrap();
    assert_eq!(out, b"\0\0\0\x12\0\x03\0\0user\0bob\0\0");
}

#[test]
fn the_startup_phase_moves_on() {
    let mut d = FrontendDecoder::default();
    let mut stream = Vec::new();
    encode::ssl_request(&mut stream);
    encode::startup_message(
        &mut stream,
        "g-1",
        Some("prod"),
        Some("psql"),
        &[("x", "y")],
    )
    .unwrap();
    encode::query(&mut stream, "SELECT 1").unwrap();
    encode::terminate(&mut stream);
    let mut at = 0;
    let mut seen = Vec::new();
    while let Some((frame, n)) = d.decode(&stream[at..]).unwrap() {
        seen.push(frame.message);
        at += n;
    }
    assert_eq!(at, stream.len());
    assert_eq!(seen[0], FrontendMessage::SslRequest);
    let FrontendMessage::Startup(s) = &seen[1] else {
        panic!("{:?}", seen[1])
    };
    assert_eq!(s.user(), Some(&b"g-1"[..]));
    assert_eq!(s.database(), Some(&b"prod"[..]));
    assert_eq!(s.get("application_name"), Some(&b"psql"[..]));
    assert_eq!(s.get("x"), Some(&b"y"[..]));
    assert_eq!(seen[2], FrontendMessage::Query(b"SELECT 1"));
    assert_eq!(seen[3], FrontendMessage::Terminate);
    assert_eq!(d.phase(), Phase::Tagged);

    let mut d = FrontendDecoder::default();
    let mut c = Vec::new();
    encode::cancel_request(&mut c, 5, 6);
    let (frame, _) = d.decode(&c).unwrap().unwrap();
    assert_eq!(
        frame.message,
        FrontendMessage::CancelRequest(CancelRequest { pid: 5, secret: 6 })
    );
    assert_eq!(d.phase(), Phase::Cancelled);
    assert_eq!(d.decode(b""), Ok(None));
    assert_eq!(d.decode(b"Q"), Err(WireError::AfterCancel));
}

#[test]
fn shorthand_encoders_say_what_they_should() {
    let mut out = Vec::new();
    encode::password_message(&mut out, b"md5feed").unwrap();
    let (f, _) = decode_fe(&out).unwrap().unwrap();
    let FrontendMessage::AuthResponse(a) = f.message else {
        panic!()
    };
    assert_eq!(a.password().unwrap(), b"md5feed");

    out.clear();
    encode::sasl_initial_response(&mut out, "SCRAM-SHA-256", Some(b"n,,n=,r=abc")).unwrap();
    let (f, _) = decode_fe(&out).unwrap().unwrap();
    let FrontendMessage::AuthResponse(a) = f.message else {
        panic!()
    };
    let init = a.sasl_initial().unwrap();
    assert_eq!(init.mechanism, b"SCRAM-SHA-256");
    assert_eq!(init.data, Some(&b"n,,n=,r=abc"[..]));
    assert!(a.password().is_err(), "not a PasswordMessage");

    out.clear();
    encode::sasl_initial_response(&mut out, "SCRAM-SHA-256", None).unwrap();
    let (f, _) = decode_fe(&out).unwrap().unwrap();
    let FrontendMessage::AuthResponse(a) = f.message else {
        panic!()
    };
    assert_eq!(a.sasl_initial().unwrap().data, None);

    out.clear();
    encode::sasl_response(&mut out, b"c=biws,r=abc,p=proof").unwrap();
    let (f, _) = decode_fe(&out).unwrap().unwrap();
    let FrontendMessage::AuthResponse(a) = f.message else {
        panic!()
    };
    assert_eq!(a.sasl_response(), b"c=biws,r=abc,p=proof");

    let mut out = Vec::new();
    encode::authentication_cleartext_password(&mut out);
    encode::authentication_sasl(&mut out, &["SCRAM-SHA-256"]).unwrap();
    encode::authentication_sasl_continue(&mut out, b"r=x").unwrap();
    encode::authentication_sasl_final(&mut out, b"v=y").unwrap();
    encode::parameter_status(&mut out, "client_encoding", "UTF8").unwrap();
    encode::backend_key_data(&mut out, 10, 20);
    encode::error_response(&mut out, &ErrorSpec::grant_expired("g-7")).unwrap();
    encode::encryption_answer(&mut out, false);
    let mut at = 0;
    let mut seen = Vec::new();
    while let Some((f, n)) = decode_be(&out[at..]).unwrap() {
        seen.push(f.message);
        at += n;
    }
    assert_eq!(&out[at..], b"N", "the one-byte SSL answer is not a message");
    assert_eq!(parse_encryption_answer(b'N'), Ok(false));
    use BackendMessage as B;
    assert_eq!(
        seen[0],
        B::Authentication(Authentication::CleartextPassword)
    );
    assert_eq!(
        seen[1],
        B::Authentication(Authentication::Sasl(vec![b"SCRAM-SHA-256"]))
    );
    assert_eq!(
        seen[2],
        B::Authentication(Authentication::SaslContinue(b"r=x"))
    );
    assert_eq!(
        seen[3],
        B::Authentication(Authentication::SaslFinal(b"v=y"))
    );
    assert_eq!(
        seen[4],
        B::ParameterStatus {
            name: b"client_encoding",
            value: b"UTF8"
        }
    );
    assert_eq!(
        seen[5],
        B::BackendKeyData {
            pid: 10,
            secret: 20
        }
    );
    let B::ErrorResponse(e) = &seen[6] else {
        panic!()
    };
    assert_eq!(e.severity(), Some(&b"FATAL"[..]));
    assert_eq!(e.get(b'S'), Some(&b"FATAL"[..]));
    assert_eq!(e.sqlstate(), Some(&b"57P01"[..]));
    assert_eq!(
        e.message(),
        Some(&b"grant g-7 expired: the connection is closed"[..])
    );
    assert_eq!(e.detail(), None);

    let spec = ErrorSpec {
        severity: Severity::Error,
        sqlstate: "42501".into(),
        message: "not in your grant".into(),
        detail: Some("grant g-1 covers SELECT only".into()),
        hint: Some("request another grant".into()),
    };
    let mut out = Vec::new();
    encode::error_response(&mut out, &spec).unwrap();
    let (f, _) = decode_be(&out).unwrap().unwrap();
    let B::ErrorResponse(e) = f.message else {
        panic!()
    };
    assert_eq!(e.severity(), Some(&b"ERROR"[..]));
    assert_eq!(e.detail(), Some(&b"grant g-1 covers SELECT only"[..]));
    assert_eq!(e.hint(), Some(&b"request another grant"[..]));
    let bad = ErrorSpec {
        sqlstate: "57P0".into(),
        ..spec
    };
    assert!(matches!(
        encode::error_response(&mut out, &bad),
        Err(WireError::Invalid { .. })
    ));
}

#[test]
fn rows_descriptions_and_tags_read_back() {
    let mut scratch = Vec::new();
    let msgs = all_backend(&mut scratch);
    let row = msgs
        .iter()
        .find_map(|m| match m {
            BackendMessage::DataRow(r) => Some(*r),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        row.values().collect::<Vec<_>>(),
        vec![Some(&b"1"[..]), None, Some(&b""[..])]
    );
    let desc = msgs
        .iter()
        .find_map(|m| match m {
            BackendMessage::RowDescription(r) => Some(*r),
            _ => None,
        })
        .unwrap();
    let names: Vec<_> = desc.fields().map(|f| f.name).collect();
    assert_eq!(names, vec![&b"id"[..], &b"name"[..]]);
    assert_eq!(desc.fields().next().unwrap(), field_desc(b"id"));

    for (tag, rows) in [
        ("SELECT 3", Some(3)),
        ("INSERT 0 5", Some(5)),
        ("INSERT 16384 1", Some(1)),
        ("UPDATE 0", Some(0)),
        ("DELETE 12", Some(12)),
        ("MERGE 2", Some(2)),
        ("COPY 1000000", Some(1_000_000)),
        ("FETCH 10", Some(10)),
        ("MOVE 4", Some(4)),
        ("CREATE TABLE", None),
        ("BEGIN", None),
        ("INSERT 5", None),
        ("SELECT", None),
        ("SELECT x", None),
        ("SELECT -1", None),
        ("SELECT 99999999999999999999999", None),
        ("UPDATE 1 2", None),
        ("", None),
    ] {
        assert_eq!(command_rows(tag.as_bytes()), rows, "{tag}");
    }
}

use super::errors::tagged;

/// Walks a stream with a decoder, checking every step takes something and no more than given.
fn walk_frontend(d: &mut FrontendDecoder, data: &[u8]) -> Result<usize, WireError> {
    let mut at = 0;
    while let Some((frame, n)) = d.decode(&data[at..])? {
        assert!(n > 0 && n <= data.len() - at);
        assert_eq!(frame.raw, &data[at..at + n]);
        at += n;
    }
    Ok(at)
}

fn walk_backend(data: &[u8]) -> Result<usize, WireError> {
    let d = BackendDecoder::new(64 * 1024);
    let mut at = 0;
    while let Some((frame, n)) = d.decode(&data[at..])? {
        assert!(n > 0 && n <= data.len() - at);
        assert_eq!(frame.raw, &data[at..at + n]);
        at += n;
    }
    Ok(at)
}

/// A byte stream that mostly frames correctly: tags from the real sets, plausible lengths.
fn framed_stream(tags: &'static [u8]) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    proptest::collection::vec(
        (
            proptest::sample::select(tags),
            proptest::collection::vec(any::<u8>(), 0..24),
        ),
        0..12,
    )
    .prop_map(|msgs| msgs.iter().flat_map(|(t, b)| tagged(*t, b)).collect())
}

proptest::proptest! {
    #[test]
    fn any_bytes_frontend_error_or_frames(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = walk_frontend(&mut FrontendDecoder::default(), &data);
        let _ = walk_frontend(&mut FrontendDecoder::tagged(1024), &data);
    }

    #[test]
    fn any_bytes_backend_error_or_frames(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = walk_backend(&data);
    }

    #[test]
    fn framed_garbage_frontend(data in framed_stream(b"QPBEDCSHXdcfpF")) {
        let _ = walk_frontend(&mut FrontendDecoder::tagged(1024), &data);
    }

    #[test]
    fn framed_garbage_backend(data in framed_stream(b"RKSZCENTDGHWdc123nsItVAv")) {
        let _ = walk_backend(&data);
    }

    /// Fed a valid stream in two pieces, a decoder finds the same frames as in one.
    #[test]
    fn split_anywhere_same_frames(cut in 0usize..400) {
        let mut stream = Vec::new();
        for m in all_frontend().iter().filter(|m| !is_startup_phase(m)) {
            stream.extend(fe_bytes(m));
        }
        let cut = cut.min(stream.len());
        let mut d = FrontendDecoder::tagged(DEFAULT_MAX_MESSAGE);
        let first = walk_frontend(&mut d, &stream[..cut]).unwrap();
        let rest = walk_frontend(&mut d, &stream[first..]).unwrap();
        proptest::prop_assert_eq!(first + rest, stream.len());
    }
}
