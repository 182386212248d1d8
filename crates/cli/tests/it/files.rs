//! The data directory is private whatever mode it was created with: the database, its `-wal`
//! and `-shm`, the keys and everything else in it are 0600, the directories 0700.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every file and directory under `dir` that is not owner-only, with its mode; and the files.
fn modes(dir: &Path) -> (Vec<String>, Vec<String>) {
    let (mut loose, mut files) = (Vec::new(), Vec::new());
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
        if mode != 0o700 {
            loose.push(format!("{} {mode:o}", d.display()));
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p);
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode != 0o600 {
                loose.push(format!("{} {mode:o}", p.display()));
            }
            files.push(p.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    (loose, files)
}

#[test]
fn data_dir_is_private_even_when_it_existed_world_readable() {
    let mut s = Server::start_prepared(POLICY, &[], &[], |data| {
        std::fs::create_dir(data).unwrap();
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let stray = data.join("notes.txt");
        std::fs::write(&stray, "left here by an operator").unwrap();
        std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o644)).unwrap();
    });
    let bob = s.user("bob", &["oncall"]);
    let g = bob.break_glass("prod-db", "INC-1");
    bob.ok(&["revoke", g["id"].as_str().unwrap()]);
    bob.break_glass("prod-db", "INC-2");
    let data = s.data_dir();
    let (loose, files) = modes(&data);
    for f in [
        "breakglass.db",
        "breakglass.db-wal",
        "breakglass.db-shm",
        "kek.key",
        "audit-key.pem",
        "notes.txt",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    assert!(loose.is_empty(), "not owner-only: {loose:?}");

    // Loosened by hand while stopped: the next start tightens them again.
    s.stop();
    for (p, m) in [
        (data.clone(), 0o755),
        (data.join("breakglass.db"), 0o644),
        (data.join("keys"), 0o755),
        (data.join("audit-key.pem"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    s.restart();
    bob.break_glass("prod-db", "INC-3");
    let (loose, _) = modes(&data);
    assert!(loose.is_empty(), "not owner-only after restart: {loose:?}");
}
