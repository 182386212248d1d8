//! One gateway connection up to the relay: TLS (when the server has a certificate), the
//! client's SCRAM login with the grant's credential, the grant check, the recorded session,
//! the upstream login as the grant's role, and the start-up messages passed on (with a cancel
//! key of the gateway's own in place of the backend's).

use super::relay::{self, Conn};
use super::{CancelTarget, Io, MAX_MESSAGE, STARTUP_TIMEOUT, Shared};
use crate::engine::gateway::{GatewayGrant, grant_of_role};
use base64::Engine as _;
use breakglass_core::pgwire::backend::{Authentication, BackendMessage};
use breakglass_core::pgwire::encode::{self as enc, ErrorSpec, Severity};
use breakglass_core::pgwire::scram;
use breakglass_core::pgwire::{BackendDecoder, FrontendDecoder, FrontendMessage};
use bytes::BytesMut;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// SCRAM iterations for the gateway credential (PostgreSQL's default).
const ITERATIONS: u32 = 4096;

#[derive(Debug)]
pub(crate) struct Refused(pub ErrorSpec);

pub(crate) fn fatal(sqlstate: &str, message: impl Into<String>) -> Refused {
    Refused(ErrorSpec {
        severity: Severity::Fatal,
        sqlstate: sqlstate.into(),
        message: message.into(),
        detail: None,
        hint: None,
    })
}

fn protocol(e: impl std::fmt::Display) -> Refused {
    fatal("08P01", format!("protocol violation: {e}"))
}

pub(crate) async fn send_error(
    io: &mut (impl tokio::io::AsyncWrite + Unpin + ?Sized),
    e: &ErrorSpec,
) {
    let mut out = Vec::new();
    if enc::error_response(&mut out, e).is_ok() {
        let _ = io.write_all(&out).await;
        let _ = io.flush().await;
    }
}

/// Reads the next whole client message (raw bytes) while logging in.
async fn next_frontend(
    io: &mut (impl Io + ?Sized),
    buf: &mut BytesMut,
    dec: &mut FrontendDecoder,
) -> Result<BytesMut, Refused> {
    loop {
        if let Some((_, n)) = dec.decode(&buf[..]).map_err(protocol)? {
            return Ok(buf.split_to(n));
        }
        if io.read_buf(buf).await.map_err(protocol)? == 0 {
            return Err(protocol("the client closed the connection"));
        }
    }
}

async fn next_backend(
    io: &mut (impl Io + ?Sized),
    buf: &mut BytesMut,
) -> Result<BytesMut, Refused> {
    let dec = BackendDecoder::new(MAX_MESSAGE);
    loop {
        let got = dec
            .decode(&buf[..])
            .map_err(|e| fatal("08P01", format!("the database server: {e}")))?;
        if let Some((_, n)) = got {
            return Ok(buf.split_to(n));
        }
        if io
            .read_buf(buf)
            .await
            .map_err(|e| fatal("08006", format!("the database server: {e}")))?
            == 0
        {
            return Err(fatal("08006", "the database server closed the connection"));
        }
    }
}

