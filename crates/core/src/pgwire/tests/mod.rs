//! Tests of the wire codec, the recorder and redaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod frames;
mod recorder;
mod recorder_edges;
mod redact;
mod wire;
