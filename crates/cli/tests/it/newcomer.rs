//! What a new user meets first, tried as they would: the demo's printed steps, and enrolling
//! an authenticator from the terminal (a QR code to scan).

use crate::harness::*;
use breakglass_testkit::free_port;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The QR block of a CLI's output (lines of Unicode half blocks and spaces), decoded as a
/// scanner would: every inked half block is a light module, a space a dark one, as a terminal
/// with a dark background shows it. Returns the text the code holds.
fn decode_qr(out: &str) -> Option<String> {
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.chars().count() > 20 && l.chars().all(|c| matches!(c, ' ' | '▀' | '▄' | '█')))
        .collect();
    let w = rows.first()?.chars().count();
    // Two modules per character vertically; scale up so the detector sees solid modules.
    const S: usize = 4;
    let mut px = vec![vec![0u8; w]; rows.len() * 2];
    for (y, row) in rows.iter().enumerate() {
        for (x, c) in row.chars().enumerate().take(w) {
            let (top, bottom) = match c {
                '█' => (255, 255),
                '▀' => (255, 0),
                '▄' => (0, 255),
                _ => (0, 0),
            };
            px[2 * y][x] = top;
            px[2 * y + 1][x] = bottom;
        }
    }
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w * S, px.len() * S, |x, y| px[y / S][x / S]);
    let grids = img.detect_grids();
    grids.first()?.decode().ok().map(|(_, text)| text)
}

