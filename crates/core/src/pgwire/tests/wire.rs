//! A test connection: messages built as bytes, decoded by the real decoders and fed to a
//! recorder, each step one millisecond later.

use crate::pgwire::backend::{CopyResponse, FieldDescription, TransactionStatus};
use crate::pgwire::encode::{self, ErrorSpec, Severity, encode_backend, encode_frontend};
use crate::pgwire::frontend::{Bind, Execute, FunctionCall, Parse, Target, TargetKind};
use crate::pgwire::*;

pub struct Conn {
    pub rec: Recorder,
    pub now: u64,
}

impl Conn {
    pub fn new() -> Conn {
        Conn::with(RecorderLimits::default())
    }

    pub fn with(limits: RecorderLimits) -> Conn {
        Conn {
            rec: Recorder::new(limits),
            now: 1000,
        }
    }

    /// Feeds every client message in `bytes`; the first recorder error, if any.
    pub fn c(&mut self, bytes: Vec<u8>) -> Result<(), RecorderError> {
        let mut d = FrontendDecoder::tagged(DEFAULT_MAX_MESSAGE);
        let mut at = 0;
        let mut result = Ok(());
        while let Some((frame, n)) = d.decode(&bytes[at..]).unwrap() {
            self.now += 1;
            let r = self.rec.frontend(&frame.message, self.now);
            result = result.and(r);
            at += n;
        }
        assert_eq!(at, bytes.len());
        result
    }

    /// Feeds every server message in `bytes`.
    pub fn s(&mut self, bytes: Vec<u8>) -> Result<(), RecorderError> {
        let d = BackendDecoder::default();
        let mut at = 0;
        let mut result = Ok(());
        while let Some((frame, n)) = d.decode(&bytes[at..]).unwrap() {
            self.now += 1;
            let r = self.rec.backend(&frame.message, self.now);
            result = result.and(r);
            at += n;
        }
        assert_eq!(at, bytes.len());
        result
    }

    pub fn records(&mut self) -> Vec<StatementRecord> {
        self.rec.take_records()
    }
}

fn fe(m: FrontendMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frontend(&m, &mut out).unwrap();
    out
}

fn be(m: BackendMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_backend(&m, &mut out).unwrap();
    out
}

/// Concatenates message bytes.
pub fn all(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ---- client ----

pub fn query(sql: &str) -> Vec<u8> {
    fe(FrontendMessage::Query(sql.as_bytes()))
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    fe(FrontendMessage::Parse(Parse {
        name: name.as_bytes(),
        query: sql.as_bytes(),
        param_types: vec![],
    }))
}

/// Text-format parameters (`None` = NULL).
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    fe(FrontendMessage::Bind(Bind {
        portal: portal.as_bytes(),
        statement: statement.as_bytes(),
        param_formats: vec![],
        params: params.iter().map(|p| p.map(str::as_bytes)).collect(),
        result_formats: vec![],
    }))
}

pub fn bind_formats(statement: &str, formats: &[Format], params: &[Option<&[u8]>]) -> Vec<u8> {
    fe(FrontendMessage::Bind(Bind {
        portal: b"",
        statement: statement.as_bytes(),
        param_formats: formats.to_vec(),
        params: params.to_vec(),
        result_formats: vec![Format::Binary],
    }))
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    fe(FrontendMessage::Execute(Execute {
        portal: portal.as_bytes(),
        max_rows,
    }))
}

pub fn describe_portal(name: &str) -> Vec<u8> {
    fe(FrontendMessage::Describe(Target {
        kind: TargetKind::Portal,
        name: name.as_bytes(),
    }))
}

pub fn describe_statement(name: &str) -> Vec<u8> {
    fe(FrontendMessage::Describe(Target {
        kind: TargetKind::Statement,
        name: name.as_bytes(),
    }))
}

pub fn close_statement(name: &str) -> Vec<u8> {
    fe(FrontendMessage::Close(Target {
        kind: TargetKind::Statement,
        name: name.as_bytes(),
    }))
}

pub fn sync() -> Vec<u8> {
    fe(FrontendMessage::Sync)
}

pub fn flush() -> Vec<u8> {
    fe(FrontendMessage::Flush)
}

pub fn copy_data(data: &[u8]) -> Vec<u8> {
    fe(FrontendMessage::CopyData(data))
}

pub fn copy_done() -> Vec<u8> {
    fe(FrontendMessage::CopyDone)
}

