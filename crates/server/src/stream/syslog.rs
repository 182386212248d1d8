//! Delivery of octet-counted RFC 5424 frames over TCP, with TLS (RFC 5425) unless the stream
//! says `tls: none` (validation allows that only to this host).
//!
//! Syslog over TCP has no acknowledgement, so each delivery is one connection: connect (and
//! handshake), write the frames, close our side (TLS close_notify, then TCP FIN), and wait for
//! the receiver to close its side. A receiver that has reached our end of stream has read
//! every frame before it; one that dies before reading them resets the connection instead.
//! Anything short of that clean close is a failure, retried from the same position (so the
//! receiver may see some frames twice: their `seq` tells).
//!
//! Certificates are checked by rustls against `ca_file` (or the Mozilla roots) and the
//! expected name; any TLS error fails the delivery. There is no fallback to plain TCP.

use breakglass_core::policy::SyslogTarget;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The TLS client configuration for a stream: its CA file's certificates, else the Mozilla
/// roots; TLS 1.2 and 1.3 with rustls' safe defaults.
pub fn client_config(t: &SyslogTarget) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read CA certificates from {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!(
                    "{path} holds no PEM certificate: give the CA that signed the receiver's certificate"
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("bad CA certificate in {path}: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sends `payload` (whole frames) on one connection and waits for the receiver's close.
pub async fn deliver(
    t: &SyslogTarget,
    tls: Option<&Arc<ClientConfig>>,
    payload: &[u8],
) -> Result<(), String> {
    let at = format!("{}:{}", t.host, t.port);
    let tcp = timeout(t.timeout, TcpStream::connect((t.host.as_str(), t.port)))
        .await
        .map_err(|_| format!("connecting to {at} timed out"))?
        .map_err(|e| format!("cannot connect to {at}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match (t.tls, tls) {
        (true, Some(config)) => {
            let name = t.server_name.as_deref().unwrap_or(&t.host).to_string();
            let name =
                ServerName::try_from(name).map_err(|e| format!("{at}: bad server name: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let stream = timeout(t.timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| format!("TLS handshake with {at} timed out"))?
                .map_err(|e| format!("TLS handshake with {at} failed: {e}"))?;
            exchange(stream, t, &at, payload).await
        }
        (true, None) => Err(format!("{at}: no TLS configuration (refusing plain TCP)")),
        (false, _) => exchange(tcp, t, &at, payload).await,
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    t: &SyslogTarget,
    at: &str,
    payload: &[u8],
) -> Result<(), String> {
    // Writing may take longer than one timeout for a large batch on a slow link: allow one
    // timeout per MiB on top.
    let budget = t
        .timeout
        .saturating_mul(1 + u32::try_from(payload.len() >> 20).unwrap_or(u32::MAX));
    timeout(budget, async {
        s.write_all(payload).await?;
        s.flush().await?;
        s.shutdown().await
    })
    .await
    .map_err(|_| format!("writing to {at} timed out"))?
    .map_err(|e| format!("writing to {at} failed: {e}"))?;
    // The receiver closes once it has read to our end of stream.
    let mut buf = [0u8; 4096];
    let mut extra = 0usize;
    loop {
        match timeout(t.timeout, s.read(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "{at} did not close the connection within {} after our end of stream: cannot tell it read the frames",
                    breakglass_core::duration::format(t.timeout)
                ));
            }
            Ok(Ok(0)) => return Ok(()),
            // A TLS peer that closes TCP without close_notify has still read to our end.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(format!("{at} broke the connection: {e}")),
            Ok(Ok(n)) => {
                // Receivers send nothing; do not let one feed us forever.
                extra += n;
                if extra > 1 << 20 {
                    return Err(format!("{at} sends data instead of closing"));
                }
            }
        }
    }
}

/// This machine's host name (for HOSTNAME), or `-`.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}
