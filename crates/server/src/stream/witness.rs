//! Copies of signed checkpoints off the host: one file per checkpoint in a directory (another
//! volume, a mount of another machine), and/or a webhook. Both carry the note exactly as it was
//! signed (AUDIT-FORMAT §3), so anyone can check them with the public key alone.

use breakglass_core::policy::Witness;
use breakglass_core::time::Timestamp;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// Largest witness file read back (a note is a few hundred bytes).
const MAX_NOTE: u64 = 64 * 1024;

/// `checkpoint-<size, 12 digits at least>.note`: sorts by size.
pub fn file_name(size: u64) -> String {
    format!("checkpoint-{size:012}.note")
}

/// Writes the note of the checkpoint at `size` into `dir` (which must exist: a witness volume
/// that is not mounted must not be replaced by a directory on this host). Written to a
/// temporary file, fsynced, renamed into place, directory fsynced. A file already there with
/// the same note is success; with another note it is refused (two logs, or a rewrite).
pub fn write_dir(dir: &str, size: u64, note: &str) -> Result<(), String> {
    let d = Path::new(dir);
    match std::fs::metadata(d) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("witness dir {dir} is not a directory")),
        Err(e) => {
            return Err(format!(
                "witness dir {dir}: {e} (is the witness volume mounted? breakglass does not create it)"
            ));
        }
    }
    let name = file_name(size);
    let path = d.join(&name);
    match std::fs::read(&path) {
        Ok(existing) if existing == note.as_bytes() => return Ok(()),
        Ok(_) => {
            return Err(format!(
                "witness dir {dir} already holds a different checkpoint at size {size} ({name}): not overwritten; another log writes there, or this log was rewritten"
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let tmp = d.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(note.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        super::jsonl::sync_dir(&path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn secret(w: &Witness) -> Result<Option<zeroize::Zeroizing<String>>, String> {
    if let Some(var) = &w.secret_env {
        return std::env::var(var)
            .map(|s| Some(zeroize::Zeroizing::new(s)))
            .map_err(|_| format!("environment variable {var} (witness secret_env) is not set"));
    }
    if let Some(path) = &w.secret_file {
        return std::fs::read_to_string(path)
            .map(|s| Some(zeroize::Zeroizing::new(s.trim().to_string())))
            .map_err(|e| format!("cannot read {path} (witness secret_file): {e}"));
    }
    Ok(None)
}

/// POSTs the note (`text/plain`) with `X-Breakglass-Origin` and `X-Breakglass-Checkpoint-Size`,
/// and with a secret the alert webhooks' HMAC headers; any 2xx answer is success.
pub async fn post(
    http: &reqwest::Client,
    w: &Witness,
    url: &str,
    origin: &str,
    size: u64,
    note: &str,
    now: Timestamp,
) -> Result<(), String> {
    let mut req = http
        .post(url)
        .timeout(w.timeout.unwrap_or(Duration::from_secs(10)))
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-breakglass-origin", origin)
        .header("x-breakglass-checkpoint-size", size.to_string());
    if let Some(key) = secret(w)? {
        let ts = now.unix_secs();
        req = req.header("x-breakglass-timestamp", ts.to_string()).header(
            "x-breakglass-signature",
            crate::alerts::signature(key.as_bytes(), ts, note.as_bytes()),
        );
    }
    let resp = req
        .body(note.to_string())
        .send()
        .await
        .map_err(|e| format!("witness {url}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("witness {url} answered {}", resp.status()))
    }
}

/// Every `*.note` file of a witness directory: (file name, text).
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read witness directory {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !name.ends_with(".note") {
            continue;
        }
        let path = entry.path();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let text = if len > MAX_NOTE {
            format!("(a file of {len} bytes, too large for a checkpoint note)")
        } else {
            match std::fs::read(&path) {
                Ok(b) => String::from_utf8(b)
                    .unwrap_or_else(|_| "(not UTF-8: not a checkpoint note)".into()),
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        };
        out.push((path.display().to_string(), text));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_written_once_and_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        write_dir(&dir, 5, "note five\n").unwrap();
        write_dir(&dir, 5, "note five\n").unwrap();
        let e = write_dir(&dir, 5, "another\n").unwrap_err();
        assert!(e.contains("different checkpoint at size 5"), "{e}");
        write_dir(&dir, 12, "note twelve\n").unwrap();
        let files = read_dir(d.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|(f, _)| f.rsplit('/').next().unwrap().to_string())
            .collect();
        assert_eq!(names, [file_name(5), file_name(12)]);
        assert_eq!(files[0].1, "note five\n");
        let e = write_dir(&format!("{dir}/not-mounted"), 1, "x").unwrap_err();
        assert!(e.contains("is the witness volume mounted?"), "{e}");
        assert!(!d.path().join("not-mounted").exists());
    }
}
