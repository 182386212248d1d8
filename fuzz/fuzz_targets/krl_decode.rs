//! OpenSSH KRLs read by `breakglass session` on hosts: never panic, and what we encode decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = breakglass_connectors::krl::decode(data) {
        let _ = k.revokes_serial(1);
    }
    let serials: Vec<u64> = data
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let enc = breakglass_connectors::krl::encode(b"ca", &serials, 1, 2, "fuzz");
    let dec = breakglass_connectors::krl::decode(&enc).expect("our own KRL decodes");
    assert!(serials.iter().all(|s| dec.revokes_serial(*s)));
});
