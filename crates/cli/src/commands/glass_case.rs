//! The offline glass case: `seal` (admins: the server builds the contents, this splits and
//! encrypts them for the custodians), `open` (no server, no network: M custodians' passphrases,
//! today's items, a signed journal), `reconcile` (admins: the journal into the audit chain).

use super::common::{authed, out, read_stdin_line, with_otp};
use crate::args::Cli;
use anyhow::{Context, Result, anyhow, bail};
use breakglass_core::glass_case::{
    self as gc, Bundle, Header, JournalBody, Kdf, MAX_TEXT, Payload, Release,
};
use breakglass_core::time::{Timestamp, rfc3339};
use clap::Subcommand;
use rand::RngCore;
use serde_json::json;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Subcommand)]
pub enum GlassCaseCmd {
    /// Seal a new case (admins, MFA): a ladder of day-long SSH certificates for every ssh
    /// resource plus the sealed secrets, openable by THRESHOLD of the custodians.
    Seal {
        /// Comma-separated custodian names, e.g. alice,bob,carol,dave,erin.
        #[arg(long, value_delimiter = ',', required = true)]
        custodians: Vec<String>,
        #[arg(long)]
        threshold: u32,
        /// Days the case covers (one certificate per resource per day).
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Where to write the bundle (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Custodians' passphrases as `name:passphrase` lines (for scripted drills); without
        /// it each custodian types theirs (twice) on the terminal.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[arg(long)]
        otp: Option<String>,
    },
    /// Open a case with no server: custodians enter their passphrases until the threshold is
    /// met; writes today's certificate(s), key and secrets to --out-dir and the signed journal.
    Open {
        #[arg(long)]
        bundle: PathBuf,
        /// Directory for the released key, certificates and secrets (created, mode 0700).
        #[arg(long)]
        out_dir: PathBuf,
        /// Where to write the journal (default OUT_DIR/journal-CASE.json).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// `name:passphrase` lines instead of prompts (the first THRESHOLD are used).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Import an opening's journal once the server is back (admins, MFA): audit events, a
    /// review, every serial of the case into the KRL, released secrets must rotate.
    Reconcile {
        #[arg(long, required = true)]
        journal: Vec<PathBuf>,
        /// Also seal a new case for the same custodians and threshold into this file (one MFA
        /// for both); each custodian sets a passphrase for it, as with `seal`.
        #[arg(long)]
        reseal_out: Option<PathBuf>,
        /// Days the new case covers (with --reseal-out).
        #[arg(long, default_value_t = 14, requires = "reseal_out")]
        days: u32,
        /// `name:passphrase` lines for the new case (with --reseal-out).
        #[arg(long, requires = "reseal_out")]
        passphrase_file: Option<PathBuf>,
        #[arg(long)]
        otp: Option<String>,
    },
    /// Cases this server sealed and their state (admins).
    List,
}

pub(super) async fn glass_case(cli: &Cli, cmd: &GlassCaseCmd) -> Result<()> {
    match cmd {
        GlassCaseCmd::Seal {
            custodians,
            threshold,
            days,
            out: path,
            passphrase_file,
            otp,
        } => {
            seal(
                cli,
                custodians,
                *threshold,
                *days,
                path,
                passphrase_file.as_deref(),
                otp,
            )
            .await
        }
        GlassCaseCmd::Open {
            bundle,
            out_dir,
            journal,
            passphrase_file,
        } => open(
            cli.json,
            bundle,
            out_dir,
            journal.as_deref(),
            passphrase_file.as_deref(),
        ),
        GlassCaseCmd::Reconcile {
            journal,
            reseal_out,
            days,
            passphrase_file,
            otp,
        } => {
            let reseal = reseal_out.as_deref().map(|out| Reseal {
                out,
                days: *days,
                passphrase_file: passphrase_file.as_deref(),
            });
            reconcile(cli, journal, reseal, otp).await
        }
        GlassCaseCmd::List => {
            let r = authed(cli)?.get("/glass-cases").await?;
            out(cli.json, &r, || {
                r.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|c| {
                                format!(
                                    "{}  {:<10} expires {}  {} of {}",
                                    c["case_id"].as_str().unwrap_or(""),
                                    c["state"].as_str().unwrap_or(""),
                                    c["expires_at"].as_str().unwrap_or(""),
                                    c["threshold"],
                                    c["custodians"].as_array().map_or(0, Vec::len)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
            Ok(())
        }
    }
}

/// A file of at most [`MAX_TEXT`] bytes.
fn read_bounded(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let mut buf = Zeroizing::new(Vec::new());
    f.take(MAX_TEXT as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if buf.len() > MAX_TEXT {
        bail!(
            "the {what} {} is larger than {} MiB: that is not a breakglass file",
            path.display(),
            MAX_TEXT >> 20
        );
    }
    Ok(buf)
}

/// `name:passphrase` lines, in file order.
fn passphrase_lines(path: &Path) -> Result<Vec<(String, Zeroizing<String>)>> {
    let text = read_bounded(path, "passphrase file")?;
    let text = std::str::from_utf8(&text).context("the passphrase file is not UTF-8")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, pass)) = line.split_once(':') else {
            bail!(
                "line {} of {} is not `name:passphrase`",
                i + 1,
                path.display()
            );
        };
        out.push((name.trim().to_string(), Zeroizing::new(pass.to_string())));
    }
    Ok(out)
}

/// Reads a line from the terminal without echo.
fn read_hidden(prompt: &str) -> Result<Zeroizing<String>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let old = tcgetattr(&stdin).ok();
    if let Some(o) = &old {
        let mut t = o.clone();
        t.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(&stdin, OptionalActions::Now, &t);
    }
    let r = read_stdin_line("passphrase");
    if let Some(o) = old {
        let _ = tcsetattr(&stdin, OptionalActions::Now, &o);
        eprintln!();
    }
    r
}

fn no_terminal() -> anyhow::Error {
    anyhow!(
        "not on a terminal: give the custodians' passphrases with --passphrase-file FILE (`name:passphrase` lines)"
    )
}

/// Every custodian's passphrase for a new bundle at `path` (which must not exist), from the
/// file or typed twice on the terminal. Nothing is sealed at the server before this succeeds.
fn custodian_passphrases(
    custodians: &[String],
    path: &Path,
    passphrase_file: Option<&Path>,
) -> Result<Vec<Zeroizing<String>>> {
    if path.exists() {
        bail!(
            "{} exists: choose a new file for the bundle (an old case stays valid until reconciled)",
            path.display()
        );
    }
    // Passphrases first: nothing is sealed at the server until every custodian has one.
    let mut passphrases = Vec::new();
    match passphrase_file {
        Some(f) => {
            let lines = passphrase_lines(f)?;
            for c in custodians {
                let Some((_, p)) = lines.iter().find(|(n, _)| n == c) else {
                    bail!("{} has no line for custodian {c}", f.display());
                };
                passphrases.push(p.clone());
            }
        }
        None => {
            if !std::io::stdin().is_terminal() {
                return Err(no_terminal());
            }
            for c in custodians {
                let a = read_hidden(&format!("passphrase for custodian {c}: "))?;
                let b = read_hidden(&format!("again, {c}: "))?;
                if a != b {
                    bail!("the two passphrases of {c} differ: nothing was sealed; run seal again");
                }
                passphrases.push(a);
            }
        }
    }
    if let Some((c, _)) = custodians
        .iter()
        .zip(&passphrases)
        .find(|(_, p)| p.chars().count() < 8)
    {
        bail!("custodian {c}'s passphrase is shorter than 8 characters: nothing was sealed");
    }
    Ok(passphrases)
}

async fn seal(
    cli: &Cli,
    custodians: &[String],
    threshold: u32,
    days: u32,
    path: &Path,
    passphrase_file: Option<&Path>,
    otp: &Option<String>,
) -> Result<()> {
    gc::check_plan(custodians, threshold, days)?;
    let passphrases = custodian_passphrases(custodians, path, passphrase_file)?;
    let c = authed(cli)?;
    let r = with_otp(otp.clone(), "sealing a glass case", |otp| {
        let c = &c;
        let body =
            json!({"custodians": custodians, "threshold": threshold, "days": days, "otp": otp});
        async move { c.post("/glass-case/seal", &body).await }
    })
    .await?;
    let (v, line) = write_bundle(&r, &passphrases, path)?;
    out(cli.json, &v, || line.clone());
    Ok(())
}

/// Splits and encrypts the server's `{header, payload}` for the custodians into `path`;
/// returns what was sealed and a line saying so.
fn write_bundle(
    r: &serde_json::Value,
    passphrases: &[Zeroizing<String>],
    path: &Path,
) -> Result<(serde_json::Value, String)> {
    let header: Header = serde_json::from_value(r["header"].clone())
        .context("the server's answer has no glass-case header")?;
    let payload: Payload = serde_json::from_value(r["payload"].clone())
        .context("the server's answer has no glass-case payload")?;
    let bytes = Zeroizing::new(serde_json::to_vec(&payload)?);
    let certs = payload.certificates.len();
    let secrets = payload.secrets.len();
    let logins = payload.postgres.len();
    drop(payload);
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(seed.as_mut());
    let case_id = header.case_id.clone();
    let expires = Timestamp(header.expires_at);
    let (threshold, custodians) = (header.threshold, header.custodians.clone());
    let bundle = gc::seal(header, &bytes, passphrases, Kdf::DEFAULT, *seed)?;
    let text = bundle.encode();
    write_new(path, text.as_bytes(), 0o600)?;
    let v = json!({"case_id": case_id, "bundle": path.display().to_string(), "bytes": text.len(),
                   "certificates": certs, "secrets": secrets, "postgres_logins": logins,
                   "expires_at": rfc3339(expires),
                   "threshold": threshold, "custodians": custodians});
    let line = format!(
        "sealed glass case {case_id}: {certs} certificates, {secrets} secrets, {logins} PostgreSQL logins, {threshold} of {} custodians\n\
         bundle: {} ({} bytes) — keep copies offline; it runs out {}",
        custodians.len(),
        path.display(),
        text.len(),
        rfc3339(expires)
    );
    Ok((v, line))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes (replacing) a private file.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    write_new(path, data, 0o600)
}

fn file_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn open(
    j: bool,
    bundle_path: &Path,
    out_dir: &Path,
    journal: Option<&Path>,
    passphrase_file: Option<&Path>,
) -> Result<()> {
    let text = read_bounded(bundle_path, "bundle")?;
    let bundle: Bundle =
        gc::decode(&text).with_context(|| format!("{} cannot be opened", bundle_path.display()))?;
    let h = &bundle.header;
    let need = h.threshold as usize;
    let mut shares = Vec::new();
    let mut who = Vec::new();
    match passphrase_file {
        Some(f) => {
            for (name, pass) in passphrase_lines(f)?.into_iter().take(need) {
                if who.contains(&name) {
                    bail!("custodian {name} is listed twice: each custodian's share counts once");
                }
                shares.push(gc::unlock_share(&bundle, &name, &pass)?);
                who.push(name);
            }
        }
        None => {
            if !std::io::stdin().is_terminal() {
                return Err(no_terminal());
            }
            eprintln!(
                "glass case {} needs {need} of: {}",
                h.case_id,
                h.custodians.join(", ")
            );
            while shares.len() < need {
                eprint!("custodian name ({} of {need}): ", shares.len() + 1);
                std::io::stderr().flush()?;
                let name = read_stdin_line("custodian name")?.trim().to_string();
                if who.contains(&name) {
                    eprintln!("{name} entered a share already: another custodian, please");
                    continue;
                }
                let pass = read_hidden(&format!("passphrase of {name}: "))?;
                match gc::unlock_share(&bundle, &name, &pass) {
                    Ok(s) => {
                        shares.push(s);
                        who.push(name);
                    }
                    Err(e) => eprintln!("{e}"),
                }
            }
        }
    }
    let plain = gc::open_payload(&bundle, &shares)?;
    let payload: Payload = serde_json::from_slice(&plain).map_err(|_| {
        anyhow!("the case opened but its contents are not readable: a newer breakglass sealed it")
    })?;
    drop(plain);
    let now = super::common::now();
    if now.0 < h.not_before || now.0 >= h.expires_at {
        bail!(
            "glass case {} covers {} to {}; it is now {}: nothing was released (an expired case cannot help: use the server, or a newer case)",
            h.case_id,
            rfc3339(Timestamp(h.not_before)),
            rfc3339(Timestamp(h.expires_at)),
            rfc3339(now)
        );
    }
    let seed: [u8; 32] = gc::bundle::unb64(&payload.journal_key)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| anyhow!("the case's journal key is damaged"))?;
    let seed = Zeroizing::new(seed);
    let certs = payload.valid_at(now);
    let logins = payload.postgres_at(now);
    for name in certs
        .iter()
        .map(|c| &c.resource)
        .chain(payload.secrets.iter().map(|s| &s.resource))
        .chain(logins.iter().map(|p| &p.resource))
    {
        if !file_name_ok(name) {
            bail!("resource name {name:.64?} cannot be a file name; nothing was released");
        }
    }
    let mut releases: Vec<Release> = certs
        .iter()
        .map(|c| Release {
            kind: "ssh-certificate".into(),
            resource: c.resource.clone(),
            serial: Some(c.serial),
            valid_before: Some(c.valid_before),
            version: None,
            role: None,
            at: now.0,
        })
        .collect();
    releases.extend(payload.secrets.iter().map(|s| Release {
        kind: "secret".into(),
        resource: s.resource.clone(),
        serial: None,
        valid_before: None,
        version: Some(s.version),
        role: None,
        at: now.0,
    }));
    releases.extend(logins.iter().map(|p| Release {
        kind: "postgres-role".into(),
        resource: p.resource.clone(),
        serial: None,
        valid_before: Some(p.valid_before),
        version: None,
        role: Some(p.role.clone()),
        at: now.0,
    }));
    if releases.is_empty() {
        bail!("nothing in glass case {} is valid now", h.case_id);
    }
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().chars().take(128).collect())
        .unwrap_or_default();
    let body = JournalBody {
        case_id: h.case_id.clone(),
        opened_at: now.0,
        custodians: who.clone(),
        host,
        releases,
    };
    // The journal first: if it cannot be written, nothing is released.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        std::fs::set_permissions(out_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", out_dir.display()))?;
    }
    let journal_path = journal
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join(format!("journal-{}.json", h.case_id)));
    let signed = gc::sign_journal(&body, &seed);
    write_private(&journal_path, signed.as_bytes())?;
    let mut files = Vec::new();
    let mut connect = Vec::new();
    for c in &certs {
        let key = out_dir.join(&c.resource);
        write_private(&key, payload.ssh_private_key.as_bytes())?;
        let cert = out_dir.join(format!("{}-cert.pub", c.resource));
        write_private(&cert, format!("{}\n", c.certificate.trim_end()).as_bytes())?;
        files.push(
            json!({"resource": c.resource, "key": key.display().to_string(),
                          "certificate": cert.display().to_string(), "serial": c.serial,
                          "valid_before": rfc3339(Timestamp(c.valid_before))}),
        );
        if let (Some(host), Some(p)) = (&c.host, c.principals.first()) {
            connect.push(format!(
                "ssh -i {} -p {} {p}@{host}",
                super::common::shell_quote(&key.display().to_string()),
                c.port
            ));
        }
    }
    for s in &payload.secrets {
        let f = out_dir.join(format!("{}.secret", s.resource));
        write_private(&f, s.value.as_bytes())?;
        files.push(json!({"resource": s.resource, "secret": f.display().to_string(), "version": s.version}));
    }
    for p in &logins {
        let f = out_dir.join(format!("{}.pgurl", p.resource));
        write_private(&f, format!("{}\n", p.url).as_bytes())?;
        files.push(
            json!({"resource": p.resource, "postgres_url": f.display().to_string(),
                          "role": p.role, "roles": p.roles,
                          "valid_before": rfc3339(Timestamp(p.valid_before))}),
        );
        connect.push(format!(
            "psql \"$(cat {})\"",
            super::common::shell_quote(&f.display().to_string())
        ));
    }
    let v = json!({"case_id": h.case_id, "opened_by": who, "released": files,
                   "journal": journal_path.display().to_string(), "connect": connect});
    out(j, &v, || {
        let mut s = format!(
            "glass case {} opened by {}: {} item(s) valid now written to {}\n",
            h.case_id,
            who.join(", "),
            files.len(),
            out_dir.display()
        );
        for c in &connect {
            s.push_str(&format!("connect: {c}\n"));
        }
        s.push_str(&format!(
            "journal: {} — when the server is back: breakglass glass-case reconcile --journal {}",
            journal_path.display(),
            journal_path.display()
        ));
        s
    });
    Ok(())
}

