#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let _ = breakglass_core::audit::Checkpoint::open(s, &key, "breakglass/fuzz");
        let _ = breakglass_core::audit::decode_body(data);
    }
});
