//! Seeing the history (issue 15): `snapshots diff`, `snapshots ls` and
//! `snapshots find` against the in-process S3 server (s3s-fs), over three
//! backups with edits, a rename, deletions, a type change (file to
//! directory), a mode-only and an mtime-only change between them. Each
//! output is checked whole, text and JSON; so are the exit codes and
//! error lines of bad IDs and patterns, PATHs that name nothing, and
//! damaged snapshots (named by ID: an error naming them; met by a `find`
//! over every snapshot: skipped, named, exit 1; cut, out of order or with
//! an unreadable line: said so).

use serde_json::{Value, json};

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";
/// How messages name it.
const SHOWN: &str = "s3://bkt/pre";
/// 2023-11-16T02:00:00Z and 2023-11-17T05:46:40Z.
const T1: (i64, u32) = (1_700_100_000, 0);
const T2: (i64, u32) = (1_700_200_000, 0);
/// The text of T0, T1 and T2 in listings.
const S0: &str = "2023-11-14T22:13:20Z";
const S1: &str = "2023-11-16T02:00:00Z";
const S2: &str = "2023-11-17T05:46:40Z";

fn ns((secs, nanos): (i64, u32)) -> i64 {
    secs * 1_000_000_000 + i64::from(nanos)
}

/// The server, an environment backing up to `bkt::pre`, and the IDs and
/// creation times of its snapshots, oldest first.
struct Fx {
    server: S3Server,
    env: TestEnv,
    ids: Vec<String>,
    created: Vec<String>,
}

impl Fx {
    fn new() -> Fx {
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        let env = TestEnv::with_server(&server);
        Fx {
            server,
            env,
            ids: Vec::new(),
            created: Vec::new(),
        }
    }

    /// Every directory of the source: mode 755, mtime T0 (so that only
    /// what a test changes shows as changed).
    fn settle_dirs(&self) {
        for entry in walkdir::WalkDir::new(&self.env.src).min_depth(1) {
            let entry = entry.unwrap();
            if entry.file_type().is_dir() {
                let rel = entry
                    .path()
                    .strip_prefix(&self.env.src)
                    .unwrap()
                    .to_str()
                    .unwrap();
                self.env.set_mode(rel, 0o755).set_mtime(rel, T0);
            }
        }
    }

    /// A backup with `--delete`, then the snapshots as listed.
    fn backup(&mut self) {
        self.settle_dirs();
        self.env.backup_ok(TARGET, &["--delete"]);
        let rows = self.env.snapshot_list(TARGET);
        self.ids = rows.iter().map(|r| r.id.clone()).collect();
        self.created = rows.iter().map(|r| r.created.clone()).collect();
    }

    /// `s3backup --state S snapshots WORDS… TARGET ARGS… --endpoint-url E`.
    fn snapshots(&self, sub: &str, args: &[&str]) -> Run {
        let mut cmd = self.env.cmd();
        cmd.arg("--state")
            .arg(&self.env.state)
            .args(["snapshots", sub, TARGET]);
        cmd.args(args).arg("--endpoint-url").arg(self.server.endpoint());
        run(cmd)
    }

    /// Stdout of a run that must exit 0 with nothing on stderr.
    #[track_caller]
    fn ok(&self, sub: &str, args: &[&str]) -> String {
        let r = self.snapshots(sub, args);
        r.expect_code(0);
        assert!(r.stderr.is_empty(), "stderr\n{}", r.show());
        r.stdout
    }

    /// Writes a manifest object as another tool could.
    fn put_manifest(&self, id: &str, bytes: &[u8]) {
        let key = format!("pre/.s3backup/manifests/{id}.jsonl.zst");
        sdk_put(&sdk_client(&self.server.endpoint()), BUCKET, &key, bytes);
    }
}

/// Three backups: the tree, then an edit, a rename, a deletion, a mode
/// change and a file that became a directory, then an edit, an addition,
/// an mtime-only change and an empty directory removed.
fn three_backups() -> Fx {
    let mut fx = Fx::new();
    let env = &fx.env;
    env.write("a.txt", "alpha")
        .write("docs/notes.md", "notes")
        .write("docs/report.txt", "report v1")
        .write("gone.txt", "bye")
        .write("old/name.bin", "renamed content")
        .write("script.sh", "echo hi")
        .write("swap", "was a file");
    fx.backup();

    let env = &fx.env;
    env.write_at("a.txt", "alpha two", T1)
        .rename("old/name.bin", "new/name.bin")
        .set_mode("script.sh", 0o755)
        .remove("gone.txt")
        .remove("swap")
        .write("swap/inner.txt", "inside");
    fx.backup();

    let env = &fx.env;
    env.write_at("docs/report.txt", "report v2, longer", T2)
        .write("docs/extra.pdf", "%PDF-1.4")
        .set_mtime("docs/notes.md", T1);
    std::fs::remove_dir(env.path("old")).unwrap();
    fx.backup();
    assert_eq!(fx.ids.len(), 3, "three snapshots");
    fx
}