#[test]
fn totp_enroll_shows_a_scannable_qr_code_and_the_uri() {
    let s = Server::start(POLICY);
    s.add_user("alice", &["oncall"]);
    let alice = User::new(&s, "alice");
    alice.login();
    let r = alice.run_plain(&["mfa", "totp", "enroll"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let uri = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI in:\n{}", r.stdout))
        .to_string();
    assert!(r.stdout.contains('█'), "no QR block in:\n{}", r.stdout);
    assert_eq!(
        decode_qr(&r.stdout).as_deref(),
        Some(uri.as_str()),
        "the QR code does not hold the URI:\n{}",
        r.stdout
    );
    // The next step is printed with the binary as it was run, so it works as printed.
    assert!(
        r.stdout
            .contains(&format!("Then run: {BIN} mfa totp confirm CODE")),
        "{}",
        r.stdout
    );
    // --json is unchanged: the URI and the secret, no drawing.
    let j = alice.run(&["mfa", "totp", "enroll"]);
    assert!(j.ok, "{}{}", j.stdout, j.stderr);
    assert!(
        j.json["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(j.json["secret_base32"].is_string());
    assert!(!j.stdout.contains('█'), "{}", j.stdout);
}

/// Kills the demo (SIGTERM to its script, as a service manager would) if a test fails midway.
struct Demo(Option<std::process::Child>);

impl Demo {
    /// SIGTERM to the script and wait for it: it stops what it started.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.0.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop();
    }
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A code for the 30-second step `step`, from oathtool.
fn totp(secret: &str, step: i64) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", "--now"])
        .arg(format!("@{}", step * 30 + 1))
        .arg(secret)
        .output()
        .expect("oathtool");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `scripts/demo.sh`, as a newcomer runs it: its printed steps, pasted into another shell (in
/// another directory, HOME without ~/.ssh) one by one, all work — the placeholders CODE and
/// GRANT_ID filled in from what the earlier steps printed, the one-time code for the request
/// typed at its prompt on a terminal — including `ssh GRANT_ID` into the demo's SSH host. Then
/// the demo stops everything it started.
#[test]
fn the_demo_prints_steps_that_work_as_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, home, config) = (
        tmp.path().join("data"),
        tmp.path().join("home"),
        tmp.path().join("config"),
    );
    std::fs::create_dir(&home).unwrap();
    let root = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).unwrap();
    let (port, ssh_port) = (free_port(), free_port());
    let mut child = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .arg(&data)
        .env("BREAKGLASS_BIN", BIN)
        .env("BREAKGLASS_LISTEN", format!("127.0.0.1:{port}"))
        .env("BREAKGLASS_DEMO_SSH_PORT", ssh_port.to_string())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &config)
        .env_remove("BREAKGLASS_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash scripts/demo.sh");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let mut demo = Demo(Some(child));
    let log = Arc::new(Mutex::new(String::new()));
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            l.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "the demo printed no steps:\n{}\n{}",
                    printed.join("\n"),
                    log.lock().unwrap()
                )
            });
        let done = line.starts_with("Ctrl-C here stops the server and the SSH host");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    let steps: Vec<&str> = printed
        .iter()
        .skip_while(|l| !l.ends_with("paste these into another shell:"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim())
        .collect();
    assert!(
        steps.len() >= 9 && steps[0].starts_with("cd ") && steps[1].starts_with("B="),
        "{text}"
    );
    // Every command runs the binary by the path the demo built, never a `breakglass` that is
    // not on PATH.
    assert!(
        steps[2..]
            .iter()
            .all(|s| s.starts_with("$B ") || s.contains("| $B ")),
        "{text}"
    );
    // README shows the same steps, as printed with the defaults.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let documented: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "## Breaking glass with the demo")
        .skip_while(|l| !l.starts_with("    cd "))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(str::trim)
        .collect();
    let d = data.display().to_string();
    let defaults: Vec<String> = steps[1..]
        .iter()
        .map(|l| {
            l.replace(&format!("B={BIN}"), "B=./target/release/breakglass")
                .replace(&format!("{d}-run"), "./demo-data-run")
                .replace(&d, "./demo-data")
                .replace(&format!("127.0.0.1:{port}"), "127.0.0.1:8700")
        })
        .collect();
    assert_eq!(
        documented, defaults,
        "README's demo steps differ from the demo's"
    );
    let prelude = format!("set -e\n{}\n{}\n", steps[0], steps[1]);
    let shell = |line: &str, typed: Option<&str>| {
        let script = format!("{prelude}{line}\n");
        let mut cmd = match typed {
            // On a terminal, as a person (the CLI prompts for the code there).
            Some(_) => {
                let mut c = Command::new("script");
                c.args([
                    "-qec",
                    &format!("bash -c {}", shell_word(&script)),
                    "/dev/null",
                ]);
                c
            }
            None => {
                let mut c = Command::new("bash");
                c.args(["-c", &script]);
                c
            }
        };
        cmd.current_dir(&home)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &config)
            .env_remove("BREAKGLASS_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut c = cmd.spawn().unwrap();
        if let (Some(mut i), Some(t)) = (c.stdin.take(), typed) {
            i.write_all(format!("{t}\n").as_bytes()).unwrap();
            // Keep the terminal open until the CLI has read the code.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(20));
                drop(i);
            });
        }
        let out = c.wait_with_output().unwrap();
        let o = String::from_utf8_lossy(&out.stdout).to_string();
        let e = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{o}{e}\ndemo:\n{text}"
        );
        o + &e
    };
    let (mut secret, mut grant, mut step) = (String::new(), String::new(), 0i64);
    let mut ssh_ran = false;
    for line in &steps[2..] {
        // The comment at the end of a line is for the reader.
        let cmd = line.split("  #").next().unwrap().trim().to_string();
        if cmd.contains("mfa totp confirm CODE") {
            step = unix_now() / 30;
            shell(&cmd.replace("CODE", &totp(&secret, step)), None);
        } else if cmd.contains(" request ") {
            let out = shell(&cmd, Some(&totp(&secret, step + 1)));
            grant = out
                .split_whitespace()
                .find(|w| w.starts_with("g-"))
                .unwrap_or_else(|| panic!("no grant id in:\n{out}"))
                .to_string();
            assert!(out.contains("ACCESS GRANTED to bastion"), "{out}");
        } else if cmd.contains(" ssh GRANT_ID") {
            let out = shell(
                &format!(
                    "{} -- echo demo-ssh-ok as '$(id -un)'",
                    cmd.replace("GRANT_ID", &grant)
                ),
                None,
            );
            assert!(out.contains("demo-ssh-ok as "), "{out}");
            ssh_ran = true;
        } else {
            let out = shell(&cmd, None);
            if cmd.contains("mfa totp enroll") {
                secret = out
                    .lines()
                    .find_map(|l| l.strip_prefix("secret (for manual entry): "))
                    .unwrap_or_else(|| panic!("no secret in:\n{out}"))
                    .trim()
                    .to_string();
            }
        }
    }
    assert!(ssh_ran, "{text}");

    // The demo stops: the server, the SSH host and its files go away.
    let run = tmp.path().join("data-run");
    assert!(run.is_dir());
    let st = demo.stop().expect("the demo was running");
    assert!(!listening(port) && !listening(ssh_port), "left running");
    assert!(!run.exists(), "{} left behind", run.display());
    assert!(
        log.lock().unwrap().contains("final audit checkpoint"),
        "{st:?} {}",
        log.lock().unwrap()
    );
}

/// `s` in single quotes for sh.
fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
