//! Tests of the wire codec, the recorder and redaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod errors;
mod frames;
mod recorder;
mod recorder_edges;
mod redact;
mod wire;
