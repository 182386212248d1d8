//! The data directory and the keys in it.
//!
//! ```text
//! DIR/breakglass.db        SQLite store (WAL), unless the store is PostgreSQL:
//! DIR/database.url         the PostgreSQL URL `init --database` was given (mode 0600; the
//!                          flag `--database` or BREAKGLASS_DATABASE_URL override it)
//! DIR/keys/kek.key         32-byte key-encryption key (mode 0600); or BREAKGLASS_KEK_FILE
//! DIR/audit-key.pem        the audit checkpoint public key (SPKI PEM, for openssl)
//! ```
//! The directory and everything in it are owner-only (dirs 0700, files 0600), whatever mode
//! the directory had: see [`make_private`].
//! Every secret kept in the database (TOTP seeds, the audit signing key) is sealed with
//! XChaCha20-Poly1305 under the KEK, with what it is bound in as associated data, so a sealed
//! value copied to another row or purpose does not open.

use breakglass_core::audit;
use breakglass_core::time::Timestamp;
use breakglass_store::postgres::PgStore;
use breakglass_store::sqlite::SqliteStore;
use breakglass_store::{Change, Store, StoreError};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use zeroize::Zeroizing;

const META_SIGNING_KEY: &str = "audit_signing_key";
const META_INSTALL_ID: &str = "install_id";
const META_SSH_CA: &str = "ssh_ca_key";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("data directory {0} is not initialised: run `breakglass init --data-dir {0}` first")]
    NotInitialised(String),
    #[error("cannot read key-encryption key {path}: {err}")]
    ReadKek { path: String, err: std::io::Error },
    #[error("key-encryption key {0} must be exactly 32 bytes")]
    BadKek(String),
    #[error(
        "cannot decrypt {0}: the key-encryption key does not match this database (wrong kek.key or BREAKGLASS_KEK_FILE?)"
    )]
    Unseal(String),
    #[error("I/O error on {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error(
        "cannot use the PostgreSQL store {url}: {err} (check the URL, that the server is up and \
         that the role may log in and create tables)"
    )]
    Database { url: String, err: String },
    #[error(
        "the database URL {0} is not a PostgreSQL URL: give postgres://USER:PASSWORD@HOST:PORT/DB"
    )]
    BadDatabaseUrl(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Paths inside a data directory, and where its store is.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
    /// A PostgreSQL URL given on the command line (see [`DataDir::database_url`]).
    pub database: Option<String>,
}

/// The environment variable naming the PostgreSQL store.
pub const DATABASE_URL_ENV: &str = "BREAKGLASS_DATABASE_URL";

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir {
            root: root.into(),
            database: None,
        }
    }

    /// The same directory with its store in the PostgreSQL database at `url` (None: as
    /// recorded or SQLite).
    pub fn with_database(mut self, url: Option<String>) -> Self {
        self.database = url.filter(|u| !u.is_empty());
        self
    }

    pub fn database_url_path(&self) -> PathBuf {
        self.root.join("database.url")
    }

    /// The PostgreSQL URL of the store, if it is PostgreSQL: the flag, else
    /// BREAKGLASS_DATABASE_URL, else what `init --database` recorded in the directory.
    pub fn database_url(&self) -> Result<Option<String>, KeyError> {
        if let Some(u) = &self.database {
            return Ok(Some(u.clone()));
        }
        if let Some(u) = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Ok(Some(u));
        }
        let path = self.database_url_path();
        match std::fs::read_to_string(&path) {
            Ok(u) if !u.trim().is_empty() => Ok(Some(u.trim().to_string())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(KeyError::Io {
                path: path.display().to_string(),
                err,
            }),
        }
    }
    pub fn db_path(&self) -> PathBuf {
        self.root.join("breakglass.db")
    }
    pub fn kek_path(&self) -> PathBuf {
        match std::env::var_os("BREAKGLASS_KEK_FILE") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => self.root.join("keys").join("kek.key"),
        }
    }
    pub fn audit_pub_path(&self) -> PathBuf {
        self.root.join("audit-key.pem")
    }
}

/// The key-encryption key. Zeroised on drop.
pub struct Kek(Zeroizing<[u8; 32]>);

impl Kek {
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut k[..]);
        Kek(k)
    }

    /// Encrypts `plaintext`, binding `aad` (what the value is and whose).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&*self.0).into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a valid key and nonce cannot fail.
        if let Ok(ct) = cipher.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        ) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// A 32-byte key for one `purpose`, derived from the KEK (HMAC-SHA256(KEK, purpose)): stable
    /// for the installation, independent of every other purpose's key.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(mut m) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0[..]) {
            m.update(b"breakglass key derivation\0");
            m.update(purpose.as_bytes());
            out.copy_from_slice(&m.finalize().into_bytes());
        }
        out
    }

    /// Decrypts a value sealed with the same `aad`.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < 24 + 16 {
            return Err(KeyError::Unseal(aad.to_string()));
        }
        let (nonce, ct) = sealed.split_at(24);
        let cipher = XChaCha20Poly1305::new((&*self.0).into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Unseal(aad.to_string()))
    }
}

