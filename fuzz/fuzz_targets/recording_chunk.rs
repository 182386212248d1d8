//! The recording chunk decoder (chunks come from hosts the requester may control) and the
//! renderings a reviewer reads: never a panic, whatever the bytes.
#![no_main]
use breakglass_core::recording::decode_chunk;
use breakglass_core::recording::render::{Asciicast, SessionMeta, Transcript};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode_chunk(data) {
        let meta = SessionMeta {
            session: "s".into(),
            grant: "g".into(),
            host: "h".into(),
            cols: 80,
            rows: 24,
            started: 0,
            command: None,
        };
        let (mut cast, _) = Asciicast::start(&meta);
        let (mut text, _) = Transcript::start(&meta);
        for r in &records {
            if let Some(l) = cast.line(r) {
                let _: serde_json::Value = serde_json::from_str(&l).expect("asciicast lines are JSON");
            }
            let _ = text.text(r);
        }
        let _ = cast.finish(0);
    }
});
