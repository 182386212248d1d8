//! A throw-away PostgreSQL cluster: `initdb` in a temporary directory, `pg_ctl start` on a free
//! loopback port with SCRAM authentication; stopped (immediate) on drop.

use crate::is_root;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const ADMIN_PASSWORD: &str = "admin-pw-for-tests";

pub struct Pg {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    sock: PathBuf,
    settings: String,
}

fn bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is needed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

impl Pg {
    /// The path of one of this PostgreSQL's programs (`pgbench`, `psql`, …).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Runs a PostgreSQL program as the cluster's owner.
    fn as_owner(&self, prog: &str) -> Command {
        let path = self.bin.join(prog);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn start() -> Pg {
        Self::start_with(&[])
    }

    /// Starts with extra server settings, e.g. `["max_connections=300"]`.
    pub fn start_with(settings: &[&str]) -> Pg {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir_all(&sock).expect("socket dir");
        if is_root() {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            std::fs::create_dir_all(&data).expect("data dir");
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            let st = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&sock)
                .arg(&data)
                .status()
                .expect("chown");
            assert!(st.success(), "chown to postgres failed");
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, ADMIN_PASSWORD).expect("pwfile");
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut settings_s = String::from("-c listen_addresses=127.0.0.1 -c fsync=off");
        for s in settings {
            settings_s.push_str(&format!(" -c {s}"));
        }
        let pg = Pg {
            _dir: dir,
            data,
            bin: bindir(),
            port: crate::free_port(),
            sock,
            settings: settings_s,
        };
        let out = pg
            .as_owner("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.restart();
        pg
    }

    /// `pg_ctl start` (after [`Pg::stop`]).
    pub fn restart(&self) {
        let out = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} {}",
                self.port,
                self.sock.display(),
                self.settings
            ))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl stop -m fast`: the database is down until [`Pg::restart`].
    pub fn stop(&self) {
        self.stop_mode("fast");
    }

    /// `pg_ctl stop -m immediate` then start: a crash of the database server (no shutdown
    /// checkpoint, every connection cut, recovery from the WAL at start).
    pub fn crash_restart(&self) {
        self.stop_mode("immediate");
        self.restart();
    }

    fn stop_mode(&self, mode: &str) {
        let out = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "stop"])
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl stop -m {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgres://postgres:…@127.0.0.1:PORT/postgres`
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Admin SQL through psql; rows as `a|b` lines. Panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        let (ok, out) = psql(&self.admin_url(), sql);
        assert!(ok, "admin SQL failed: {sql}: {out}");
        out.trim().to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Runs `psql URL -c SQL`; (success, stdout + stderr).
pub fn psql(url: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .expect("psql is needed (apt-get install postgresql-client)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
