//! A syslog receiver for the tests: TCP on loopback, optionally TLS (rustls, a throw-away CA),
//! reading octet-counted frames (RFC 5425 §4.3) and parsing each message strictly against the
//! RFC 5424 grammar (header fields, SD-ELEMENT with escaped PARAM-VALUEs, BOM, UTF-8 MSG). It
//! closes its side when the sender has closed its own, as rsyslog does.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One received, well-formed message.
#[derive(Debug, Clone)]
pub struct Frame {
    pub conn: u32,
    pub pri: u32,
    pub hostname: String,
    pub msgid: String,
    pub params: Vec<(String, String)>,
    pub msg: Value,
    pub raw: String,
}

impl Frame {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn seq(&self) -> u64 {
        self.param("seq").and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

#[derive(Default)]
pub struct Receiver {
    pub frames: Mutex<Vec<Frame>>,
    /// Messages or framing that broke the grammar.
    pub violations: Mutex<Vec<String>>,
    /// Connections accepted; TLS handshakes that failed; plaintext sent to a TLS port.
    pub connections: AtomicU32,
    pub handshake_failures: AtomicU32,
    pub plaintext: AtomicU32,
    /// Pause after each frame (a slow SIEM).
    pub delay: Mutex<Duration>,
}

impl Receiver {
    pub fn seqs(&self) -> Vec<u64> {
        self.frames.lock().unwrap().iter().map(Frame::seq).collect()
    }
    /// Whether every seq 1..=head arrived (duplicates allowed).
    pub fn has_all(&self, head: u64) -> bool {
        let mut s = self.seqs();
        s.sort_unstable();
        s.dedup();
        head > 0 && s == (1..=head).collect::<Vec<_>>()
    }
}

/// A rustls server configuration from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    )
}

/// Starts receiving on `listener` (TLS when `tls` is given).
pub fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Arc<Receiver> {
    let r = Arc::new(Receiver::default());
    let rr = r.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let n = rr.connections.fetch_add(1, Ordering::SeqCst) + 1;
            let (r, tls) = (rr.clone(), tls.clone());
            std::thread::spawn(move || connection(&r, n, s, tls));
        }
    });
    r
}

/// A receiver on a free loopback port; returns it and the port.
pub fn start(tls: Option<Arc<rustls::ServerConfig>>) -> (Arc<Receiver>, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (serve(l, tls), port)
}

fn connection(r: &Receiver, n: u32, mut s: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    match tls {
        None => {
            read_frames(r, n, &mut s);
            // Our side closes after theirs: the sender takes that as "read to the end".
        }
        Some(config) => {
            let mut first = [0u8; 1];
            if s.peek(&mut first).unwrap_or(0) == 1 && first[0] != 0x16 {
                r.plaintext.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let mut conn = rustls::ServerConnection::new(config).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut s).is_err() {
                    r.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            let mut tls = rustls::StreamOwned::new(conn, s);
            read_frames(r, n, &mut tls);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }
}

fn read_frames(r: &Receiver, conn: u32, s: &mut impl Read) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Take every whole frame in the buffer.
        while let Some((len, skip)) = frame_len(&buf) {
            if buf.len() < skip + len {
                break;
            }
            let msg = buf[skip..skip + len].to_vec();
            buf.drain(..skip + len);
            match String::from_utf8(msg) {
                Ok(m) => match parse(&m) {
                    Ok(mut f) => {
                        f.conn = conn;
                        r.frames.lock().unwrap().push(f);
                    }
                    Err(e) => r.violations.lock().unwrap().push(format!("{e}: {m:?}")),
                },
                Err(_) => r.violations.lock().unwrap().push("MSG not UTF-8".into()),
            }
            let d = *r.delay.lock().unwrap();
            if !d.is_zero() {
                std::thread::sleep(d);
            }
        }
        if buf.len() > 8 && frame_len(&buf).is_none() {
            r.violations.lock().unwrap().push(format!(
                "bad frame header: {:?}",
                String::from_utf8_lossy(&buf[..8])
            ));
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => {
                // A sender killed mid-frame leaves a partial one: not a violation of ours.
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `MSG-LEN SP`: (length, bytes of the prefix).
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    let sp = buf.iter().take(8).position(|&b| b == b' ')?;
    let digits = &buf[..sp];
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((std::str::from_utf8(digits).ok()?.parse().ok()?, sp + 1))
}

fn field<'a>(rest: &mut &'a str, max: usize, what: &str) -> Result<&'a str, String> {
    let (f, r) = rest.split_once(' ').ok_or(format!("no {what}"))?;
    if f.is_empty() || f.len() > max || !f.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!("bad {what} {f:?}"));
    }
    *rest = r;
    Ok(f)
}

/// Parses one SYSLOG-MSG strictly.
pub fn parse(m: &str) -> Result<Frame, String> {
    if m.chars().any(|c| c.is_control()) {
        return Err("raw control character in the message".into());
    }
    let mut rest = m;
    let head = field(&mut rest, 8, "PRI/VERSION")?;
    let pri: u32 = head
        .strip_prefix('<')
        .and_then(|h| h.strip_suffix(">1"))
        .and_then(|p| p.parse().ok())
        .filter(|p| *p <= 191)
        .ok_or(format!("bad PRI/VERSION {head:?}"))?;
    let ts = field(&mut rest, 32, "TIMESTAMP")?;
    let b = ts.as_bytes();
    if !(b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && ts.ends_with('Z')) {
        return Err(format!("bad TIMESTAMP {ts:?}"));
    }
    let hostname = field(&mut rest, 255, "HOSTNAME")?.to_string();
    field(&mut rest, 48, "APP-NAME")?;
    field(&mut rest, 128, "PROCID")?;
    let msgid = field(&mut rest, 32, "MSGID")?.to_string();
    let sd = rest.strip_prefix('[').ok_or("no SD-ELEMENT")?;
    let (id, mut sd) = sd.split_once(' ').ok_or("no SD-PARAM")?;
    if id != "breakglass@32473" {
        return Err(format!("SD-ID {id:?}"));
    }
    let mut params = Vec::new();
    let msg = loop {
        let (name, after) = sd.split_once("=\"").ok_or("bad SD-PARAM")?;
        if name.is_empty() || name.len() > 32 || name.contains([' ', '=', ']', '"']) {
            return Err(format!("bad PARAM-NAME {name:?}"));
        }
        let mut value = String::new();
        let mut it = after.char_indices();
        let end = loop {
            let (i, c) = it.next().ok_or("unterminated PARAM-VALUE")?;
            match c {
                '\\' => {
                    let (_, n) = it.next().ok_or("dangling backslash")?;
                    if !matches!(n, '"' | '\\' | ']') {
                        value.push('\\');
                    }
                    value.push(n);
                }
                '"' => break i,
                ']' => return Err(format!("unescaped ] in PARAM-VALUE of {name}")),
                c => value.push(c),
            }
        };
        params.push((name.to_string(), value));
        let tail = &after[end + 1..];
        if let Some(t) = tail.strip_prefix(' ') {
            sd = t;
        } else {
            break tail
                .strip_prefix("] \u{FEFF}")
                .ok_or("no BOM after the SD-ELEMENT")?;
        }
    };
    let msg: Value = serde_json::from_str(msg).map_err(|e| format!("MSG is not JSON: {e}"))?;
    Ok(Frame {
        conn: 0,
        pri,
        hostname,
        msgid,
        params,
        msg,
        raw: m.to_string(),
    })
}