/// `lines` as the text a command prints: each line and a line break.
fn text(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn diff_shows_each_kind_of_change_with_sizes_and_totals() {
    let fx = three_backups();
    let (a, b) = (&fx.ids[0], &fx.ids[1]);
    let out = fx.ok("diff", &[a, b]);
    assert_eq!(
        out,
        text(&[
            &format!("diff {a} -> {b}"),
            "modified     file           9 B  a.txt  (was 5 B)",
            "removed      file           3 B  gone.txt",
            "added        dir              -  new",
            "renamed      file          15 B  old/name.bin -> new/name.bin",
            "metadata     file           7 B  script.sh  (mode 644 -> 755)",
            "type_changed dir              -  swap  (was file)",
            "added        file           6 B  swap/inner.txt",
            "total: added 1 file + 1 dir (6 B), removed 1 file (3 B), modified 1 file (5 B -> 9 B), renamed 1 file (15 B), metadata only 1 file, type changed 1 dir",
        ])
    );
    // The run ID alone, a unique prefix and `latest` name snapshots too.
    let run_id = b.split_once('-').unwrap().1;
    let out = fx.ok("diff", &[&b[..b.len() - 4], "latest"]);
    let again = fx.ok("diff", &[run_id, &fx.ids[2]]);
    assert_eq!(out, again);
    assert!(out.starts_with(&format!("diff {b} -> {}\n", fx.ids[2])), "{out}");
    // The same snapshot on both sides: no changes.
    let same = fx.ok("diff", &["latest", &fx.ids[2]]);
    assert!(same.ends_with("\ntotal: no changes\n"), "{same}");
}

#[test]
fn diff_json_is_one_object_with_exact_sizes_and_times() {
    let fx = three_backups();
    let (b, c) = (&fx.ids[1], &fx.ids[2]);
    let out = fx.ok("diff", &[b, c, "--json"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let file = |size: u64, t, content: &str| json!({"type": "file", "size": size, "mtime_ns": ns(t), "mode": "644", "blake3": blake3_hex(content.as_bytes())});
    let count = |files: u64, dirs: u64, bytes: u64| json!({"files": files, "dirs": dirs, "bytes": bytes});
    let expected = json!({
        "a": b,
        "b": c,
        "unreadable_lines": 0,
        "totals": {
            "added": count(1, 0, 8),
            "removed": count(0, 1, 0),
            "modified": {"files": 1, "old_bytes": 9, "new_bytes": 17},
            "renamed": count(0, 0, 0),
            "metadata": count(1, 0, 5),
            "type_changed": count(0, 0, 0),
        },
        "changes": [
            {"change": "added", "path": "docs/extra.pdf", "old": null, "new": file(8, T0, "%PDF-1.4")},
            {"change": "metadata", "path": "docs/notes.md", "old": file(5, T0, "notes"), "new": file(5, T1, "notes")},
            {"change": "modified", "path": "docs/report.txt", "old": file(9, T0, "report v1"), "new": file(17, T2, "report v2, longer")},
            {"change": "removed", "path": "old", "old": {"type": "dir", "size": 0, "mtime_ns": ns(T0), "mode": "755"}, "new": null},
        ],
    });
    assert_eq!(got, expected, "{out}");
    // A rename names where it came from.
    let out = fx.ok("diff", &[&fx.ids[0], b, "--json"]);
    let got: Value = serde_json::from_str(&out).unwrap();
    let renamed: Vec<&Value> = got["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == "renamed")
        .collect();
    assert_eq!(renamed.len(), 1, "{out}");
    assert_eq!(renamed[0]["path"], "new/name.bin");
    assert_eq!(renamed[0]["from"], "old/name.bin");
    assert_eq!(got["totals"]["renamed"], count(1, 0, 15));
    assert_eq!(got["totals"]["type_changed"], count(0, 1, 0));
}

#[test]
fn ls_lists_a_snapshot_whole_or_under_paths() {
    let fx = three_backups();
    let b = &fx.ids[1];
    let out = fx.ok("ls", &[b]);
    assert_eq!(
        out,
        text(&[
            &format!("file     644        9 B  {S1}  a.txt"),
            &format!("dir      755          -  {S0}  docs"),
            &format!("file     644        5 B  {S0}  docs/notes.md"),
            &format!("file     644        9 B  {S0}  docs/report.txt"),
            &format!("dir      755          -  {S0}  new"),
            &format!("file     644       15 B  {S0}  new/name.bin"),
            &format!("dir      755          -  {S0}  old"),
            &format!("file     755        7 B  {S0}  script.sh"),
            &format!("dir      755          -  {S0}  swap"),
            &format!("file     644        6 B  {S0}  swap/inner.txt"),
        ])
    );
    let out = fx.ok("ls", &[&fx.ids[0], "docs/", "swap", "--json"]);
    let got: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let file = |path: &str, content: &str| json!({"path": path, "type": "file", "size": content.len(), "mtime_ns": ns(T0), "mode": "644", "blake3": blake3_hex(content.as_bytes())});
    assert_eq!(
        got,
        [
            json!({"path": "docs", "type": "dir", "size": 0, "mtime_ns": ns(T0), "mode": "755"}),
            file("docs/notes.md", "notes"),
            file("docs/report.txt", "report v1"),
            file("swap", "was a file"),
        ],
        "{out}"
    );
}

#[test]
fn ls_of_a_path_the_snapshot_lacks_is_an_error_naming_it() {
    let fx = three_backups();
    let c = &fx.ids[2];
    let r = fx.snapshots(
        "ls",
        &["latest", "docs/extra.pdf", "gone.txt", "doc", "docs/extra.pdf/"],
    );
    r.expect_code(1);
    assert_eq!(
        r.stdout,
        text(&[&format!("file     644        8 B  {S0}  docs/extra.pdf")]),
        "{}",
        r.show()
    );
    assert_eq!(
        r.stderr,
        format!(
            "error: snapshot {c} holds no 'gone.txt', 'doc', 'docs/extra.pdf/' (see 's3backup snapshots ls {SHOWN} {c}')\n"
        ),
        "{}",
        r.show()
    );
}

#[test]
fn find_shows_which_snapshots_hold_matching_paths_newest_first() {
    let fx = three_backups();
    let [a, b, c] = [0, 1, 2].map(|i| (&fx.ids[i], &fx.created[i]));
    let out = fx.ok("find", &["*.txt", "swap"]);
    assert_eq!(
        out,
        text(&[
            &format!("snapshot {} ({})", c.0, c.1),
            &format!("  file     644        9 B  {S1}  a.txt"),
            &format!("  file     644       17 B  {S2}  docs/report.txt"),
            &format!("  dir      755          -  {S0}  swap"),
            &format!("  file     644        6 B  {S0}  swap/inner.txt"),
            &format!("snapshot {} ({})", b.0, b.1),
            &format!("  file     644        9 B  {S1}  a.txt"),
            &format!("  file     644        9 B  {S0}  docs/report.txt"),
            &format!("  dir      755          -  {S0}  swap"),
            &format!("  file     644        6 B  {S0}  swap/inner.txt"),
            &format!("snapshot {} ({})", a.0, a.1),
            &format!("  file     644        5 B  {S0}  a.txt"),
            &format!("  file     644        9 B  {S0}  docs/report.txt"),
            &format!("  file     644        3 B  {S0}  gone.txt"),
            &format!("  file     644       10 B  {S0}  swap"),
            "found 12 matches in 3 of 3 snapshots",
        ])
    );
    // A pattern without '/' matches a name at any depth; with one, the whole path.
    let out = fx.ok("find", &["name.bin", "docs/*.md", "--json"]);
    let got: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let hit = |(id, created): (&String, &String), path: &str, t, content: &str| {
        json!({"snapshot": id, "created": created, "path": path, "type": "file", "size": content.len(),
               "mtime_ns": ns(t), "mode": "644", "blake3": blake3_hex(content.as_bytes())})
    };
    assert_eq!(
        got,
        [
            hit(c, "docs/notes.md", T1, "notes"),
            hit(c, "new/name.bin", T0, "renamed content"),
            hit(b, "docs/notes.md", T0, "notes"),
            hit(b, "new/name.bin", T0, "renamed content"),
            hit(a, "docs/notes.md", T0, "notes"),
            hit(a, "old/name.bin", T0, "renamed content"),
        ],
        "{out}"
    );
    // --snapshot limits the search; nothing found is no error.
    let out = fx.ok("find", &["gone.txt", "--snapshot", "latest"]);
    assert_eq!(out, "found no match in 1 snapshot\n");
    let out = fx.ok(
        "find",
        &["gone.txt", "--snapshot", &a.0[..a.0.len() - 3], "--json"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        hit(a, "gone.txt", T0, "bye")
    );
}

#[test]
fn bad_ids_and_patterns_exit_as_documented() {
    let fx = three_backups();
    // An unknown or ambiguous ID: exit 1, naming it.
    let r = fx.snapshots("diff", &["nope", "latest"]);
    r.expect_code(1);
    assert_eq!(
        r.error_line(),
        format!(
            "error: no snapshot 'nope' in {SHOWN}: run 's3backup snapshots {SHOWN}' to see the valid IDs"
        )
    );
    assert!(r.stdout.is_empty(), "{}", r.show());
    let r = fx.snapshots("ls", &["20"]);
    r.expect_code(1);
    assert_eq!(
        r.error_line(),
        "error: snapshot ID '20' is ambiguous (3 match): give more of it"
    );
    let r = fx.snapshots("find", &["a.txt", "--snapshot", "nope"]);
    r.expect_code(1);
    assert!(r.error_line().contains("no snapshot 'nope'"), "{}", r.show());
    // The command line is wrong: exit 2, nothing on stdout.
    for args in [
        &["find", "a["][..],
        &["find", ""],
        &["find", "#draft"],
        &["find", "!a.txt"],
        &["find"],
        &["ls", ""],
        &["ls", "latest", "../x"],
        &["diff", "latest"],
    ] {
        let r = fx.snapshots(args[0], &args[1..]);
        r.expect_code(2);
        assert!(r.stdout.is_empty(), "{args:?}\n{}", r.show());
    }
    let r = fx.snapshots("find", &["ok", "a["]);
    assert!(r.stderr.contains("'a[' is not a valid pattern"), "{}", r.show());
    let r = fx.snapshots("find", &["#draft"]);
    assert!(
        r.stderr
            .contains("'#draft' is a comment in the syntax of --exclude and finds nothing: write '\\#draft'"),
        "{}",
        r.show()
    );
}

#[test]
fn a_damaged_snapshot_named_is_an_error_naming_it_and_find_goes_on_without_it() {
    let fx = three_backups();
    let stray = "29991231T000000Z-x";
    fx.put_manifest(stray, &noise(40, 7));
    let damaged =
        format!("error: snapshot {stray} is damaged: manifest 'pre/.s3backup/manifests/{stray}.jsonl.zst'");
    for (sub, args) in [
        ("ls", vec![stray]),
        ("diff", vec![fx.ids[0].as_str(), "2999"]),
        ("find", vec!["a.txt", "--snapshot", stray]),
    ] {
        let r = fx.snapshots(sub, &args);
        r.expect_code(1);
        assert!(r.error_line().starts_with(&damaged), "{sub}\n{}", r.show());
        assert!(r.stdout.is_empty(), "{sub}\n{}", r.show());
    }
    // `latest` is the newest readable snapshot, with a warning.
    let r = fx.snapshots("ls", &["latest", "a.txt"]);
    r.expect_code(0);
    assert_eq!(
        r.stdout,
        text(&[&format!("file     644        9 B  {S1}  a.txt")])
    );
    assert!(r.stderr.contains(stray), "{}", r.show());
    // A find over all snapshots shows what the readable ones hold and says which it could not search.
    let r = fx.snapshots("find", &["gone.txt"]);
    r.expect_code(1);
    let (a, created) = (&fx.ids[0], &fx.created[0]);
    assert_eq!(
        r.stdout,
        text(&[
            &format!("snapshot {a} ({created})"),
            &format!("  file     644        3 B  {S0}  gone.txt"),
            "found 1 match in 1 of 3 snapshots",
        ]),
        "{}",
        r.show()
    );
    assert_eq!(
        r.error_line(),
        format!(
            "error: 1 snapshot(s) could not be searched whole: {stray} (each named above); the matches shown come from what could be read"
        )
    );
}

/// A hand-made manifest `…-{run_id}` of `entries` (lines as given).
fn handmade(fx: &Fx, run_id: &str, files: u64, lines: &[&str]) -> String {
    let mut header = manifest_header(files, 0);
    header["run_id"] = run_id.into();
    let mut text = format!("{header}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let id = format!("20200101T000000Z-{run_id}");
    fx.put_manifest(&id, &zstd::encode_all(text.as_bytes(), 3).unwrap());
    id
}

#[test]
fn manifests_cut_out_of_order_or_with_bad_lines_are_said_so() {
    let fx = three_backups();
    let entry = |p: &str| {
        format!(
            r#"{{"path":"{p}","type":"file","size":1,"mtime_ns":0,"mode":"644","blake3":"{}"}}"#,
            blake3_hex(p.as_bytes())
        )
    };
    let unsorted = handmade(
        &fx,
        "00000000000000000000000000000001",
        2,
        &[&entry("b"), &entry("a")],
    );
    let bad_line = handmade(
        &fx,
        "00000000000000000000000000000002",
        3,
        &[&entry("a"), "not json", &entry("c")],
    );
    let cut = handmade(&fx, "00000000000000000000000000000003", 5, &[&entry("a")]);

    let r = fx.snapshots("ls", &[&unsorted]);
    r.expect_code(1);
    assert_eq!(
        r.stdout,
        text(&["file     644        1 B  1970-01-01T00:00:00Z  b"]),
        "{}",
        r.show()
    );
    assert_eq!(
        r.error_line(),
        format!("error: snapshot {unsorted} is damaged: its manifest lists 'a' after 'b', out of path order")
    );
    let r = fx.snapshots("diff", &[&unsorted, "latest"]);
    r.expect_code(1);
    assert!(
        r.stdout.is_empty() && r.error_line().contains("out of path order"),
        "{}",
        r.show()
    );

    let r = fx.snapshots("ls", &[&bad_line, "--json"]);
    r.expect_code(1);
    let paths: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(paths, ["a", "c"], "{}", r.show());
    assert!(
        r.stderr
            .contains(&format!("snapshot {bad_line}: manifest line 3 cannot be read")),
        "{}",
        r.show()
    );
    assert_eq!(
        r.error_line(),
        format!("error: snapshot {bad_line}: 1 manifest line(s) could not be read; the listing lacks them")
    );

    let r = fx.snapshots("ls", &[&cut]);
    r.expect_code(1);
    assert_eq!(
        r.stdout,
        text(&["file     644        1 B  1970-01-01T00:00:00Z  a"]),
        "{}",
        r.show()
    );
    assert!(
        r.error_line()
            .contains(&format!("snapshot {cut}: manifest unreadable after line 2")),
        "{}",
        r.show()
    );

    // find over every snapshot: all three named, the readable ones searched.
    let r = fx.snapshots("find", &["a"]);
    r.expect_code(1);
    assert!(
        r.stdout.ends_with("found 2 matches in 2 of 6 snapshots\n"),
        "{}",
        r.show()
    );
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors,
        [
            format!(
                "error: 2 snapshot(s) could not be searched whole: {cut}, {unsorted} (each named above); the matches shown come from what could be read"
            ),
            "error: 1 manifest line(s) could not be read (each named above); they were not searched"
                .to_string(),
        ],
        "{}",
        r.show()
    );
}

#[test]
fn names_print_escaped_in_text_and_exact_in_json() {
    let mut fx = Fx::new();
    let evil = "evil\u{1b}[31mred\nerror: fake\u{9b}line";
    fx.env.write(evil, "x");
    fx.backup();
    let out = fx.ok("ls", &["latest"]);
    assert_eq!(
        out,
        text(&[&format!(
            "file     644        1 B  {S0}  evil\\x1b[31mred\\nerror: fake\\u{{9b}}line"
        )])
    );
    let out = fx.ok("find", &["evil*", "--json"]);
    assert!(!out.trim_end().chars().any(char::is_control), "{out:?}");
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["path"], evil);
    let out = fx.ok("diff", &["latest", "latest", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["changes"], json!([]));
}

#[test]
fn the_shells_connection_options_reach_diff_ls_and_find() {
    let mut fx = Fx::new();
    fx.env.write("a.txt", "alpha");
    fx.backup();
    let mut cmd = fx.env.cmd();
    cmd.arg("--state").arg(&fx.env.state).arg("shell");
    cmd.args(["--endpoint-url", &fx.server.endpoint()]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let input = format!(
        "snapshots ls {TARGET} latest\nsnapshots find {TARGET} a.txt --json\nsnapshots diff {TARGET} latest latest\n"
    );
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let id = &fx.ids[0];
    assert!(
        stdout.contains(&format!("file     644        5 B  {S0}  a.txt\n")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{{\"snapshot\":\"{id}\",")), "{stdout}");
    assert!(
        stdout.contains(&format!("diff {id} -> {id}\ntotal: no changes\n")),
        "{stdout}"
    );
}
