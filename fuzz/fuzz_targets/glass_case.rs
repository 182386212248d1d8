//! Glass-case bundles and journals (files a custodian or an admin is handed): never panic, and
//! what decodes re-encodes to the same bytes (the one canonical form).
#![no_main]
use breakglass_core::glass_case as gc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = gc::decode(data) {
        assert_eq!(b.encode().as_bytes(), data);
        // No shares: refused before any key derivation.
        assert!(gc::open_payload(&b, &[]).is_err());
    }
    let _ = gc::peek_case_id(data);
    let pk = gc::public_key_of(&[7u8; 32]);
    let _ = gc::verify_journal(data, &pk);
});
