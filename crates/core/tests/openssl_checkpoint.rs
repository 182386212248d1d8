//! An auditor without our code: a checkpoint verifies with `openssl pkeyutl` alone, using the
//! shell recipe from docs/AUDIT-FORMAT.md (read from the document itself, so the two cannot
//! drift apart), and a one-character change to the checkpoint makes OpenSSL refuse it.

use base64::Engine;
use breakglass_core::audit::{Checkpoint, public_key_pem};
use ed25519_dalek::SigningKey;
use std::path::Path;
use std::process::{Command, Output};

/// The `sh` block after the `recipe:verify-checkpoint` marker in the format document.
fn recipe() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/AUDIT-FORMAT.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let after = text
        .split_once("<!-- recipe:verify-checkpoint")
        .expect("the recipe marker is in docs/AUDIT-FORMAT.md")
        .1;
    let block = after.split_once("```sh\n").unwrap().1;
    block.split_once("```").unwrap().0.to_string()
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).output().is_ok()
}

fn run_recipe(dir: &Path, note: &str) -> Output {
    std::fs::write(dir.join("checkpoint.txt"), note).unwrap();
    Command::new("sh")
        .args(["-ec", &recipe()])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn checkpoint_verifies_with_openssl() {
    if !have("openssl", "version") {
        eprintln!("skipping: openssl is not installed (scripts/test.sh installs it)");
        return;
    }
    if !have("sh", "-c") {
        eprintln!("skipping: no sh to run the recipe with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sk = SigningKey::from_bytes(&[42; 32]);
    let name = "breakglass/0123456789abcdef";
    let cp = Checkpoint {
        origin: name.into(),
        size: 1234,
        root: [7; 32],
    };
    // Our signature plus a witness cosignature: the recipe picks ours by name.
    let witness = base64::engine::general_purpose::STANDARD.encode([9u8; 68]);
    let note = format!("{}\u{2014} witness.example {witness}\n", cp.sign(&sk, name));
    std::fs::write(
        dir.path().join("audit-key.pem"),
        public_key_pem(&sk.verifying_key()),
    )
    .unwrap();

    let out = run_recipe(dir.path(), &note);
    assert!(
        out.status.success(),
        "openssl refused a good checkpoint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));
    // The recipe extracted exactly the signed text and the 64-byte signature.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("body")).unwrap(),
        cp.body()
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("sig.raw")).unwrap().len(),
        64
    );

    // One changed character in the body: refused.
    let out = run_recipe(dir.path(), &note.replacen("\n1234\n", "\n1235\n", 1));
    assert!(
        !out.status.success(),
        "openssl accepted a tampered checkpoint"
    );
    // Another key: refused.
    let other = SigningKey::from_bytes(&[43; 32]);
    std::fs::write(
        dir.path().join("audit-key.pem"),
        public_key_pem(&other.verifying_key()),
    )
    .unwrap();
    assert!(!run_recipe(dir.path(), &note).status.success());
}
