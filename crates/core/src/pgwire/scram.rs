//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the server side, for clients
//! logging in to the gateway, and the client side, for the gateway logging in upstream.
//!
//! Hand-written: no maintained crate offers the server side without a whole protocol stack,
//! and the exchange is four messages of arithmetic. No channel binding (`SCRAM-SHA-256-PLUS`
//! is not offered; a client asking for it with `p=` is refused), as PostgreSQL does without TLS.
//! The user name in the client-first-message is ignored (PostgreSQL sends it empty and takes the
//! StartupMessage's `user`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const MECHANISM: &str = "SCRAM-SHA-256";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("SCRAM: {0}")]
    Malformed(&'static str),
    #[error("SCRAM: channel binding was asked for, and this server does not offer it")]
    ChannelBinding,
    #[error("SCRAM: the nonce does not continue this exchange")]
    Nonce,
    #[error("password authentication failed")]
    BadProof,
    #[error("SCRAM: the server's signature is wrong: it does not know the password")]
    BadServerSignature,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn salted(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out[..]);
    out
}

/// The keys a server keeps for one password (what PostgreSQL stores as a verifier).
pub struct Keys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    stored_key: [u8; 32],
    server_key: Zeroizing<[u8; 32]>,
}

impl Keys {
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Keys {
        let sp = salted(password, salt, iterations);
        let client_key = Zeroizing::new(hmac(&sp[..], b"Client Key"));
        Keys {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(&client_key[..]).into(),
            server_key: Zeroizing::new(hmac(&sp[..], b"Server Key")),
        }
    }
}

/// `a=value` attributes of a SCRAM message, in order.
fn attrs(msg: &str) -> Result<Vec<(char, &str)>, ScramError> {
    msg.split(',')
        .map(|part| {
            let mut c = part.chars();
            match (c.next(), c.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(ScramError::Malformed(
                    "an attribute is not of the form a=value",
                )),
            }
        })
        .collect()
}

fn attr<'a>(a: &[(char, &'a str)], k: char) -> Result<&'a str, ScramError> {
    a.iter()
        .find(|(c, _)| *c == k)
        .map(|(_, v)| *v)
        .ok_or(ScramError::Malformed("a required attribute is missing"))
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.len() <= 256 && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The server side of one exchange.
pub struct Server {
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
    nonce: String,
}

