//! The gateway's SCRAM-SHA-256 exchange, both sides, with attacker-chosen messages: an error or
//! a result, never a panic. The first byte splits the input into the two messages.
#![no_main]
use breakglass_core::pgwire::scram::{Client, Keys, Server};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let (a, b) = rest.split_at(*first as usize * rest.len() / 256);
    let keys = Keys::derive(b"pw", b"salt", 1);
    if let Ok((server, _)) = Server::start(a, &keys, "servernonce") {
        let _ = server.finish(b, &keys);
    }
    let (mut client, _) = Client::start(b"pw", "clientnonce");
    if client.answer(a).is_ok() {
        let _ = client.verify(b);
    }
});