/// `--reseal-out` of `reconcile`.
struct Reseal<'a> {
    out: &'a Path,
    days: u32,
    passphrase_file: Option<&'a Path>,
}

fn names(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

async fn reconcile(
    cli: &Cli,
    journals: &[PathBuf],
    reseal: Option<Reseal<'_>>,
    otp: &Option<String>,
) -> Result<()> {
    let mut texts = Vec::new();
    for p in journals {
        let t = read_bounded(p, "journal")?;
        texts.push(
            String::from_utf8(t.to_vec())
                .map_err(|_| anyhow!("{} is not a glass-case journal", p.display()))?,
        );
    }
    let c = authed(cli)?;
    // A reseal needs every custodian's new passphrase before anything changes at the server.
    let passphrases = match &reseal {
        None => None,
        Some(rs) => {
            let id = gc::peek_case_id(texts[0].as_bytes())
                .map_err(|e| anyhow!("{}: {e}", journals[0].display()))?;
            let cases = c.get("/glass-cases").await?;
            let case = cases
                .as_array()
                .and_then(|a| a.iter().find(|x| x["case_id"] == id.as_str()))
                .ok_or_else(|| anyhow!("this server sealed no glass case {id:.64}"))?;
            let custodians: Vec<String> = serde_json::from_value(case["custodians"].clone())
                .context("the server's case list has no custodians")?;
            gc::check_plan(
                &custodians,
                case["threshold"].as_u64().unwrap_or(0) as u32,
                rs.days,
            )?;
            Some(custodian_passphrases(
                &custodians,
                rs.out,
                rs.passphrase_file,
            )?)
        }
    };
    let days = reseal.as_ref().map(|r| r.days);
    let r = with_otp(otp.clone(), "reconciling a glass case", |otp| {
        let c = &c;
        let body = json!({"journals": texts, "reseal_days": days, "otp": otp});
        async move { c.post("/glass-case/reconcile", &body).await }
    })
    .await?;
    let mut v = r.clone();
    let mut sealed_line = format!("reseal: {}", r["reseal"].as_str().unwrap_or(""));
    let mut reseal_failed = None;
    if let (Some(rs), Some(p)) = (&reseal, &passphrases) {
        v.as_object_mut().map(|o| o.remove("sealed"));
        if let Some(e) = r["sealed"]["error"].as_str() {
            reseal_failed = Some(e.to_string());
        } else {
            match write_bundle(&r["sealed"], p, rs.out) {
                Ok((s, line)) => {
                    v["sealed"] = s;
                    sealed_line = line;
                }
                Err(e) => reseal_failed = Some(format!("{e:#}")),
            }
        }
    }
    drop(r);
    if let Some(e) = &reseal_failed {
        v["reseal_error"] = json!(e);
        sealed_line = format!(
            "the new case was NOT sealed ({e}); seal one by hand: {}",
            v["reseal"].as_str().unwrap_or("")
        );
    }
    out(cli.json, &v, || {
        let rotate = names(&v["must_rotate"]);
        format!(
            "glass case {} reconciled: {} certificate serials now in the KRL, {} PostgreSQL logins dropped{}, reviews opened: {}{}\n{sealed_line}",
            v["case_id"].as_str().unwrap_or(""),
            v["serials_revoked"],
            v["postgres_logins_dropped"],
            match v["postgres_logins_pending"].as_u64() {
                Some(n) if n > 0 => format!(" ({n} unreachable now: the sweep drops them)"),
                _ => String::new(),
            },
            names(&v["reviews"]),
            if rotate.is_empty() {
                String::new()
            } else {
                format!("\nmust rotate: {rotate}")
            },
        )
    });
    match reseal_failed {
        Some(e) => bail!("reconciled, but the new glass case was not sealed: {e}"),
        None => Ok(()),
    }
}