fn nonce() -> String {
    let mut b = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub(super) async fn connection(
    shared: Arc<Shared>,
    resource: String,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: super::LoginSlot,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut io: Box<dyn Io> = Box::new(tcp);
    let started =
        tokio::time::timeout(STARTUP_TIMEOUT, login(&shared, &resource, &mut io, peer)).await;
    drop(slot);
    let conn = match started {
        Ok(Ok(Some(conn))) => conn,
        Ok(Ok(None)) => return, // a cancel request, or the client left during TLS set-up
        Ok(Err(Refused(e))) => {
            tracing::info!(%peer, %resource, "gateway login refused: {}", e.message);
            send_error(&mut *io, &e).await;
            return;
        }
        Err(_) => {
            send_error(
                &mut *io,
                &fatal("08006", "the login took too long: connection closed").0,
            )
            .await;
            return;
        }
    };
    relay::run(shared, conn, io, shutdown).await;
}

/// Logs the client in and the gateway in upstream; `None` for a connection that only cancels.
async fn login(
    shared: &Shared,
    resource: &str,
    io: &mut Box<dyn Io>,
    peer: SocketAddr,
) -> Result<Option<Conn>, Refused> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut dec = FrontendDecoder::new(MAX_MESSAGE);
    let mut tls_done = false;
    let startup = loop {
        let raw = next_frontend(&mut **io, &mut buf, &mut dec).await?;
        let msg = FrontendDecoder::new(MAX_MESSAGE)
            .decode(&raw)
            .map_err(protocol)?
            .map(|(f, _)| f.message);
        match msg {
            Some(FrontendMessage::SslRequest) if !tls_done && buf.is_empty() => {
                let mut out = Vec::new();
                enc::encryption_answer(&mut out, shared.tls.is_some());
                io.write_all(&out).await.map_err(protocol)?;
                if let Some(acceptor) = &shared.tls {
                    let plain = std::mem::replace(io, Box::new(tokio::io::empty()));
                    let tls = acceptor
                        .accept(plain)
                        .await
                        .map_err(|e| fatal("08P01", format!("TLS: {e}")))?;
                    *io = Box::new(tls);
                }
                tls_done = true;
            }
            Some(FrontendMessage::GssEncRequest) => {
                let mut out = Vec::new();
                enc::encryption_answer(&mut out, false);
                io.write_all(&out).await.map_err(protocol)?;
            }
            Some(FrontendMessage::CancelRequest(c)) => {
                super::cancel(shared, c.pid, c.secret).await;
                return Ok(None);
            }
            Some(FrontendMessage::Startup(s)) => {
                let params: Vec<(String, String)> = s
                    .params
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect();
                break params;
            }
            _ => return Err(protocol("expected a StartupMessage")),
        }
    };
    let get = |k: &str| startup.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let user = get("user").ok_or_else(|| fatal("28000", "no user name given"))?;
    if get("replication").is_some_and(|r| r != "false" && r != "0" && r != "off") {
        return Err(fatal(
            "28000",
            "replication connections are not allowed through the breakglass gateway",
        ));
    }
    authenticate(shared, io, &mut buf, &mut dec, &user).await?;
    let engine = &shared.engine;
    let g = engine
        .gateway_grant(&user, resource)
        .await
        .map_err(|why| fatal("28000", why))?;
    let upstream = engine
        .gateway_upstream(resource)
        .await
        .map_err(|e| fatal("08006", format!("breakglass cannot reach {resource}: {e}")))?;
    let database = get("database").unwrap_or_else(|| upstream.database.clone());
    let session = engine
        .gateway_open(&g, &database, peer)
        .await
        .map_err(|e| {
            fatal(
                "58030",
                format!("breakglass cannot record this session, so it does not start: {e}"),
            )
        })?;
    match upstream_login(shared, &g, &upstream, &database, &startup, io).await {
        Ok((up, key)) => Ok(Some(Conn {
            grant: g,
            session,
            upstream: up,
            key,
            peer,
        })),
        Err(e) => {
            if let Some(s) = &session {
                engine
                    .gateway_end(
                        &g.info,
                        s,
                        &format!("the upstream login failed: {}", e.0.message),
                    )
                    .await;
            }
            Err(e)
        }
    }
}

