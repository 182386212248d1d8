//! The PostgreSQL wire decoders (the bytes a gateway relays from a client and from a server) and
//! the statement recorder fed with what they decode: never a panic, never a frame longer than
//! what was given. The first byte says where the client's bytes end and the server's begin.
#![no_main]
use breakglass_core::pgwire::redact::redact_sql;
use breakglass_core::pgwire::{BackendDecoder, FrontendDecoder, Recorder, RecorderLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let (client, server) = rest.split_at(*first as usize * rest.len() / 256);

    // A new connection: the untagged startup phase first.
    let mut startup = FrontendDecoder::new(1 << 16);
    let mut at = 0;
    while let Ok(Some((frame, n))) = startup.decode(&client[at..]) {
        assert!(n > 0 && n == frame.raw.len() && n <= client.len() - at);
        at += n;
    }

    // Past the startup: tagged messages both ways, into a recorder with small limits.
    let mut fd = FrontendDecoder::tagged(1 << 16);
    let bd = BackendDecoder::new(1 << 16);
    let mut rec = Recorder::new(RecorderLimits {
        max_text: 64,
        max_param: 16,
        max_params_total: 32,
        max_statements: 4,
        max_portals: 4,
        max_pending: 64,
    });
    let (mut ca, mut sa) = (0, 0);
    for now in 0u64.. {
        let mut progressed = false;
        if let Ok(Some((frame, n))) = fd.decode(&client[ca..]) {
            assert!(n > 0 && n == frame.raw.len() && n <= client.len() - ca);
            let _ = rec.frontend(&frame.message, now);
            ca += n;
            progressed = true;
        }
        if let Ok(Some((frame, n))) = bd.decode(&server[sa..]) {
            assert!(n > 0 && n == frame.raw.len() && n <= server.len() - sa);
            let _ = rec.backend(&frame.message, now);
            sa += n;
            progressed = true;
        }
        let _ = rec.take_records();
        if !progressed {
            break;
        }
    }
    let _ = rec.finish(u64::MAX);

    let _ = redact_sql(&String::from_utf8_lossy(rest), first & 1 == 0);
});
