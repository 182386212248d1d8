//! Session recording overhead, one run, the same real sshd and server for both sides: a
//! resource that records (`recording: required`) and one that does not (`recording: off`).
//! Throughput of `cat` of a 100 MB file through a session, keystroke echo latency through
//! `ssh -tt`, server ingest with 50 concurrent recorded sessions, and storage per recorded MB.

use crate::targets::{code, input, session_binary, user_key, who};
use crate::{fixture_cfg, pct};
use anyhow::{Context, Result, anyhow, ensure};
use breakglass_server::engine::EngineConfig;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn policy(user: &str, port: u16, bin: &Path, krl: &Path) -> String {
    let res = |name: &str, rec: &str| {
        format!(
            "  - name: {name}\n    kind: ssh\n    principals: [{user}]\n    host: 127.0.0.1\n    port: {port}\n    session_command: {}\n    host_krl: {}\n    recording: {rec}\n",
            bin.display(),
            krl.display()
        )
    };
    format!(
        "admins: {{ groups: [security] }}\nresources:\n{}{}policies:\n  - name: p\n    resources: [rec, norec]\n    who: {{ groups: [oncall] }}\n    require: {{ mfa: true }}\n    approval: {{ mode: auto }}\n    duration: {{ default: 30m, max: 2h }}\n",
        res("rec", "required"),
        res("norec", "off")
    )
}

use crate::cpu_secs;