/// Everything secret a running server needs.
pub struct Keys {
    pub kek: Kek,
    pub audit_signing: SigningKey,
    /// Checkpoint origin line and signer name: `breakglass/<install id>`.
    pub origin: String,
    /// The SSH user certificate authority.
    pub ssh_ca: std::sync::Arc<breakglass_connectors::ssh::Ca>,
}

impl Keys {
    pub fn audit_public(&self) -> VerifyingKey {
        self.audit_signing.verifying_key()
    }
}

/// What `init` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    pub data_dir: String,
    pub created_kek: bool,
    pub created_signing_key: bool,
    pub audit_public_key: String,
    pub origin: String,
    /// The SSH CA's public line, for sshd's TrustedUserCAKeys.
    pub ssh_ca_public_key: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |err| KeyError::Io {
        path: path.display().to_string(),
        err,
    }
}

/// Makes the data directory private, whatever its mode was: the directory and every directory
/// below it 0700, every file in them owner-only (0600, or stricter if it already was; the
/// database, its `-wal`/`-shm`, keys, the audit public key, anything else). Symbolic links are
/// neither followed nor changed. Run at `init` and whenever a server or admin command opens it.
pub fn make_private(root: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &Path, depth: u32) -> Result<(), KeyError> {
        let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
        if meta.permissions().mode() & 0o7777 != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            let mode = meta.permissions().mode();
            if meta.is_dir() && depth < 8 {
                walk(&path, depth + 1)?;
            } else if meta.is_file() && mode & 0o7177 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o600))
                    .map_err(io(&path))?;
            }
        }
        Ok(())
    }
    walk(root, 0)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn read_kek(path: &Path) -> Result<Kek, KeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|err| KeyError::ReadKek {
        path: path.display().to_string(),
        err,
    })?);
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::BadKek(path.display().to_string()))?;
    Ok(Kek(Zeroizing::new(arr)))
}

/// Creates the data directory, the store, the KEK and the audit signing key. Idempotent:
/// existing keys are never overwritten.
pub async fn init(dir: &DataDir, now: Timestamp) -> Result<InitReport, KeyError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir.root)
        .map_err(io(&dir.root))?;
    // DirBuilder's mode applies only to directories it creates; an existing one is tightened.
    make_private(&dir.root)?;
    let kek_path = dir.kek_path();
    let created_kek = if kek_path.exists() {
        false
    } else {
        if let Some(parent) = kek_path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io(parent))?;
        }
        let kek = Kek::generate();
        write_private(&kek_path, &kek.0[..])?;
        true
    };
    let kek = read_kek(&kek_path)?;
    let url = dir.database_url()?;
    if let Some(url) = &url {
        check_database_url(url)?;
        let path = dir.database_url_path();
        if std::fs::read_to_string(&path)
            .ok()
            .as_deref()
            .map(str::trim)
            != Some(url.as_str())
        {
            let _ = std::fs::remove_file(&path);
            write_private(&path, url.as_bytes())?;
        }
    }
    let store = open_store(dir, url.as_deref()).await?;
    let mut created_signing_key = false;
    if store.meta(META_SIGNING_KEY).await?.is_none() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let origin = format!("breakglass/{}", hex::encode(id));
        let sealed = kek.seal(META_SIGNING_KEY, &sk.to_bytes()[..]);
        store
            .commit(
                vec![
                    Change::PutMeta {
                        key: META_SIGNING_KEY.into(),
                        value: sealed,
                    },
                    Change::PutMeta {
                        key: META_INSTALL_ID.into(),
                        value: origin.clone().into_bytes(),
                    },
                ],
                vec![audit::NewEvent {
                    ts_ms: now.0,
                    kind: "store.initialised".into(),
                    actor: Some("operator".into()),
                    grant_id: None,
                    resource: None,
                    data: serde_json::json!({
                        "origin": origin,
                        "audit_public_key": base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            sk.verifying_key().as_bytes()
                        ),
                    }),
                }],
            )
            .await?;
        created_signing_key = true;
    }
    let keys = load_keys(&*store, kek).await?;
    let pem = audit::public_key_pem(&keys.audit_public());
    let pub_path = dir.audit_pub_path();
    if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(pem.as_str()) {
        let _ = std::fs::remove_file(&pub_path);
        write_private(&pub_path, pem.as_bytes())?;
    }
    drop(store);
    make_private(&dir.root)?;
    Ok(InitReport {
        data_dir: dir.root.display().to_string(),
        created_kek,
        created_signing_key,
        audit_public_key: pem,
        ssh_ca_public_key: keys.ssh_ca.public_line(),
        origin: keys.origin,
    })
}

