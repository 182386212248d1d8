#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use zeroize::Zeroizing;

const FAST: Kdf = Kdf {
    m_kib: 8,
    t: 1,
    p: 1,
};

fn header() -> Header {
    Header {
        format: BUNDLE_FORMAT.into(),
        case_id: "gc-test".into(),
        origin: "test".into(),
        sealed_by: "sam".into(),
        created_at: 0,
        not_before: 0,
        expires_at: DAY_MS,
        threshold: 3,
        custodians: ["alice", "bob", "carol", "dave", "erin"]
            .map(String::from)
            .to_vec(),
        chain_head: None,
        resources: vec!["bastion".into()],
        journal_public_key: String::new(),
    }
}

fn pass(n: &str) -> Zeroizing<String> {
    Zeroizing::new(format!("{n} passphrase"))
}

fn sealed() -> (Bundle, String) {
    let h = header();
    let ps: Vec<_> = h.custodians.iter().map(|c| pass(c)).collect();
    let b = seal(h, b"the payload", &ps, FAST, [9u8; 32]).unwrap();
    let text = b.encode();
    (b, text)
}

#[test]
fn three_of_five_open_and_two_do_not() {
    let (_, text) = sealed();
    let b = decode(text.as_bytes()).unwrap();
    let shares: Vec<_> = ["alice", "carol", "erin"]
        .iter()
        .map(|c| unlock_share(&b, c, &pass(c)).unwrap())
        .collect();
    assert_eq!(&open_payload(&b, &shares).unwrap()[..], b"the payload");
    assert_eq!(
        open_payload(&b, &shares[..2]),
        Err(GlassCaseError::TooFewShares { need: 3, got: 2 })
    );
    assert_eq!(
        unlock_share(&b, "bob", "not bob's").unwrap_err(),
        GlassCaseError::WrongShare("bob".into())
    );
    assert!(matches!(
        unlock_share(&b, "mallory", "x"),
        Err(GlassCaseError::Input(_))
    ));
}

#[test]
fn every_changed_byte_is_refused() {
    let (_, text) = sealed();
    let bytes = text.as_bytes();
    let shares = |b: &Bundle| -> Option<Vec<Zeroizing<Vec<u8>>>> {
        ["alice", "bob", "carol"]
            .iter()
            .map(|c| unlock_share(b, c, &pass(c)).ok())
            .collect()
    };
    // Every 7th byte (the whole file is slow at Argon2 speed even with tiny costs).
    for i in (0..bytes.len()).step_by(7) {
        let mut t = bytes.to_vec();
        t[i] ^= 0x01;
        let opened = decode(&t)
            .ok()
            .and_then(|b| shares(&b).and_then(|s| open_payload(&b, &s).ok()));
        assert!(
            opened.is_none(),
            "byte {i} changed and the case still opened"
        );
    }
}

#[test]
fn the_ladder_never_exceeds_a_day() {
    let l = plan_ladder(Timestamp(1000), 14);
    assert_eq!(l.len(), 14);
    assert!(l.iter().all(|(a, b)| b.0 - a.0 == DAY_MS));
    assert!(l.windows(2).all(|w| w[0].1 == w[1].0));
    assert!(check_plan(&header().custodians, 3, 14).is_ok());
    assert!(check_plan(&header().custodians, 6, 14).is_err());
    assert!(check_plan(&header().custodians, 1, 14).is_err());
    assert!(check_plan(&header().custodians, 3, 0).is_err());
    assert!(check_plan(&["a".into(), "a".into()], 2, 1).is_err());
    assert!(check_plan(&["a\u{202e}".into(), "b".into()], 2, 1).is_err());
}

#[test]
fn journals_verify_only_with_their_key() {
    let seed = [5u8; 32];
    let body = JournalBody {
        case_id: "gc-test".into(),
        opened_at: 1,
        custodians: vec!["alice".into()],
        host: "laptop".into(),
        releases: vec![Release {
            kind: "ssh-certificate".into(),
            resource: "bastion".into(),
            serial: Some(7),
            valid_before: Some(2),
            version: None,
            role: None,
            at: 1,
        }],
    };
    let text = sign_journal(&body, &seed);
    assert_eq!(peek_case_id(text.as_bytes()).unwrap(), "gc-test");
    let pk = journal::public_key_of(&seed);
    assert_eq!(verify_journal(text.as_bytes(), &pk).unwrap(), body);
    let other = journal::public_key_of(&[6u8; 32]);
    assert_eq!(
        verify_journal(text.as_bytes(), &other),
        Err(GlassCaseError::BadSignature)
    );
    let forged = text.replace("gc-test", "gc-other");
    assert!(verify_journal(forged.as_bytes(), &pk).is_err());
}
