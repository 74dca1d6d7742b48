//! A local store a Linux backup wrote (mtimes in nanoseconds, and so its
//! recorded ETags), read from Windows, whose file times keep 100 ns: the
//! store compares its ETags by its own rule (`ObjectStore::same_etag`), so
//! `verify` and `verify --deep` pass, a Windows backup of the same tree
//! sends nothing (its mtimes read 100 ns coarser: the objects are
//! refreshed in place) and a restore gets every file. The Linux side is
//! the Linux binary (`S3BACKUP_LINUX_BIN`, set by `.ci/windows.sh`), run
//! through `Z:\bin\sh` as `moto` runs moto.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{read_tree, run, scratch};

/// Makes a source tree with nanosecond mtimes under a fresh directory of
/// the Linux side's /tmp and backs it up there with the Linux binary into
/// `store`; the directory as Windows sees it (`Z:\tmp\…`).
fn linux_backup() -> PathBuf {
    let exe = std::env::var("S3BACKUP_LINUX_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .expect("S3BACKUP_LINUX_BIN (the Linux path of the Linux s3backup) is not set: run through .ci/windows.sh");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = format!("/tmp/s3backup-wine-linux-store-{}-{nanos}", std::process::id());
    // wine starts a Linux program but can neither pipe its output nor wait
    // for it: the script writes its output to `log` and, last, its exit
    // status to `status`, which is polled for (as moto's port is).
    let script = r#"d=$1
mkdir "$d" || exit 1
( set -e
mkdir -p "$d/src/sub"
printf alpha > "$d/src/a.txt"
printf 'bravo, a little longer' > "$d/src/sub/b.txt"
touch -d @1700000000.123456789 "$d/src/a.txt"
touch -d @1700000123.987654321 "$d/src/sub/b.txt"
HOME="$d" "$0" --state "$d/linux.db" backup "$d/src" "$d/store" ) >"$d/log" 2>&1
echo $? > "$d/status.tmp" && mv "$d/status.tmp" "$d/status""#;
    #[expect(clippy::zombie_processes, reason = "wine cannot wait for a Linux program")]
    let _shell = Command::new(r"Z:\bin\sh")
        .args(["-c", script, &exe, &dir])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("run the Linux backup through Z:\\bin\\sh: {e}"));
    let windows = PathBuf::from(format!("Z:{}", dir.replace('/', "\\")));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(windows.join("status")) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the Linux backup did not end in 120 s ({dir})"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(windows.join("log")).unwrap_or_default();
    assert_eq!(status.trim(), "0", "the Linux backup failed\n{log}");
    windows
}

/// Removes the Linux side's directory when dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_store_a_linux_backup_wrote_verifies_backs_up_nothing_and_restores_on_windows() {
    let dir = Cleanup(linux_backup());
    let (src, store) = (dir.0.join("src"), dir.0.join("store"));
    let store_text = store.to_str().unwrap();
    let home = scratch(&std::env::temp_dir());
    let state = home.path().join("state.db");
    let state = state.to_str().unwrap();

    for deep in [false, true] {
        let mut args = vec!["verify", store_text, "--json"];
        if deep {
            args.push("--deep");
        }
        let v = run(home.path(), &args).expect(0).json();
        assert_eq!(
            (v["ok"].as_u64(), v["mismatched"].as_u64()),
            (Some(2), Some(0)),
            "deep {deep}: {v}"
        );
    }

    // A Windows backup of the same tree (a new state: rows rebuilt from the
    // Linux manifest) finds every object holding what was recorded.
    let backup = [
        "--state",
        state,
        "backup",
        src.to_str().unwrap(),
        store_text,
        "--json",
    ];
    for which in ["first", "second"] {
        let r = run(home.path(), backup);
        r.expect(0);
        let s = r.json();
        assert_eq!(
            (s["uploaded"].as_u64(), s["bytes_sent"].as_u64()),
            (Some(0), Some(0)),
            "{which} Windows backup: {s}\n{}",
            r.stderr
        );
        assert!(!r.stderr.contains("no longer holds"), "{}", r.stderr);
    }

    let dest = home.path().join("dest");
    run(home.path(), ["restore", store_text, dest.to_str().unwrap()]).expect(0);
    assert_eq!(read_tree(&dest), read_tree(&src));
}
