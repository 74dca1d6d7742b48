//! Progress output: `--json-progress` events (parsed here, shapes as in
//! docs/json.md) on backup and restore, and the periodic line that `-v`
//! writes when stderr is not a terminal.

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

fn lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn json_progress_reports_each_file_then_totals_then_the_summary() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    env.write("a.txt", "aaaa")
        .write("d/b.txt", "bb")
        .write("d/c.txt", "c");
    let r = env.backup(TARGET, &["--json-progress"]);
    r.expect_code(0);
    let events = lines(&r.stdout);
    let (summary, events) = events.split_last().unwrap();
    assert_eq!(summary["uploaded"], 3, "the summary comes last: {summary}");
    let mut files: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event"] == "file")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    files.sort();
    let uploaded = |p: &str| (p.to_owned(), "uploaded".to_owned());
    assert_eq!(
        files,
        [uploaded("a.txt"), uploaded("d/b.txt"), uploaded("d/c.txt")]
    );
    let last = events
        .iter()
        .rev()
        .find(|e| e["event"] == "progress")
        .expect("a progress event");
    assert_eq!(
        (last["files"].as_u64(), last["files_done"].as_u64()),
        (Some(3), Some(3)),
        "{last}"
    );
    assert_eq!(
        (last["bytes"].as_u64(), last["bytes_done"].as_u64()),
        (Some(7), Some(7)),
        "{last}"
    );
    for key in ["scanned", "bytes_per_sec", "elapsed_ms"] {
        assert!(last[key].is_u64(), "{key} in {last}");
    }

    let dest = env.root().join("dest");
    let r = env.restore(TARGET, &dest, &["--json-progress"]);
    r.expect_code(0);
    let events = lines(&r.stdout);
    let (summary, events) = events.split_last().unwrap();
    assert_eq!(summary["downloaded"], 3, "{summary}");
    let downloaded = events
        .iter()
        .filter(|e| e["event"] == "file" && e["action"] == "downloaded")
        .count();
    assert_eq!(downloaded, 3, "{events:?}");
    let last = events
        .iter()
        .rev()
        .find(|e| e["event"] == "progress")
        .expect("a progress event");
    assert_eq!(last["bytes_done"], 7, "{last}");
}

#[test]
fn verbose_without_a_terminal_writes_progress_lines_and_quiet_writes_none() {
    let env = TestEnv::new();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    env.write("a.txt", "a");
    let store = env.root().join("store");
    let store = store.to_str().unwrap();
    let r = env.backup(store, &["-v"]);
    r.expect_code(0);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("progress: "))
        .unwrap_or_else(|| panic!("no progress line\n{}", r.show()));
    assert!(line.contains("files 1/1"), "{line}");
    for extra in [&[][..], &["-q"][..]] {
        env.write_at("a.txt", "changed", (1_700_000_100, 0));
        let r = env.backup(store, extra);
        r.expect_code(0);
        assert!(!r.stderr.contains("progress: "), "{extra:?}\n{}", r.show());
    }
}
