//! Requesters' SSH public key lines: a clear error or a key, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = breakglass_connectors::ssh::parse_public_key(s);
    }
});
