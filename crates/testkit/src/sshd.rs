//! OpenSSH's sshd on a loopback port with a test-owned config: trusts one user CA
//! (`TrustedUserCAKeys`), reads one KRL (`RevokedKeys`), no passwords, no authorized_keys.
//! The config is `sshd_config.in` beside this crate's Cargo.toml (`@PORT@`, `@HOST_KEY@`,
//! `@DIR@`, `@KRL@` filled in); `scripts/demo.sh` starts the demo's SSH host from it too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub krl: PathBuf,
    pub log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh-keygen -t ed25519` without a passphrase.
pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(st.success(), "ssh-keygen failed");
}

/// The sshd config template shared with `scripts/demo.sh`.
pub const CONFIG_TEMPLATE: &str = include_str!("../sshd_config.in");

/// sshd's config for a server in `dir` (CA in `dir/ca.pub`) on `port`.
pub fn config_text(dir: &Path, host_key: &Path, krl: &Path, port: u16) -> String {
    CONFIG_TEMPLATE
        .replace("@PORT@", &port.to_string())
        .replace("@HOST_KEY@", &host_key.display().to_string())
        .replace("@DIR@", &dir.display().to_string())
        .replace("@KRL@", &krl.display().to_string())
}

impl Sshd {
    /// Starts sshd in `dir` on `port` trusting `ca_line`, reading revocations from `krl`
    /// (which must exist: sshd refuses every key when it cannot read it).
    pub fn start(dir: &Path, ca_line: &str, krl: &Path, port: u16) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "openssh-server is needed (apt-get install openssh-server)"
        );
        if crate::is_root() {
            // The privilege separation directory (Debian makes it at service start only).
            std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        }
        let host_key = dir.join("host_ed25519");
        keygen(&host_key);
        std::fs::write(dir.join("ca.pub"), format!("{}\n", ca_line.trim())).expect("ca.pub");
        let config = dir.join("sshd_config");
        std::fs::write(&config, config_text(dir, &host_key, krl, port)).expect("sshd_config");
        let t = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("sshd -t");
        assert!(
            t.status.success(),
            "sshd -t: {}",
            String::from_utf8_lossy(&t.stderr)
        );
        let log = dir.join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sshd.log"))
            .spawn()
            .expect("start sshd");
        crate::wait_for("sshd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Sshd {
            child,
            port,
            krl: krl.to_path_buf(),
            log,
        }
    }

    /// The arguments of `ssh` logging in as `user` here with the certificate beside `key`
    /// (batch mode, no host-key prompts), up to and including the destination.
    pub fn ssh_args(&self, key: &Path, user: &str) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["-i".into(), key.into(), "-o".into()];
        a.push(format!("CertificateFile={}-cert.pub", key.display()).into());
        for o in [
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
        ] {
            a.push("-o".into());
            a.push(o.into());
        }
        a.push("-p".into());
        a.push(self.port.to_string().into());
        a.push(format!("{user}@127.0.0.1").into());
        a
    }

    /// `ssh` as `user` with the certificate beside `key`, non-interactive, running `cmd`.
    pub fn ssh_cmd(&self, key: &Path, user: &str, cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_args(key, user))
            .arg(cmd)
            .stdin(Stdio::null());
        c
    }

    pub fn ssh(&self, key: &Path, user: &str, cmd: &str) -> Output {
        self.ssh_cmd(key, user, cmd).output().expect("run ssh")
    }
}
