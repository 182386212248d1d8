//! The pure domain of breakglass.
//!
//! Everything here is deterministic and free of I/O: the policy language and its evaluation,
//! the grant state machine, the MFA rules (TOTP checking, replay and lock-out), and the
//! audit-chain mathematics (canonical event encoding, RFC 6962 Merkle tree, signed checkpoints,
//! verification). Time is always a parameter ([`time::Timestamp`]), never read from a clock,
//! so every rule can be tested at any instant.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod anomaly;
pub mod audit;
pub mod drill;
pub mod duration;
pub mod glass_case;
pub mod grant;
pub mod mfa;
pub mod pgwire;
pub mod policy;
pub mod recording;
pub mod time;