/// The SSH CA seed, created (sealed, audited) the first time a data directory needs it — at
/// `init`, or at the first start of a data directory made before SSH support.
async fn ssh_ca(store: &dyn Store, kek: &Kek) -> Result<[u8; 32], KeyError> {
    if let Some(sealed) = store.meta(META_SSH_CA).await? {
        let seed = kek.open(META_SSH_CA, &sealed)?;
        return seed
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Unseal(META_SSH_CA.into()));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut seed[..]);
    let ca = breakglass_connectors::ssh::Ca::from_seed(&seed);
    store
        .commit(
            vec![Change::PutMeta {
                key: META_SSH_CA.into(),
                value: kek.seal(META_SSH_CA, &seed[..]),
            }],
            vec![audit::NewEvent {
                ts_ms: crate::clock::Clock::now(&crate::clock::SystemClock).0,
                kind: "ssh_ca.created".into(),
                actor: Some("system".into()),
                grant_id: None,
                resource: None,
                data: serde_json::json!({ "public_key": ca.public_line() }),
            }],
        )
        .await?;
    Ok(*seed)
}

async fn load_keys(store: &dyn Store, kek: Kek) -> Result<Keys, KeyError> {
    let sealed = store
        .meta(META_SIGNING_KEY)
        .await?
        .ok_or_else(|| KeyError::NotInitialised(String::new()))?;
    let seed = kek.open(META_SIGNING_KEY, &sealed)?;
    let seed: [u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Unseal(META_SIGNING_KEY.into()))?;
    let origin = store
        .meta(META_INSTALL_ID)
        .await?
        .and_then(|v| String::from_utf8(v).ok())
        .unwrap_or_else(|| "breakglass".into());
    let ca_seed = Zeroizing::new(ssh_ca(store, &kek).await?);
    Ok(Keys {
        audit_signing: SigningKey::from_bytes(&seed),
        ssh_ca: std::sync::Arc::new(breakglass_connectors::ssh::Ca::from_seed(&ca_seed)),
        kek,
        origin,
    })
}

/// Opens an initialised data directory.
pub async fn open(dir: &DataDir) -> Result<(Arc<dyn Store>, Keys), KeyError> {
    let not_init = || KeyError::NotInitialised(dir.root.display().to_string());
    let url = dir.database_url()?;
    if url.is_none() && !dir.db_path().exists() {
        return Err(not_init());
    }
    let kek_path = dir.kek_path();
    if !kek_path.exists() {
        return Err(not_init());
    }
    make_private(&dir.root)?;
    let kek = read_kek(&kek_path)?;
    let store = open_store(dir, url.as_deref()).await?;
    let keys = load_keys(&*store, kek).await.map_err(|e| match e {
        KeyError::NotInitialised(_) => not_init(),
        e => e,
    })?;
    Ok((store, keys))
}

/// The directory's store: PostgreSQL at `url`, else the SQLite file.
async fn open_store(dir: &DataDir, url: Option<&str>) -> Result<Arc<dyn Store>, KeyError> {
    Ok(match url {
        Some(url) => Arc::new(PgStore::open(url).await.map_err(|e| match e {
            StoreError::Db(err) => KeyError::Database {
                url: redact_url(url),
                err: err.to_string(),
            },
            StoreError::Unavailable(err) => KeyError::Database {
                url: redact_url(url),
                err,
            },
            e => KeyError::Store(e),
        })?),
        None => Arc::new(SqliteStore::open(&dir.db_path()).await?),
    })
}

/// A PostgreSQL URL the store can take: `postgres://` or `postgresql://`.
fn check_database_url(url: &str) -> Result<(), KeyError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(KeyError::BadDatabaseUrl(redact_url(url)))
    }
}

/// `url` without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &cred[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_purpose() {
        let k = Kek::generate();
        let s = k.seal("totp:alice", b"secret");
        assert_eq!(k.open("totp:alice", &s).unwrap().as_slice(), b"secret");
        assert!(k.open("totp:bob", &s).is_err());
        assert!(Kek::generate().open("totp:alice", &s).is_err());
        assert!(k.open("totp:alice", &s[..10]).is_err());
    }

    #[test]
    fn database_urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://bg:s3cret@db:5432/bg"),
            "postgres://bg:***@db:5432/bg"
        );
        assert_eq!(redact_url("postgres://db/bg"), "postgres://db/bg");
    }
}
