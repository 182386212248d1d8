#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let _ = breakglass_core::audit::export::verify_export(data, Some(&key));
    let _ = breakglass_core::audit::export::verify_export(data, None);
});
