//! Recovery codes (NIST SP 800-63B look-up secrets): 10 codes of 120 random bits each, shown
//! once, stored as SHA-256 (≥ 112 bits, so a plain hash is enough), compared in constant time,
//! single use. A code signs in or adds a passkey, nothing else. Making a new set needs a fresh
//! TOTP code or passkey, replaces the old set and alerts security; using one alerts too.

use super::factors::{MfaAction, MfaProof, RECOVERY_PURPOSES};
use super::passkeys::factor_failure;
use super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::mfa::{self, TotpOutcome};
use breakglass_store::{Change, MfaRecord};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Codes in a set.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes per code (120 bits).
const CODE_BYTES: usize = 15;

/// A code as typed: upper case, without spaces or dashes.
fn normalise(code: &str) -> Zeroizing<String> {
    Zeroizing::new(
        code.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    )
}

fn code_hash(code: &str) -> [u8; 32] {
    let n = normalise(code);
    Sha256::digest(format!("breakglass recovery code:{}", n.as_str()).as_bytes()).into()
}

/// Whether `text` looks like a recovery code (24 base32 characters) rather than a TOTP code.
pub fn looks_like_recovery_code(text: &str) -> bool {
    normalise(text).len() == 24
}

/// A fresh code: 24 base32 characters in 6 groups of 4.
fn new_code() -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; CODE_BYTES]);
    rand::rngs::OsRng.fill_bytes(&mut b[..]);
    let plain = Zeroizing::new(mfa::secret_base32(&b[..]));
    let groups: Vec<&str> = plain
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Zeroizing::new(groups.join("-"))
}

impl Engine {
    /// Unused recovery codes of `who`.
    pub async fn recovery_remaining(&self, who: &Principal) -> Result<usize, ApiError> {
        Ok(self
            .store
            .recovery_codes(&who.name)
            .await?
            .iter()
            .filter(|c| c.used_at.is_none())
            .count())
    }

    /// Makes a new set of codes (the old set stops working), after a fresh TOTP code or
    /// passkey bound to this action. The codes are returned once and never stored in clear.
    pub async fn recovery_regenerate(
        &self,
        who: &Principal,
        proof: Option<&MfaProof>,
        session: Option<[u8; 32]>,
    ) -> Result<Vec<Zeroizing<String>>, ApiError> {
        if matches!(proof, Some(MfaProof::Recovery(_))) {
            return Err(ApiError::bad_hint(
                "a recovery code cannot make new recovery codes",
                "use your authenticator app's code or a passkey",
            ));
        }
        let action = MfaAction::new("recovery-codes", "", session);
        let (mut changes, mut events, _lock) = self.verify_proof(who, proof, &action).await?;
        let codes: Vec<Zeroizing<String>> = (0..RECOVERY_CODES).map(|_| new_code()).collect();
        let now = self.now();
        changes.push(Change::ReplaceRecoveryCodes {
            user: who.name.clone(),
            hashes: codes.iter().map(|c| code_hash(c)).collect(),
            at: now,
        });
        events.push(event(
            now,
            "mfa.recovery_codes_regenerated",
            Some(&who.name),
            None,
            json!({"count": RECOVERY_CODES}),
        ));
        self.commit(changes, events).await?;
        Ok(codes)
    }

    /// Checks a recovery code for `action` (login or adding a passkey only); a wrong one
    /// counts like a wrong TOTP code.
    pub(crate) async fn check_recovery(
        &self,
        who: &Principal,
        rec: &MfaRecord,
        code: &str,
        action: &MfaAction,
    ) -> Result<(Vec<Change>, Vec<NewEvent>), ApiError> {
        if !RECOVERY_PURPOSES.contains(&action.purpose.as_str()) {
            return Err(ApiError::bad_hint(
                format!(
                    "a recovery code cannot prove {}: it only signs in or adds a passkey",
                    action.purpose
                ),
                "use your authenticator app's code or a passkey",
            ));
        }
        let now = self.now();
        let given = code_hash(code);
        let codes = self.store.recovery_codes(&who.name).await?;
        let mut found = None;
        let mut used_before = false;
        for c in &codes {
            // Every stored hash is compared, in constant time.
            if bool::from(c.hash.as_slice().ct_eq(&given[..])) {
                if c.used_at.is_none() {
                    found = Some(given);
                } else {
                    used_before = true;
                }
            }
        }
        let remaining = codes.iter().filter(|c| c.used_at.is_none()).count();
        let (outcome, state) =
            mfa::check_factor(found.is_some(), now, &rec.state, &self.config.mfa);
        let mut changes = vec![Change::PutMfaState {
            user: who.name.clone(),
            expected_version: rec.version,
            state,
        }];
        if let (TotpOutcome::Accepted { .. }, Some(hash)) = (&outcome, found) {
            changes.push(Change::UseRecoveryCode {
                user: who.name.clone(),
                hash,
                at: now,
            });
            let events = vec![
                event(
                    now,
                    "mfa.verified",
                    Some(&who.name),
                    None,
                    json!({"purpose": action.purpose, "method": "recovery-code"}),
                ),
                event(
                    now,
                    "mfa.recovery_code_used",
                    Some(&who.name),
                    None,
                    json!({"purpose": action.purpose, "remaining": remaining.saturating_sub(1)}),
                ),
            ];
            return Ok((changes, events));
        }
        let why = if used_before {
            "recovery-code-used-before"
        } else {
            "wrong-recovery-code"
        };
        let (kind, err) = factor_failure(&outcome, &who.name, why);
        if !outcome.changes_state() {
            changes.clear();
        }
        self.metrics.mfa_failures.inc();
        self.commit(
            changes,
            vec![event(
                now,
                kind,
                Some(&who.name),
                None,
                json!({"purpose": action.purpose, "method": "recovery-code", "why": why}),
            )],
        )
        .await?;
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_120_bits_and_are_recognised() {
        let a = new_code();
        let b = new_code();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 29, "{}", a.as_str());
        assert!(looks_like_recovery_code(&a));
        assert!(!looks_like_recovery_code("123456"));
        assert_eq!(
            code_hash(&a),
            code_hash(&a.to_lowercase().replace('-', " "))
        );
    }
}