/// The client's SCRAM-SHA-256 login with its grant's gateway credential. The keys are derived
/// for whatever user name was given (so an unknown one costs the same and says the same).
async fn authenticate(
    shared: &Shared,
    io: &mut Box<dyn Io>,
    buf: &mut BytesMut,
    dec: &mut FrontendDecoder,
    user: &str,
) -> Result<(), Refused> {
    let denied = || {
        fatal(
            "28P01",
            format!("password authentication failed for user \"{user:.64}\""),
        )
    };
    let mut out = Vec::new();
    enc::authentication_sasl(&mut out, &[scram::MECHANISM]).map_err(protocol)?;
    io.write_all(&out).await.map_err(protocol)?;
    let raw = next_frontend(&mut **io, buf, dec).await?;
    let first = match FrontendDecoder::tagged(MAX_MESSAGE)
        .decode(&raw)
        .map_err(protocol)?
    {
        Some((f, _)) => match f.message {
            FrontendMessage::AuthResponse(a) => {
                let init = a.sasl_initial().map_err(protocol)?;
                if init.mechanism != scram::MECHANISM.as_bytes() {
                    return Err(fatal("28000", "only SCRAM-SHA-256 is offered"));
                }
                init.data.unwrap_or_default().to_vec()
            }
            _ => return Err(protocol("expected a SASLInitialResponse")),
        },
        None => return Err(protocol("expected a SASLInitialResponse")),
    };
    let grant = grant_of_role(user).unwrap_or_else(|| format!("no grant: {user:.64}"));
    let password = shared.engine.gateway_password(&grant, "client");
    let salt: [u8; 16] = Sha256::digest(format!("breakglass gateway salt\0{grant}"))[..16]
        .try_into()
        .unwrap_or([0; 16]);
    let keys = {
        let _slot = shared
            .derivations
            .acquire()
            .await
            .map_err(|_| fatal("57P03", "the server is shutting down"))?;
        tokio::task::spawn_blocking(move || {
            scram::Keys::derive(password.as_bytes(), &salt, ITERATIONS)
        })
        .await
        .map_err(|_| fatal("XX000", "key derivation failed"))?
    };
    let (server, server_first) =
        scram::Server::start(&first, &keys, &nonce()).map_err(|e| match e {
            scram::ScramError::BadProof => denied(),
            e => fatal("28000", e.to_string()),
        })?;
    out.clear();
    enc::authentication_sasl_continue(&mut out, server_first.as_bytes()).map_err(protocol)?;
    io.write_all(&out).await.map_err(protocol)?;
    let raw = next_frontend(&mut **io, buf, dec).await?;
    let fin = match FrontendDecoder::tagged(MAX_MESSAGE)
        .decode(&raw)
        .map_err(protocol)?
    {
        Some((f, _)) => match f.message {
            FrontendMessage::AuthResponse(a) => a.sasl_response().to_vec(),
            _ => return Err(protocol("expected a SASLResponse")),
        },
        None => return Err(protocol("expected a SASLResponse")),
    };
    let server_final = server.finish(&fin, &keys).map_err(|_| denied())?;
    out.clear();
    enc::authentication_sasl_final(&mut out, server_final.as_bytes()).map_err(protocol)?;
    io.write_all(&out).await.map_err(protocol)?;
    Ok(())
}