pub fn copy_fail(why: &str) -> Vec<u8> {
    fe(FrontendMessage::CopyFail(why.as_bytes()))
}

pub fn function_call(oid: u32, args: &[Option<&[u8]>]) -> Vec<u8> {
    fe(FrontendMessage::FunctionCall(FunctionCall {
        function: oid,
        arg_formats: vec![Format::Binary],
        args: args.to_vec(),
        result_format: Format::Binary,
    }))
}

// ---- server ----

pub fn parse_complete() -> Vec<u8> {
    be(BackendMessage::ParseComplete)
}

pub fn bind_complete() -> Vec<u8> {
    be(BackendMessage::BindComplete)
}

pub fn close_complete() -> Vec<u8> {
    be(BackendMessage::CloseComplete)
}

pub fn no_data() -> Vec<u8> {
    be(BackendMessage::NoData)
}

pub fn param_desc(n: usize) -> Vec<u8> {
    be(BackendMessage::ParameterDescription(vec![25; n]))
}

pub fn row_desc(columns: usize) -> Vec<u8> {
    let f = FieldDescription {
        name: b"c",
        table_oid: 0,
        column: 0,
        type_oid: 25,
        type_size: -1,
        type_modifier: -1,
        format: 0,
    };
    let mut out = Vec::new();
    encode::row_description(&mut out, &vec![f; columns]).unwrap();
    out
}

pub fn data_row(values: &[&str]) -> Vec<u8> {
    let vs: Vec<Option<&[u8]>> = values.iter().map(|v| Some(v.as_bytes())).collect();
    let mut out = Vec::new();
    encode::data_row(&mut out, &vs).unwrap();
    out
}

pub fn complete(tag: &str) -> Vec<u8> {
    be(BackendMessage::CommandComplete(
        crate::pgwire::backend::CommandComplete {
            tag: tag.as_bytes(),
        },
    ))
}

pub fn empty_query() -> Vec<u8> {
    be(BackendMessage::EmptyQueryResponse)
}

pub fn suspended() -> Vec<u8> {
    be(BackendMessage::PortalSuspended)
}

pub fn ready(status: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let s = match status {
        b'T' => TransactionStatus::InTransaction,
        b'E' => TransactionStatus::Failed,
        _ => TransactionStatus::Idle,
    };
    encode::ready_for_query(&mut out, s);
    out
}

pub fn error(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode::error_response(
        &mut out,
        &ErrorSpec {
            severity: Severity::Error,
            sqlstate: sqlstate.into(),
            message: message.into(),
            detail: None,
            hint: None,
        },
    )
    .unwrap();
    out
}

pub fn notice(message: &str) -> Vec<u8> {
    let body = encode::fields_body(&[(b'S', b"NOTICE"), (b'M', message.as_bytes())]).unwrap();
    be(BackendMessage::NoticeResponse(
        crate::pgwire::backend::Fields { body: &body },
    ))
}

pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode::parameter_status(&mut out, name, value).unwrap();
    out
}

pub fn copy_in(columns: usize) -> Vec<u8> {
    be(BackendMessage::CopyInResponse(CopyResponse {
        format: Format::Text,
        columns: vec![Format::Text; columns],
    }))
}

pub fn copy_out(columns: usize) -> Vec<u8> {
    be(BackendMessage::CopyOutResponse(CopyResponse {
        format: Format::Text,
        columns: vec![Format::Text; columns],
    }))
}

pub fn server_copy_data(data: &[u8]) -> Vec<u8> {
    be(BackendMessage::CopyData(data))
}

pub fn server_copy_done() -> Vec<u8> {
    be(BackendMessage::CopyDone)
}

pub fn function_result(v: &[u8]) -> Vec<u8> {
    be(BackendMessage::FunctionCallResponse(Some(v)))
}

// ---- records ----

pub fn ok(tag: &str, rows: Option<u64>) -> Outcome {
    Outcome::Ok {
        tag: tag.into(),
        rows,
    }
}

pub fn err(sqlstate: &str, message: &str) -> Outcome {
    Outcome::Error {
        sqlstate: sqlstate.into(),
        message: message.into(),
    }
}

pub fn texts(records: &[StatementRecord]) -> Vec<&str> {
    records.iter().map(|r| r.text.as_str()).collect()
}

pub fn outcomes(records: &[StatementRecord]) -> Vec<Outcome> {
    records.iter().map(|r| r.outcome.clone()).collect()
}