impl Server {
    /// Reads the client-first-message; returns the server-first-message to send.
    /// `server_nonce` is fresh randomness (printable, no comma), e.g. base64 of 18 random bytes.
    pub fn start(
        client_first: &[u8],
        keys: &Keys,
        server_nonce: &str,
    ) -> Result<(Server, String), ScramError> {
        let msg = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first-message is not UTF-8"))?;
        let (cb, rest) = msg.split_once(',').ok_or(ScramError::Malformed(
            "client-first-message has no GS2 header",
        ))?;
        match cb {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("unknown channel-binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed(
            "client-first-message has no GS2 header",
        ))?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("bad authorization identity"));
        }
        let a = attrs(bare)?;
        if a.first().map(|(k, _)| *k) == Some('m') {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
        let client_nonce = attr(&a, 'r')?;
        if !printable_nonce(client_nonce) || !printable_nonce(server_nonce) {
            return Err(ScramError::Malformed("the nonce is not printable ASCII"));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64().encode(&keys.salt),
            keys.iterations
        );
        Ok((
            Server {
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                gs2_header: format!("{cb},{authzid},"),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client-final-message's proof; returns the server-final-message.
    pub fn finish(self, client_final: &[u8], keys: &Keys) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final-message is not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final-message has no proof"))?;
        let a = attrs(without_proof)?;
        let cb = b64()
            .decode(attr(&a, 'c')?)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if cb != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        if !bool::from(attr(&a, 'r')?.as_bytes().ct_eq(self.nonce.as_bytes())) {
            return Err(ScramError::Nonce);
        }
        let proof = b64()
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed("the proof is not 32 bytes"));
        }
        let auth = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let sig = hmac(&keys.stored_key, auth.as_bytes());
        let client_key: Zeroizing<Vec<u8>> =
            Zeroizing::new(proof.iter().zip(sig).map(|(p, s)| p ^ s).collect());
        let got: [u8; 32] = Sha256::digest(&client_key[..]).into();
        if !bool::from(got.ct_eq(&keys.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_sig = hmac(&keys.server_key[..], auth.as_bytes());
        Ok(format!("v={}", b64().encode(server_sig)))
    }
}

/// The client side of one exchange.
pub struct Client {
    password: Zeroizing<Vec<u8>>,
    client_first_bare: String,
    nonce: String,
    expected_server_sig: Option<[u8; 32]>,
}

impl Client {
    /// The client-first-message to send (no channel binding, empty user name).
    pub fn start(password: &[u8], client_nonce: &str) -> (Client, String) {
        let bare = format!("n=,r={client_nonce}");
        (
            Client {
                password: Zeroizing::new(password.to_vec()),
                client_first_bare: bare.clone(),
                nonce: client_nonce.to_string(),
                expected_server_sig: None,
            },
            format!("n,,{bare}"),
        )
    }

    /// Reads the server-first-message; returns the client-final-message.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first-message is not UTF-8"))?;
        let a = attrs(msg)?;
        let nonce = attr(&a, 'r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = b64()
            .decode(attr(&a, 's')?)
            .map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        let iterations: u32 = attr(&a, 'i')?
            .parse()
            .ok()
            .filter(|i| (1..=10_000_000).contains(i))
            .ok_or(ScramError::Malformed("bad iteration count"))?;
        let sp = salted(&self.password, &salt, iterations);
        let client_key = Zeroizing::new(hmac(&sp[..], b"Client Key"));
        let stored_key: [u8; 32] = Sha256::digest(&client_key[..]).into();
        let without_proof = format!("c={},r={nonce}", b64().encode("n,,"));
        let auth = format!("{},{msg},{without_proof}", self.client_first_bare);
        let sig = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(k, s)| k ^ s).collect();
        let server_key = Zeroizing::new(hmac(&sp[..], b"Server Key"));
        self.expected_server_sig = Some(hmac(&server_key[..], auth.as_bytes()));
        Ok(format!("{without_proof},p={}", b64().encode(proof)))
    }

    /// Checks the server-final-message (the server proves it knew the password too).
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("server-final-message is not UTF-8"))?;
        let a = attrs(msg)?;
        if let Ok(e) = attr(&a, 'e') {
            let _ = e;
            return Err(ScramError::BadServerSignature);
        }
        let v = b64()
            .decode(attr(&a, 'v')?)
            .map_err(|_| ScramError::Malformed("the server signature is not base64"))?;
        match &self.expected_server_sig {
            Some(want) if bool::from(v.as_slice().ct_eq(want)) => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil".
    #[test]
    fn rfc7677_example() {
        let salt = b64().decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = Keys::derive(b"pencil", &salt, 4096);
        let (srv, first) = Server::start(
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            &keys,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = srv
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", &keys)
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn client_and_server_agree_and_a_wrong_password_fails() {
        let keys = Keys::derive(b"right", b"saltsaltsalt", 64);
        let (mut c, first) = Client::start(b"right", "cnonce");
        let (s, sfirst) = Server::start(first.as_bytes(), &keys, "snonce").unwrap();
        let fin = c.answer(sfirst.as_bytes()).unwrap();
        let sfin = s.finish(fin.as_bytes(), &keys).unwrap();
        c.verify(sfin.as_bytes()).unwrap();

        let (mut c, first) = Client::start(b"wrong", "cnonce");
        let (s, sfirst) = Server::start(first.as_bytes(), &keys, "snonce").unwrap();
        let fin = c.answer(sfirst.as_bytes()).unwrap();
        assert_eq!(s.finish(fin.as_bytes(), &keys), Err(ScramError::BadProof));
    }

    #[test]
    fn hostile_messages_are_errors() {
        let keys = Keys::derive(b"x", b"s", 1);
        for m in [
            &b""[..],
            b"n",
            b"p=tls-server-end-point,,n=,r=a",
            b"n,,",
            b"n,,r",
            b"n,,m=x,r=a",
            b"n,,n=,r=a,b",
            b"\xff\xfe",
            b"q,,n=,r=abc",
        ] {
            assert!(Server::start(m, &keys, "s").is_err(), "{m:?}");
        }
        let (s, _) = Server::start(b"n,,n=,r=abc", &keys, "def").unwrap();
        assert!(s.finish(b"c=biws,r=abcdef,p=!!", &keys).is_err());
        let (s, _) = Server::start(b"n,,n=,r=abc", &keys, "def").unwrap();
        assert_eq!(
            s.finish(b"c=biws,r=abcXXX,p=AAAA", &keys),
            Err(ScramError::Nonce)
        );
        let (mut c, _) = Client::start(b"x", "abc");
        assert!(c.answer(b"r=abc,s=AA==,i=1").is_err(), "nonce not extended");
        assert!(c.answer(b"r=abcd,s=AA==,i=0").is_err());
        assert!(c.verify(b"v=AAAA").is_err());
    }

    proptest::proptest! {
        /// Any bytes on either side: an error or a result, never a panic.
        #[test]
        fn any_bytes_are_an_error_or_a_result(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let keys = Keys::derive(b"pw", b"salt", 1);
            if let Ok((s, _)) = Server::start(&a, &keys, "sn") {
                let _ = s.finish(&b, &keys);
            }
            let (mut c, _) = Client::start(b"pw", "cn");
            if c.answer(&a).is_ok() {
                let _ = c.verify(&b);
            }
        }
    }
}
