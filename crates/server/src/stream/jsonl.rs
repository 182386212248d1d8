//! A JSON-lines file of audit events, rotated by size.
//!
//! Lines are appended and the file is fsynced before the stream's cursor moves, so a line that
//! was counted delivered is on disk. A crash before the cursor moved leaves lines that are
//! written again after the restart (duplicates, told apart by `seq`), and possibly a torn last
//! line, which is cut off when the file is next opened (it was never counted delivered).
//!
//! Rotation happens between lines: `path.N` is deleted, `path.N-1` … `path.1` move up by one,
//! `path` becomes `path.1` (each a `rename`, atomic), the directory is fsynced, and a new
//! `path` is started. Files are created with mode 0600 and an existing one loses group and
//! other permissions.

use breakglass_core::policy::JsonlTarget;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Appends `lines` (each ending in `\n`) to the stream's file, rotating as needed, then fsyncs.
/// `repair`: cut a torn last line first (set on the first write after start).
pub fn append(t: &JsonlTarget, lines: &[String], repair: bool) -> Result<(), String> {
    let path = Path::new(&t.path);
    let mut file = open(path)?;
    if repair {
        cut_torn_tail(&mut file).map_err(|e| format!("{}: {e}", t.path))?;
    }
    let mut size = file
        .metadata()
        .map_err(|e| format!("{}: {e}", t.path))?
        .len();
    let mut buf: Vec<u8> = Vec::new();
    for line in lines {
        let len = line.len() as u64;
        if size > 0 && size + len > t.max_size {
            write_out(&mut file, &mut buf, &t.path)?;
            file.sync_all()
                .map_err(|e| format!("cannot fsync {}: {e}", t.path))?;
            drop(file);
            rotate(path, t.keep).map_err(|e| format!("cannot rotate {}: {e}", t.path))?;
            file = open(path)?;
            size = 0;
        }
        buf.extend_from_slice(line.as_bytes());
        size += len;
        if buf.len() >= 1 << 20 {
            write_out(&mut file, &mut buf, &t.path)?;
        }
    }
    write_out(&mut file, &mut buf, &t.path)?;
    file.sync_data()
        .map_err(|e| format!("cannot fsync {}: {e}", t.path))
}

fn write_out(file: &mut File, buf: &mut Vec<u8>, path: &str) -> Result<(), String> {
    file.write_all(buf)
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    buf.clear();
    Ok(())
}

/// Opens (creating with mode 0600) for appending; an existing file loses group/other bits.
fn open(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot open {}: {e} (does the directory exist and may breakglass write it?)",
                path.display()
            )
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
    }
    Ok(file)
}

/// Cuts the file after its last `\n` (a line torn by a crash was never counted delivered).
fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        let part = chunk.get_mut(..n).unwrap_or_default();
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
                file.sync_all()?;
                tracing::warn!(
                    bytes = len - keep,
                    "cut a torn last line off the audit stream file"
                );
            }
            return Ok(());
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
        file.sync_all()?;
    }
    Ok(())
}

fn numbered(path: &Path, i: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{i}"));
    PathBuf::from(p)
}

fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    match std::fs::remove_file(numbered(path, keep)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for i in (1..keep).rev() {
        match std::fs::rename(numbered(path, i), numbered(path, i + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, numbered(path, 1))?;
    sync_dir(path)
}

/// Makes renames and new files in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(dir: &Path, max_size: u64, keep: u32) -> JsonlTarget {
        JsonlTarget {
            path: dir.join("a.jsonl").display().to_string(),
            max_size,
            keep,
        }
    }

    #[test]
    fn rotates_by_size_keeps_n_files_of_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let t = target(d.path(), 100, 2);
        let lines: Vec<String> = (0..20).map(|i| format!("{{\"seq\":{i:03}}}\n")).collect();
        for chunk in lines.chunks(3) {
            append(&t, chunk, false).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let base = Path::new(&t.path);
        let (cur, one, two) = (
            read(base),
            read(&numbered(base, 1)),
            read(&numbered(base, 2)),
        );
        assert!(!numbered(base, 3).exists());
        for f in [&cur, &one, &two] {
            assert!(f.len() <= 100 && f.ends_with('\n'), "{f:?}");
        }
        // Oldest to newest: contiguous, ending with the last line.
        let all = format!("{two}{one}{cur}");
        assert!(all.ends_with(&lines[19]));
        let start = lines
            .iter()
            .position(|l| all.starts_with(l.as_str()))
            .unwrap();
        assert_eq!(all, lines[start..].concat());
        let mode = std::fs::metadata(base).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_modes_are_tightened() {
        let d = tempfile::tempdir().unwrap();
        let t = target(d.path(), 1 << 20, 3);
        std::fs::write(&t.path, "{\"seq\":1}\n{\"seq\":2").unwrap();
        std::fs::set_permissions(&t.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append(&t, &["{\"seq\":2}\n".to_string()], true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&t.path).unwrap(),
            "{\"seq\":1}\n{\"seq\":2}\n"
        );
        let mode = std::fs::metadata(&t.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No newline at all: nothing of it was delivered.
        std::fs::write(&t.path, "{\"se").unwrap();
        append(&t, &["x\n".to_string()], true).unwrap();
        assert_eq!(std::fs::read_to_string(&t.path).unwrap(), "x\n");
    }
}
