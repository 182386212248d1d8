//! An auditor without our code: a checkpoint verifies with `openssl pkeyutl` alone, and a
//! one-letter change to its body makes OpenSSL refuse it.

use base64::Engine;
use breakglass_core::audit::{Checkpoint, public_key_pem};
use ed25519_dalek::SigningKey;
use std::process::Command;

#[test]
fn checkpoint_verifies_with_openssl() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipping: openssl is not installed (scripts/test.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sk = SigningKey::from_bytes(&[42; 32]);
    let cp = Checkpoint {
        origin: "breakglass/openssl-test".into(),
        size: 1234,
        root: [7; 32],
    };
    let note = cp.sign(&sk, "breakglass/openssl-test");
    // Extract body and signature exactly as docs/AUDIT-FORMAT.md tells an auditor to.
    let (body, sigs) = note.split_once("\n\n").unwrap();
    let b64 = sigs.trim_end().rsplit(' ').next().unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    std::fs::write(dir.path().join("body"), format!("{body}\n")).unwrap();
    std::fs::write(dir.path().join("sig.raw"), &blob[4..]).unwrap();
    std::fs::write(
        dir.path().join("pub.pem"),
        public_key_pem(&sk.verifying_key()),
    )
    .unwrap();
    let verify = || {
        Command::new("openssl")
            .args([
                "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "body",
                "-sigfile", "sig.raw",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "openssl refused a good checkpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        dir.path().join("body"),
        format!("{}\n", body.replace("1234", "1235")),
    )
    .unwrap();
    assert!(
        !verify().status.success(),
        "openssl accepted a tampered checkpoint"
    );
}
