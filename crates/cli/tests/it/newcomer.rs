//! What a new user meets first, tried as they would: enrolling an authenticator from the
//! terminal (a QR code to scan).

use crate::harness::*;

/// The QR block of a CLI's output (lines of Unicode half blocks and spaces), decoded as a
/// scanner would: every inked half block is a light module, a space a dark one, as a terminal
/// with a dark background shows it. Returns the text the code holds.
fn decode_qr(out: &str) -> Option<String> {
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.chars().count() > 20 && l.chars().all(|c| matches!(c, ' ' | '▀' | '▄' | '█')))
        .collect();
    let w = rows.first()?.chars().count();
    // Two modules per character vertically; scale up so the detector sees solid modules.
    const S: usize = 4;
    let mut px = vec![vec![0u8; w]; rows.len() * 2];
    for (y, row) in rows.iter().enumerate() {
        for (x, c) in row.chars().enumerate().take(w) {
            let (top, bottom) = match c {
                '█' => (255, 255),
                '▀' => (255, 0),
                '▄' => (0, 255),
                _ => (0, 0),
            };
            px[2 * y][x] = top;
            px[2 * y + 1][x] = bottom;
        }
    }
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w * S, px.len() * S, |x, y| px[y / S][x / S]);
    let grids = img.detect_grids();
    grids.first()?.decode().ok().map(|(_, text)| text)
}

#[test]
fn totp_enroll_shows_a_scannable_qr_code_and_the_uri() {
    let s = Server::start(POLICY);
    s.add_user("alice", &["oncall"]);
    let alice = User::new(&s, "alice");
    alice.login();
    let r = alice.run_plain(&["mfa", "totp", "enroll"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let uri = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI in:\n{}", r.stdout))
        .to_string();
    assert!(r.stdout.contains('█'), "no QR block in:\n{}", r.stdout);
    assert_eq!(
        decode_qr(&r.stdout).as_deref(),
        Some(uri.as_str()),
        "the QR code does not hold the URI:\n{}",
        r.stdout
    );
    // The next step is printed with the binary as it was run, so it works as printed.
    assert!(
        r.stdout
            .contains(&format!("Then run: {BIN} mfa totp confirm CODE")),
        "{}",
        r.stdout
    );
    // --json is unchanged: the URI and the secret, no drawing.
    let j = alice.run(&["mfa", "totp", "enroll"]);
    assert!(j.ok, "{}{}", j.stdout, j.stderr);
    assert!(
        j.json["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(j.json["secret_base32"].is_string());
    assert!(!j.stdout.contains('█'), "{}", j.stdout);
}
