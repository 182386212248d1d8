//! Every `WireError`, decoding and encoding, and what their messages say.

use crate::pgwire::encode::{self, encode_frontend};
use crate::pgwire::frontend::{Bind, FrontendMessage};
use crate::pgwire::*;

fn decode_fe(bytes: &[u8]) -> Result<Option<(FrontendFrame<'_>, usize)>, WireError> {
    FrontendDecoder::tagged(DEFAULT_MAX_MESSAGE).decode(bytes)
}

fn decode_startup(bytes: &[u8]) -> Result<Option<(FrontendFrame<'_>, usize)>, WireError> {
    FrontendDecoder::default().decode(bytes)
}

fn decode_be(bytes: &[u8]) -> Result<Option<(BackendFrame<'_>, usize)>, WireError> {
    BackendDecoder::default().decode(bytes)
}

/// One frame with a tag and a declared length, the body as given.
pub fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn startup(len: u32, code: u32, rest: &[u8]) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(rest);
    v
}

#[test]
fn every_wire_error() {
    use WireError as W;
    // Lengths.
    assert_eq!(
        decode_startup(&[0, 0, 0, 3]),
        Err(W::LengthTooSmall {
            msg: "startup packet",
            len: 3
        })
    );
    assert_eq!(
        decode_fe(b"Q\0\0\0\x03"),
        Err(W::LengthTooSmall {
            msg: "Query",
            len: 3
        })
    );
    assert_eq!(
        decode_be(b"Z\0\0\0\0"),
        Err(W::LengthTooSmall {
            msg: "ReadyForQuery",
            len: 0
        })
    );
    assert_eq!(
        decode_startup(&[0, 0, 0x28, 0x01]),
        Err(W::StartupTooLarge { len: 10_241 })
    );
    assert_eq!(
        decode_startup(&[0, 0, 0, 6, 0, 3]),
        Err(W::StartupTooShort { len: 6 })
    );
    let big = FrontendDecoder::tagged(1000).decode(b"Q\0\0\x03\xe9");
    assert_eq!(
        big,
        Err(W::MessageTooLarge {
            msg: "Query",
            len: 1001,
            max: 1000
        })
    );
    assert_eq!(
        BackendDecoder::new(100).decode(b"D\x7f\xff\xff\xff"),
        Err(W::MessageTooLarge {
            msg: "DataRow",
            len: 0x7fff_ffff,
            max: 100
        })
    );
    // Protocol versions and fixed-size packets.
    assert_eq!(
        decode_startup(&startup(9, 2 << 16, b"\0")),
        Err(W::UnsupportedProtocol { major: 2, minor: 0 })
    );
    assert_eq!(
        decode_startup(&startup(9, (3 << 16) | 2, b"\0")),
        Err(W::UnsupportedProtocol { major: 3, minor: 2 })
    );
    assert_eq!(
        decode_startup(&startup(12, SSL_REQUEST_CODE, &[0; 4])),
        Err(W::WrongLength {
            msg: "SSLRequest",
            expected: 8,
            len: 12
        })
    );
    assert_eq!(
        decode_startup(&startup(8, GSSENC_REQUEST_CODE, b""))
            .unwrap()
            .unwrap()
            .0
            .message,
        FrontendMessage::GssEncRequest
    );
    assert_eq!(
        decode_startup(&startup(12, CANCEL_REQUEST_CODE, &[0; 4])),
        Err(W::WrongLength {
            msg: "CancelRequest",
            expected: 16,
            len: 12
        })
    );
    assert_eq!(decode_startup(&[0x16, 3, 1, 2, 0]), Err(W::DirectTls));
    // Tags.
    assert_eq!(
        decode_fe(b"Z\0\0\0\x04"),
        Err(W::UnknownTag {
            side: Side::Frontend,
            tag: Tag(b'Z')
        })
    );
    assert_eq!(
        decode_be(b"Q\0\0\0\x04").unwrap_err().to_string(),
        "unknown backend message tag 'Q'"
    );
    assert_eq!(
        decode_fe(&[0, 0, 0, 0, 4]).unwrap_err().to_string(),
        "unknown frontend message tag 0x00"
    );
    // Strings, truncation, trailing bytes.
    assert_eq!(
        decode_fe(&tagged(b'Q', b"SELECT 1")),
        Err(W::MissingNul {
            msg: "Query",
            field: "query"
        })
    );
    assert_eq!(
        decode_startup(&startup(16, PROTOCOL_3_0, b"user\0bob")),
        Err(W::MissingNul {
            msg: "startup packet",
            field: "parameter value"
        })
    );
    assert_eq!(
        decode_startup(&startup(17, PROTOCOL_3_0, b"user\0bob\0")),
        Err(W::MissingNul {
            msg: "startup packet",
            field: "parameter name"
        })
    );
    assert_eq!(
        decode_fe(&tagged(b'B', b"\0\0\0\0\0\x02\0\0\0\x10ab")),
        Err(W::Truncated {
            msg: "Bind",
            field: "parameter"
        })
    );
    assert_eq!(
        decode_fe(&tagged(b'P', b"\0SELECT 1\0\x7f\xff")),
        Err(W::Truncated {
            msg: "Parse",
            field: "parameter types"
        })
    );
    assert_eq!(
        decode_fe(&tagged(b'S', b"x")),
        Err(W::TrailingBytes {
            msg: "Sync",
            extra: 1
        })
    );
    assert_eq!(
        decode_be(&tagged(b'Z', b"II")),
        Err(W::TrailingBytes {
            msg: "ReadyForQuery",
            extra: 1
        })
    );
    assert_eq!(
        decode_be(&tagged(b'E', b"SERROR\0")),
        Err(W::Truncated {
            msg: "ErrorResponse",
            field: "field code"
        })
    );
    // Invalid values.
    assert_eq!(
        decode_fe(&tagged(b'B', b"\0\0\0\x01\0\x02\0\0\0\0")),
        Err(W::Invalid {
            msg: "Bind",
            field: "parameter format code",
            value: 2
        })
    );
    assert_eq!(
        decode_fe(&tagged(b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0")),
        Err(W::Invalid {
            msg: "Bind",
            field: "parameter",
            value: -2
        })
    );
    assert_eq!(
        decode_fe(&tagged(b'P', b"\0q\0\xff\xff")),
        Err(W::Invalid {
            msg: "Parse",
            field: "parameter type count",
            value: -1
        })
    );
    assert!(matches!(
        decode_fe(&tagged(b'D', b"Xname\0")),
        Err(W::Invalid {
            msg: "Describe",
            ..
        })
    ));
    assert!(matches!(
        decode_be(&tagged(b'Z', b"X")),
        Err(W::Invalid {
            msg: "ReadyForQuery",
            value: 88,
            ..
        })
    ));
    assert!(matches!(
        decode_be(&tagged(b'R', &99i32.to_be_bytes())),
        Err(W::Invalid {
            msg: "Authentication",
            value: 99,
            ..
        })
    ));
    assert_eq!(
        decode_fe(&tagged(b'B', b"\0\0\0\x02\0\0\0\0\0\x01\0\0\0\0\0\0")),
        Err(W::FormatCount {
            msg: "Bind",
            formats: 2,
            values: 1
        })
    );
    assert_eq!(parse_encryption_answer(b'E'), Err(W::BadSslAnswer(b'E')));
    // Encoders.
    let mut out = b"kept".to_vec();
    assert_eq!(
        encode::query(&mut out, "SELECT '\0'"),
        Err(W::NulInString {
            msg: "Query",
            field: "query"
        })
    );
    assert_eq!(out, b"kept", "a failed encoder leaves the buffer as it was");
    let many = vec![None; 40_000];
    let bind = FrontendMessage::Bind(Bind {
        portal: b"",
        statement: b"",
        param_formats: vec![],
        params: many,
        result_formats: vec![],
    });
    assert!(matches!(
        encode_frontend(&bind, &mut out),
        Err(W::TooLong {
            msg: "Bind",
            len: 40_000,
            ..
        })
    ));
    assert_eq!(out, b"kept");
    let huge_startup = "x".repeat(11_000);
    assert!(matches!(
        encode::startup_message(&mut out, &huge_startup, None, None, &[]),
        Err(W::TooLong { .. })
    ));
    assert_eq!(out, b"kept");
}

#[test]
fn errors_name_what_was_wrong() {
    let e = decode_fe(&tagged(b'Q', b"SELECT 1")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Query: query is a string without its terminating NUL byte"
    );
    let e = decode_startup(&[0, 0, 0x28, 0x01]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "startup packet: declared length 10241 is over the limit of 10240 bytes"
    );
    let e = decode_startup(&startup(9, (3 << 16) | 1, b"\0")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "startup packet: unsupported protocol version 3.1 (only 3.0 is spoken)"
    );
}