fn db_bytes(dir: &Path) -> u64 {
    ["breakglass.db", "breakglass.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join("data").join(f)).ok())
        .map(|m| m.len())
        .sum()
}

struct Rig {
    tmp: tempfile::TempDir,
    f: crate::Fixture,
    sshd: breakglass_testkit::sshd::Sshd,
    user: String,
    key: PathBuf,
    public: String,
    next_user: std::sync::atomic::AtomicUsize,
}

impl Rig {
    /// A certificate for `resource`, written beside a copy of the key; returns the key path.
    async fn cert(&self, resource: &str) -> Result<PathBuf> {
        let i = self
            .next_user
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let g = self
            .f
            .engine
            .request(
                &who(i),
                input(resource, &code(&self.f), "30m", Some(&self.public)),
            )
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let cred = g.credential.context("certificate")?;
        let k = self.tmp.path().join(format!("k{i}"));
        std::fs::copy(&self.key, &k)?;
        std::fs::write(
            self.tmp.path().join(format!("k{i}-cert.pub")),
            cred["certificate"].as_str().unwrap_or(""),
        )?;
        Ok(k)
    }

    /// Runs `cmd` over ssh; returns (seconds to the first byte of output, seconds from the
    /// first byte to the end of output, stdout bytes). The first part is session set-up (login,
    /// the shell's rc files, opening the recording); the second is the data's transfer.
    async fn run(&self, key: &Path, cmd: &str) -> Result<(f64, f64, u64)> {
        use tokio::io::AsyncReadExt;
        let t = Instant::now();
        let mut child = tokio::process::Command::from(self.sshd.ssh_cmd(key, &self.user, cmd))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut out = child.stdout.take().context("stdout")?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = out.read(&mut buf).await? as u64;
        let first = t.elapsed().as_secs_f64();
        loop {
            let k = out.read(&mut buf).await?;
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        let transfer = t.elapsed().as_secs_f64() - first;
        let done = child.wait_with_output().await?;
        ensure!(
            done.status.success(),
            "ssh {cmd:?} failed: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        Ok((first, transfer, n))
    }

    fn echo_latency(&self, key: &Path, n: usize) -> Result<Vec<f64>> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/echo_latency.py");
        let out = std::process::Command::new("python3")
            .arg(script)
            .arg(n.to_string())
            .arg("--")
            .args(["ssh", "-tt"])
            .args(self.sshd.ssh_args(key, &self.user))
            .output()?;
        let v: Vec<f64> = serde_json::from_slice(&out.stdout)
            .with_context(|| String::from_utf8_lossy(&out.stdout).to_string())?;
        Ok(v)
    }
}

async fn rig() -> Result<Rig> {
    let bin = session_binary()?;
    let tmp = tempfile::tempdir()?;
    let krl = tmp.path().join("host.krl");
    let user = breakglass_testkit::whoami();
    let port = breakglass_testkit::free_port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = EngineConfig {
        recorder_url: Some(format!("http://{addr}")),
        ..EngineConfig::default()
    };
    let f = fixture_cfg(200, &policy(&user, port, &bin, &krl), cfg).await?;
    let app = breakglass_server::api::router(f.engine.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    std::fs::write(&krl, f.engine.ssh_krl().await.map_err(|e| anyhow!("{e}"))?)?;
    let sshd = breakglass_testkit::sshd::Sshd::start(
        tmp.path(),
        &f.engine.keys.ssh_ca.public_line(),
        &krl,
        port,
    );
    let (key, public) = user_key(tmp.path())?;
    Ok(Rig {
        tmp,
        f,
        sshd,
        user,
        key,
        public,
        next_user: 0.into(),
    })
}

pub async fn all() -> Result<()> {
    let r = rig().await?;
    let file = r.tmp.path().join("100mb");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
        // Log lines with changing numbers and a random request id: compresses about as well
        // as real terminal output (LZ4 ~2–3×), not as well as one repeated line would.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut written = 0usize;
        let mut i = 0u64;
        while written < 100 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let line = format!(
                "{i:09} 2026-12-02T03:{:02}:{:02}.{:03}Z INFO grant request id={x:016x} path=/api/v1/grants/g-{:08x} status=200 took={}ms\n",
                (i / 60_000) % 60,
                (i / 1000) % 60,
                i % 1000,
                x >> 32,
                x % 997
            );
            w.write_all(line.as_bytes())?;
            written += line.len();
            i += 1;
        }
    }
    let cat = format!("cat {}", file.display());
    // Throughput, alternating so both sides see the same machine state.
    let (mut on, mut off, mut setup_on, mut setup_off) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let before = db_bytes(r.f.dir.path());
    let mut recorded = 0u64;
    for _ in 0..5 {
        let k = r.cert("norec").await?;
        let (first, s, n) = r.run(&k, &cat).await?;
        off.push(n as f64 / s / 1e6);
        setup_off.push(first * 1000.0);
        let k = r.cert("rec").await?;
        let (first, s, n) = r.run(&k, &cat).await?;
        on.push(n as f64 / s / 1e6);
        setup_on.push(first * 1000.0);
        recorded += n;
    }
    let grown = db_bytes(r.f.dir.path()).saturating_sub(before);
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (on_m, off_m) = (med(&mut on), med(&mut off));
    println!(
        "recording throughput (`cat` of 100 MB through ssh without a pty, first byte → last byte, median of 5): recorded {on_m:.0} MB/s, not recorded {off_m:.0} MB/s, ratio {:.2} (goal ≥ 0.8)",
        on_m / off_m
    );
    println!(
        "session set-up (ssh start → first byte of output, median of 5): recorded {:.0} ms, not recorded {:.0} ms",
        med(&mut setup_on),
        med(&mut setup_off)
    );
    println!(
        "recording storage: {:.3} bytes stored per recorded byte ({} MB recorded, store grew {} MB; WAL included)",
        grown as f64 / recorded as f64,
        recorded >> 20,
        grown >> 20
    );
    // Echo latency through a real pty.
    let mut lat_off = r.echo_latency(&r.cert("norec").await?, 300)?;
    let mut lat_on = r.echo_latency(&r.cert("rec").await?, 300)?;
    lat_off.sort_by(|a, b| a.total_cmp(b));
    lat_on.sort_by(|a, b| a.total_cmp(b));
    println!(
        "keystroke echo (ssh -tt, n=300): recorded p50 {:.2} ms p99 {:.2} ms; not recorded p50 {:.2} ms p99 {:.2} ms; added p50 {:.2} ms, p99 {:.2} ms (goal p99 ≤ 5 ms)",
        pct(&lat_on, 0.5),
        pct(&lat_on, 0.99),
        pct(&lat_off, 0.5),
        pct(&lat_off, 0.99),
        pct(&lat_on, 0.5) - pct(&lat_off, 0.5),
        pct(&lat_on, 0.99) - pct(&lat_off, 0.99)
    );
    // Ingest: 50 concurrent recorded sessions, 10 MB each.
    let small = r.tmp.path().join("10mb");
    std::fs::write(
        &small,
        std::fs::read(&file)?.get(..10 << 20).unwrap_or_default(),
    )?;
    let mut keys = Vec::new();
    for _ in 0..50 {
        keys.push(r.cert("rec").await?);
    }
    let cpu0 = cpu_secs();
    let t = Instant::now();
    let mut tasks = Vec::new();
    let r = std::sync::Arc::new(r);
    for k in keys {
        let r = r.clone();
        let cmd = format!("cat {}", small.display());
        tasks.push(tokio::spawn(async move { r.run(&k, &cmd).await }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await??.2;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    println!(
        "recording ingest, 50 concurrent recorded sessions × 10 MB (set-up included): {:.0} MB/s into the store ({:.1} s), server CPU {:.1} s ({:.0} % of one core; sshd, ssh clients and recorders share the same 2 cores)",
        total as f64 / secs / 1e6,
        secs,
        cpu,
        cpu / secs * 100.0
    );
    Ok(())
}