/// Logs in upstream as the grant's role, then tells the client it is in: AuthenticationOk,
/// the server's ParameterStatus and notices, a cancel key of the gateway's, ReadyForQuery.
async fn upstream_login(
    shared: &Shared,
    g: &GatewayGrant,
    upstream: &crate::engine::gateway::Upstream,
    database: &str,
    startup: &[(String, String)],
    client: &mut Box<dyn Io>,
) -> Result<(Box<dyn Io>, (u32, u32)), Refused> {
    let unreachable = |e: std::io::Error| {
        fatal(
            "08006",
            format!(
                "breakglass cannot reach the database at {}:{}: {e}",
                upstream.host, upstream.port
            ),
        )
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((upstream.host.as_str(), upstream.port)),
    )
    .await
    .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
    .map_err(unreachable)?;
    let _ = tcp.set_nodelay(true);
    let addr = tcp.peer_addr().map_err(unreachable)?;
    let mut up: Box<dyn Io> = Box::new(tcp);
    let passed: Vec<(&str, &str)> = startup
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "user" | "database" | "application_name" | "replication"
            )
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let app = startup
        .iter()
        .find(|(k, _)| k == "application_name")
        .map(|(_, v)| v.as_str())
        .unwrap_or("breakglass-gateway");
    let mut out = Vec::new();
    enc::startup_message(&mut out, &g.role, Some(database), Some(app), &passed)
        .map_err(protocol)?;
    up.write_all(&out).await.map_err(unreachable)?;
    let password = shared.engine.gateway_password(&g.info.id, "upstream");
    let mut buf = BytesMut::with_capacity(4096);
    let mut scram_client: Option<scram::Client> = None;
    let mut to_client = Vec::new();
    enc::authentication_ok(&mut to_client);
    let dec = BackendDecoder::new(MAX_MESSAGE);
    let mut key = (0, 0);
    loop {
        let raw = next_backend(&mut *up, &mut buf).await?;
        let Some((frame, _)) = dec
            .decode(&raw)
            .map_err(|e| fatal("08P01", format!("the database server: {e}")))?
        else {
            return Err(fatal("08P01", "the database server sent half a message"));
        };
        out.clear();
        match frame.message {
            BackendMessage::Authentication(a) => match a {
                Authentication::Ok => {}
                Authentication::Sasl(m) if m.contains(&scram::MECHANISM.as_bytes()) => {
                    let (c, first) = scram::Client::start(password.as_bytes(), &nonce());
                    scram_client = Some(c);
                    enc::sasl_initial_response(&mut out, scram::MECHANISM, Some(first.as_bytes()))
                        .map_err(protocol)?;
                }
                Authentication::SaslContinue(d) => {
                    let c = scram_client.as_mut().ok_or_else(|| {
                        fatal("08P01", "the database server's SCRAM is out of step")
                    })?;
                    let fin = c
                        .answer(d)
                        .map_err(|e| fatal("08P01", format!("the database server: {e}")))?;
                    enc::sasl_response(&mut out, fin.as_bytes()).map_err(protocol)?;
                }
                Authentication::SaslFinal(d) => {
                    scram_client
                        .as_ref()
                        .ok_or_else(|| {
                            fatal("08P01", "the database server's SCRAM is out of step")
                        })?
                        .verify(d)
                        .map_err(|e| fatal("08P01", format!("the database server: {e}")))?;
                }
                Authentication::CleartextPassword => {
                    enc::password_message(&mut out, password.as_bytes()).map_err(protocol)?;
                }
                _ => {
                    return Err(fatal(
                        "28000",
                        "the database server asked for an authentication method the gateway does not speak (use scram-sha-256)",
                    ));
                }
            },
            BackendMessage::ErrorResponse(f) => {
                let msg = String::from_utf8_lossy(f.message().unwrap_or_default()).into_owned();
                let code = String::from_utf8_lossy(f.sqlstate().unwrap_or(b"08006")).into_owned();
                return Err(fatal(
                    if code.len() == 5 { &code } else { "08006" },
                    format!("the database server refused the grant's role: {msg}"),
                ));
            }
            BackendMessage::BackendKeyData { pid, secret } => {
                let mut r = [0u8; 8];
                rand::rngs::OsRng.fill_bytes(&mut r);
                key = (
                    u32::from_be_bytes([r[0], r[1], r[2], r[3]]) & 0x7fff_ffff,
                    u32::from_be_bytes([r[4], r[5], r[6], r[7]]),
                );
                if let Ok(mut m) = shared.cancels.lock() {
                    m.insert(
                        key,
                        CancelTarget {
                            upstream: addr,
                            pid,
                            secret,
                        },
                    );
                }
                enc::backend_key_data(&mut to_client, key.0, key.1);
            }
            BackendMessage::ReadyForQuery(_) => {
                to_client.extend_from_slice(&raw);
                client.write_all(&to_client).await.map_err(protocol)?;
                client.flush().await.map_err(protocol)?;
                return Ok((up, key));
            }
            BackendMessage::ParameterStatus { .. } | BackendMessage::NoticeResponse(_) => {
                to_client.extend_from_slice(&raw);
            }
            _ => {
                return Err(fatal(
                    "08P01",
                    "the database server sent an unexpected message while logging in",
                ));
            }
        }
        if !out.is_empty() {
            up.write_all(&out).await.map_err(unreachable)?;
        }
    }
}
