//! Real peers for breakglass's tests and benchmarks, started from Debian's packages in temporary
//! directories on loopback ports: [`pg::Pg`] (initdb + pg_ctl, as the `postgres` user when run as
//! root) and [`sshd::Sshd`] (OpenSSH's sshd with a test-owned config). No mocks: these are the
//! programs a site runs. `scripts/test.sh` installs them when missing.

pub mod pg;
pub mod sshd;

use std::process::Command;
use std::time::{Duration, Instant};

/// Whether we run as root (then PostgreSQL runs as `postgres`, sshd needs /run/sshd).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The current login name.
pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes (then panics naming `what`).
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
