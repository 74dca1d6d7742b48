//! `s3backup restore` and `s3backup snapshots` against the in-process S3
//! server: what lands in DEST (bytes, mtimes to the nanosecond, modes,
//! directories), which requests the server sees, the `--json` summary, the
//! messages and the exit codes. Objects "from other tools" are put with a
//! plain aws-sdk-s3 client; hostile names come from a hand-written manifest
//! and from listing entries the server adds (`S3Server::add_listed_key`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use filetime::FileTime;

use crate::common::*;
use crate::server::S3Server;

const BUCKET: &str = "bkt";
const TARGET: &str = "bkt::pre";

/// A server with bucket `bkt` and an environment pointed at it.
fn setup() -> (S3Server, TestEnv) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let env = TestEnv::with_server(&server);
    (server, env)
}

/// GetObject requests on keys outside `.s3backup/`.
fn file_gets(server: &S3Server) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.op == "GetObject")
        .filter_map(|r| r.key)
        .filter(|k| !k.contains(".s3backup/"))
        .collect()
}

#[test]
fn round_trip_on_a_new_machine_restores_bytes_mtimes_modes_and_directories() {
    let (server, env) = setup();
    let n_files = rich_tree(&env);
    let expected = tree(&env.src);
    let backup = env.backup_ok(TARGET, &[]);
    let id = snapshot_id(&backup.snapshot.expect("a manifest"));

    // Another machine: its own HOME, no state file, never saw the backup.
    let other = TestEnv::with_server(&server);
    let dest = other.root().join("restored");
    server.clear_requests();
    let s = other.restore_ok(TARGET, &dest, &[]);

    assert_eq!(tree(&dest), expected, "DEST must equal the source tree");
    assert_eq!(s.source, id);
    assert_eq!(s.files, n_files as u64);
    assert_eq!(s.downloaded, n_files as u64);
    assert_eq!((s.unchanged, s.kept, s.failed), (0, 0, 0), "{s:?}");
    let n_dirs = expected.values().filter(|n| n.kind == Kind::Dir).count() as u64;
    assert_eq!(s.dirs, n_dirs, "{s:?}");
    let bytes: usize = expected
        .values()
        .map(|n| match &n.kind {
            Kind::File(b) => b.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(s.bytes_received, bytes as u64);
    assert!(s.failures.is_empty() && s.kept_paths.is_empty(), "{s:?}");

    // One whole-object GET per file, no ranges for small files.
    let mut gets = file_gets(&server);
    gets.sort();
    let mut want: Vec<String> = expected
        .iter()
        .filter(|(_, n)| matches!(n.kind, Kind::File(_)))
        .map(|(p, _)| format!("pre/{p}"))
        .collect();
    want.sort();
    assert_eq!(gets, want);
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.op == "GetObject")
            .all(|r| r.range.is_none()),
        "{:#?}",
        server.requests()
    );
    // No write of any kind, and nothing of the state's on the new machine.
    assert!(
        server
            .requests()
            .iter()
            .all(|r| ["GET", "HEAD"].contains(&r.method.as_str())),
        "{:?}",
        server.ops()
    );
    assert_eq!(
        paths_under(&other.home),
        Vec::<String>::new(),
        "restore wrote into HOME"
    );
    assert!(!other.state.exists());
}

#[test]
fn restore_works_where_no_state_file_could_even_be_created() {
    let (_server, env) = setup();
    env.write("a.txt", "x");
    env.backup_ok(TARGET, &[]);
    // XDG_STATE_HOME and HOME below a regular file: opening a state DB fails.
    let blocker = env.root().join("blocker");
    std::fs::write(&blocker, "not a directory").unwrap();
    let dest = env.root().join("dest");
    let mut cmd = env.restore_cmd(TARGET, &dest, &["--json"]);
    cmd.env("XDG_STATE_HOME", blocker.join("state"))
        .env("HOME", blocker.join("home"));
    let r = run(cmd);
    r.expect_code(0);
    assert_eq!(r.restore_summary().downloaded, 1);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"x");
}

#[test]
fn large_object_is_fetched_in_parallel_16mib_ranges() {
    let (server, env) = setup();
    let size = 70 * MIB + 12_345;
    let big = noise(size, 70);
    env.write_at("big.bin", &big, (1_690_000_000, 424_242_424));
    env.set_mode("big.bin", 0o640);
    env.write("small.txt", "small");
    env.backup_ok(TARGET, &["--multipart-threshold", "5MiB", "--part-size", "5MiB"]);
    assert!(
        server.count("UploadPart") >= 14,
        "the backup was multipart: {:?}",
        server.ops()
    );

    let dest = env.root().join("dest");
    server.clear_requests();
    let s = env.restore_ok(TARGET, &dest, &["--jobs", "4"]);
    assert_eq!((s.files, s.downloaded, s.failed), (2, 2, 0), "{s:?}");
    assert_eq!(s.bytes_received, size as u64 + 5);

    let got = std::fs::read(dest.join("big.bin")).unwrap();
    assert_eq!(got.len(), size);
    assert!(got == big, "restored bytes differ from the original");
    let md = std::fs::metadata(dest.join("big.bin")).unwrap();
    assert_eq!(mtime_of(&dest.join("big.bin")), (1_690_000_000, 424_242_424));
    assert_eq!(md.mode() & 0o7777, 0o640);

    let range_size = 16 * MIB as u64;
    let mut want: Vec<String> = (0..size as u64)
        .step_by(range_size as usize)
        .map(|start| {
            let end = (start + range_size).min(size as u64) - 1;
            format!("bytes={start}-{end}")
        })
        .collect();
    want.sort();
    let reqs = server.requests();
    let mut ranges: Vec<String> = reqs
        .iter()
        .filter(|r| r.op == "GetObject" && r.key.as_deref() == Some("pre/big.bin"))
        .map(|r| {
            r.range
                .clone()
                .unwrap_or_else(|| panic!("GetObject of the large file without Range: {r:?}"))
        })
        .collect();
    ranges.sort();
    assert_eq!(ranges, want, "one GET per 16 MiB range, covering the object");
    let small: Vec<_> = reqs
        .iter()
        .filter(|r| r.op == "GetObject" && r.key.as_deref() == Some("pre/small.txt"))
        .collect();
    assert_eq!(small.len(), 1);
    assert_eq!(small[0].range, None, "small objects come in one GET");
    assert_eq!(temp_files(&dest), Vec::<String>::new());
}

#[test]
fn without_a_manifest_the_listing_is_restored_with_a_notice() {
    let (server, env) = setup();
    let c = sdk_client(&server.endpoint());
    sdk_put(&c, BUCKET, "plain/a.txt", b"alpha");
    sdk_put(&c, BUCKET, "plain/dir/b.txt", b"beta");
    sdk_put(&c, BUCKET, "plain/zero.txt", b"");
    sdk_put(&c, BUCKET, "plain/.s3backup/locks/x", b"tool area");
    sdk_put(
        &c,
        BUCKET,
        "plain/.s3backup/manifests/notes.txt",
        b"not a manifest",
    );
    sdk_put(&c, BUCKET, "other/outside-prefix.txt", b"no");
    // rclone writes an `mtime` metadata value (and no blake3): it wins over Last-Modified.
    block_on(
        c.put_object()
            .bucket(BUCKET)
            .key("plain/rclone.txt")
            .metadata("mtime", "1600000000.5")
            .body(b"by rclone".to_vec().into())
            .send(),
    )
    .expect("PutObject with metadata");
    // s3s-fs keeps no "folder/" objects; S3 lists them as zero-byte keys.
    server.add_listed_key(BUCKET, "plain/folder/", 0);
    // Last-Modified is the object file's mtime in s3s-fs.
    let stamps = [
        ("plain/a.txt", 1_500_000_001),
        ("plain/dir/b.txt", 1_500_000_002),
        ("plain/zero.txt", 1_500_000_003),
    ];
    for (key, secs) in stamps {
        filetime::set_file_mtime(server.object_path(BUCKET, key), FileTime::from_unix_time(secs, 0)).unwrap();
    }

    let dest = env.root().join("dest");
    let r = env.restore("bkt::plain", &dest, &["--json"]);
    r.expect_code(0);
    assert!(
        r.stderr.contains("notice") && r.stderr.contains("listing"),
        "a notice says the listing is used\n{}",
        r.show()
    );
    let s = r.restore_summary();
    assert_eq!(s.source, "listing");
    assert_eq!((s.files, s.downloaded, s.failed), (4, 4, 0), "{s:?}");

    let got: Vec<(String, Vec<u8>, (i64, u32))> = files_of(&dest)
        .into_iter()
        .map(|(p, n)| match n.kind {
            Kind::File(b) => (p, b, n.mtime),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a.txt".to_owned(), b"alpha".to_vec(), (1_500_000_001, 0)),
            ("dir/b.txt".to_owned(), b"beta".to_vec(), (1_500_000_002, 0)),
            (
                "rclone.txt".to_owned(),
                b"by rclone".to_vec(),
                (1_600_000_000, 500_000_000)
            ),
            ("zero.txt".to_owned(), Vec::new(), (1_500_000_003, 0)),
        ]
    );
    assert_eq!(
        paths_under(&dest),
        ["a.txt", "dir", "dir/b.txt", "rclone.txt", "zero.txt"],
        "no folder placeholder, nothing of .s3backup/"
    );
    assert_eq!(server.count_key("GetObject", "plain/.s3backup/locks/x"), 0);
    assert_eq!(server.count_key("GetObject", "plain/folder/"), 0);
}

#[test]
fn listing_of_more_than_one_page_is_restored_whole() {
    let (server, env) = setup();
    // Objects written straight into s3s-fs's directory: no request, no metadata.
    let n = 1_100;
    for i in 0..n {
        let p = server.object_path(BUCKET, &format!("many/d{}/f {i:04} ?#+.txt", i % 7));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("file {i}")).unwrap();
    }
    let dest = env.root().join("dest");
    let s = env.restore_ok("bkt::many", &dest, &["--from-listing", "--jobs", "64"]);
    assert_eq!((s.files, s.downloaded, s.failed), (n, n, 0));
    assert!(
        server.count("ListObjectsV2") >= 2,
        "more than one page: {}",
        server.count("ListObjectsV2")
    );
    let files = files_of(&dest);
    assert_eq!(files.len() as u64, n);
    for i in [0, 999, 1000, n - 1] {
        let p = dest.join(format!("d{}/f {i:04} ?#+.txt", i % 7));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("file {i}"));
    }
}

#[test]
fn from_listing_restores_what_the_bucket_holds_now_with_object_metadata() {
    let (server, env) = setup();
    env.write_at("a.txt", "backed up", (1_650_000_000, 123_456_789));
    env.set_mode("a.txt", 0o751);
    env.write_at("dir/b.txt", "bee", (1_600_000_000, 5));
    env.backup_ok(TARGET, &[]);
    let c = sdk_client(&server.endpoint());
    sdk_put(&c, BUCKET, "pre/extra.txt", b"put by another tool");
    filetime::set_file_mtime(
        server.object_path(BUCKET, "pre/extra.txt"),
        FileTime::from_unix_time(1_450_000_000, 0),
    )
    .unwrap();

    // The default source is the snapshot, which does not know extra.txt.
    let dest = env.root().join("from-manifest");
    let s = env.restore_ok(TARGET, &dest, &[]);
    assert_ne!(s.source, "listing");
    assert_eq!(paths_under(&dest), ["a.txt", "dir", "dir/b.txt"]);

    let dest = env.root().join("from-listing");
    let s = env.restore_ok(TARGET, &dest, &["--from-listing"]);
    assert_eq!(s.source, "listing");
    assert_eq!((s.files, s.downloaded, s.failed), (3, 3, 0), "{s:?}");
    assert_eq!(paths_under(&dest), ["a.txt", "dir", "dir/b.txt", "extra.txt"]);
    // Objects s3backup wrote carry mtime and mode metadata: exact to the ns.
    let t = tree(&dest);
    assert_eq!(t["a.txt"].kind, Kind::File(b"backed up".to_vec()));
    assert_eq!(t["a.txt"].mtime, (1_650_000_000, 123_456_789));
    assert_eq!(t["a.txt"].mode, 0o751);
    assert_eq!(t["dir/b.txt"].mtime, (1_600_000_000, 5));
    // The foreign object gets its Last-Modified.
    assert_eq!(t["extra.txt"].kind, Kind::File(b"put by another tool".to_vec()));
    assert_eq!(t["extra.txt"].mtime, (1_450_000_000, 0));
}

#[test]
fn older_snapshot_whose_object_changed_is_reported_unrecoverable() {
    // A pure mirror (`--history off`): what a run replaces or deletes is gone.
    let (server, env) = setup();
    // This test replaces or deletes most of a tiny set on purpose (the guard is tested in `guard`).
    let env = env.past_the_guard();
    env.write("same-size.txt", "one\n");
    env.write("grew.txt", "short");
    env.write("keep.txt", "kept as is");
    let first = env.backup_ok(TARGET, &["--history", "off"]);
    env.write_at("same-size.txt", "two\n", (1_700_000_100, 0));
    env.write_at("grew.txt", "much longer than before", (1_700_000_100, 0));
    env.backup_ok(TARGET, &["--history", "off"]);
    let ids: Vec<String> = env.snapshot_list(TARGET).into_iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], snapshot_id(first.snapshot.as_deref().unwrap()));

    let dest = env.root().join("dest");
    server.clear_requests();
    let r = env.restore(TARGET, &dest, &["--json", "--snapshot", &ids[0]]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.source, ids[0]);
    assert_eq!(s.failed, 2, "{s:?}");
    assert_eq!(s.failed_paths(), ["grew.txt", "same-size.txt"]);
    for f in &s.failures {
        assert!(
            f.error.contains("unrecoverable"),
            "{}: {:?} should say it is unrecoverable",
            f.path,
            f.error
        );
    }
    assert!(r.stderr.contains("unrecoverable"), "{}", r.show());
    // The new content is not passed off as the old snapshot.
    assert_eq!(paths_under(&dest), ["keep.txt"]);
    assert_eq!(std::fs::read(dest.join("keep.txt")).unwrap(), b"kept as is");
    assert_eq!(
        server.count("PutObject"),
        0,
        "a restore writes nothing to the bucket"
    );

    // The latest snapshot has the new content.
    let s = env.restore_ok(TARGET, &dest, &["--snapshot", "latest"]);
    assert_eq!(s.source, ids[1]);
    assert_eq!(std::fs::read(dest.join("same-size.txt")).unwrap(), b"two\n");
    assert_eq!(
        std::fs::read(dest.join("grew.txt")).unwrap(),
        b"much longer than before"
    );
}

#[test]
fn older_snapshot_whose_object_was_deleted_is_reported_unrecoverable() {
    // A pure mirror (`--history off`): what a run replaces or deletes is gone.
    let (_server, env) = setup();
    env.write("a.txt", "a");
    env.write("dir/b.txt", "b");
    env.backup_ok(TARGET, &["--history", "off"]);
    env.remove("dir/b.txt");
    let s = env.backup_ok(TARGET, &["--delete", "--history", "off"]);
    assert_eq!(s.deleted, 1);
    let rows = env.snapshot_list(TARGET);
    assert_eq!(rows.len(), 2);

    let dest = env.root().join("dest");
    let r = env.restore(TARGET, &dest, &["--json", "--snapshot", &rows[0].id]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["dir/b.txt"]);
    assert!(s.failures[0].error.contains("unrecoverable"), "{:?}", s.failures);
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"a");
    assert!(!dest.join("dir/b.txt").exists());
    assert_eq!(temp_files(&dest), Vec::<String>::new());
}

#[test]
fn bucket_root_target_round_trips_and_its_listing_skips_the_tool_area() {
    let (_server, env) = setup();
    rich_tree(&env);
    let expected = tree(&env.src);
    env.backup_ok("bkt::", &[]);
    let dest = env.root().join("dest");
    env.restore_ok("s3://bkt", &dest, &[]);
    assert_eq!(tree(&dest), expected);

    let dest = env.root().join("listed");
    let s = env.restore_ok("bkt::", &dest, &["--from-listing"]);
    assert_eq!(s.source, "listing");
    let want: Vec<(String, Kind, (i64, u32), u32)> = files_of(&env.src)
        .into_iter()
        .map(|(p, n)| (p, n.kind, n.mtime, n.mode))
        .collect();
    let got: Vec<(String, Kind, (i64, u32), u32)> = files_of(&dest)
        .into_iter()
        .map(|(p, n)| (p, n.kind, n.mtime, n.mode))
        .collect();
    assert_eq!(got, want, "files, mtimes and modes from the objects' metadata");
    assert!(!dest.join(".s3backup").exists());
}

#[test]
fn snapshot_ids_full_run_id_unique_prefix_latest_and_ambiguous() {
    let (_server, env) = setup();
    env.write("a.txt", "1");
    env.backup_ok(TARGET, &[]);
    env.write("b.txt", "2");
    env.backup_ok(TARGET, &[]);
    let ids: Vec<String> = env.snapshot_list(TARGET).into_iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 2);

    let restored = |id: &str| {
        let dest = env.root().join(format!("dest-{}", id.len()));
        let s = env.restore_ok(TARGET, &dest, &["--snapshot", id]);
        let files = paths_under(&dest);
        std::fs::remove_dir_all(&dest).unwrap();
        (s.source, files)
    };
    assert_eq!(restored(&ids[0]), (ids[0].clone(), vec!["a.txt".to_owned()]));
    let run_id = ids[0].split_once('-').unwrap().1;
    assert_eq!(restored(run_id), (ids[0].clone(), vec!["a.txt".to_owned()]));
    let prefix = &ids[1][..ids[1].len() - 4];
    assert_eq!(
        restored(prefix),
        (ids[1].clone(), vec!["a.txt".to_owned(), "b.txt".to_owned()])
    );
    assert_eq!(restored("latest").0, ids[1]);

    // Both IDs start with the year: ambiguous, a usage problem, nothing written.
    let dest = env.root().join("amb");
    let r = env.restore(TARGET, &dest, &["--snapshot", "20"]);
    r.expect_code(1);
    assert!(r.error_line().contains("ambiguous"), "{}", r.show());
    assert!(!dest.exists());
}

#[test]
fn partial_restore_of_files_and_directories() {
    let (server, env) = setup();
    env.write("docs/report.pdf", "pdf bytes");
    env.write("docs/other.txt", "other");
    env.write("photos/a.jpg", "jpg a");
    env.write("photos/sub/b.jpg", "jpg b");
    env.write("photos-old/c.jpg", "not under photos/");
    env.write("music/x.mp3", "mp3");
    env.backup_ok(TARGET, &[]);

    let dest = env.root().join("dest");
    server.clear_requests();
    let s = env.restore_ok(TARGET, &dest, &["docs/report.pdf", "photos/"]);
    assert_eq!((s.files, s.downloaded, s.failed), (3, 3, 0), "{s:?}");
    let files: Vec<String> = files_of(&dest).into_iter().map(|(p, _)| p).collect();
    assert_eq!(files, ["docs/report.pdf", "photos/a.jpg", "photos/sub/b.jpg"]);
    assert_eq!(std::fs::read(dest.join("photos/sub/b.jpg")).unwrap(), b"jpg b");
    let mut gets = file_gets(&server);
    gets.sort();
    assert_eq!(
        gets,
        ["pre/docs/report.pdf", "pre/photos/a.jpg", "pre/photos/sub/b.jpg"],
        "only the requested files are fetched"
    );

    // A directory named without the slash; a name that is only a string prefix matches nothing.
    let dest2 = env.root().join("dest2");
    let s = env.restore_ok(TARGET, &dest2, &["music"]);
    assert_eq!(s.files, 1);
    assert_eq!(paths_under(&dest2), ["music", "music/x.mp3"]);

    // Nothing matches: an error, and DEST is not created.
    let dest3 = env.root().join("dest3");
    let r = env.restore(TARGET, &dest3, &["nope.txt", "doc"]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(e.contains("none of the requested paths"), "{}", r.show());
    assert!(e.contains("nope.txt"), "{}", r.show());
    assert!(!dest3.exists(), "DEST created for a restore of nothing");

    // Some match: those are restored, the others reported, exit 3.
    let dest4 = env.root().join("dest4");
    let r = env.restore(TARGET, &dest4, &["--json", "docs/report.pdf", "nope.txt"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!((s.downloaded, s.failed, s.paths_not_found), (1, 0, 1), "{s:?}");
    assert_eq!(s.failed_paths(), ["nope.txt"]);
    assert!(r.stderr.contains("nope.txt"), "{}", r.show());
    assert_eq!(
        std::fs::read(dest4.join("docs/report.pdf")).unwrap(),
        b"pdf bytes"
    );
    assert_eq!(paths_under(&dest4), ["docs", "docs/report.pdf"]);
}

#[test]
fn mtimes_before_1970_round_trip_from_manifest_and_listing() {
    let (_server, env) = setup();
    env.write_at("old.txt", "punch card", (-31_536_000, 123_456_789));
    env.write_at("epoch.txt", "zero", (0, 0));
    env.backup_ok(TARGET, &[]);
    for (dir, extra) in [("m", &[][..]), ("l", &["--from-listing"][..])] {
        let dest = env.root().join(dir);
        env.restore_ok(TARGET, &dest, extra);
        assert_eq!(
            mtime_of(&dest.join("old.txt")),
            (-31_536_000, 123_456_789),
            "{extra:?}"
        );
        assert_eq!(mtime_of(&dest.join("epoch.txt")), (0, 0), "{extra:?}");
    }
}

#[test]
fn overlapping_or_repeated_paths_are_all_found() {
    let (_server, env) = setup();
    env.write("photos/a.jpg", "a");
    env.write("photos/sub/b.jpg", "b");
    env.write("docs/report.pdf", "pdf");
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");
    let r = env.restore(
        TARGET,
        &dest,
        &[
            "--json",
            "photos",
            "photos/sub/b.jpg",
            "docs/report.pdf",
            "docs/report.pdf",
        ],
    );
    r.expect_code(0);
    let s = r.restore_summary();
    assert_eq!((s.files, s.downloaded, s.failed), (3, 3, 0), "{s:?}");
    assert_eq!(
        paths_under(&dest),
        [
            "docs",
            "docs/report.pdf",
            "photos",
            "photos/a.jpg",
            "photos/sub",
            "photos/sub/b.jpg"
        ]
    );
}

#[test]
fn a_second_restore_downloads_nothing() {
    let (server, env) = setup();
    let n = rich_tree(&env) as u64;
    let expected = tree(&env.src);
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");
    env.restore_ok(TARGET, &dest, &[]);
    let inodes: Vec<u64> = files_of(&dest)
        .iter()
        .map(|(p, _)| std::fs::metadata(dest.join(p)).unwrap().ino())
        .collect();

    // Touch and chmod files locally: same content, so only mtime and mode are put back.
    filetime::set_file_mtime(dest.join("dir/b.txt"), FileTime::from_unix_time(1_234, 5)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest.join("a.txt"), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    server.clear_requests();
    let s = env.restore_ok(TARGET, &dest, &["--jobs", "1"]);
    assert_eq!(s.unchanged, n, "{s:?}");
    assert_eq!(s.files, n);
    assert_eq!((s.downloaded, s.bytes_received, s.failed), (0, 0, 0), "{s:?}");
    assert_eq!(file_gets(&server), Vec::<String>::new(), "{:?}", server.ops());
    assert_eq!(server.count("HeadObject"), 0, "{:?}", server.ops());
    assert_eq!(tree(&dest), expected);
    let after: Vec<u64> = files_of(&dest)
        .iter()
        .map(|(p, _)| std::fs::metadata(dest.join(p)).unwrap().ino())
        .collect();
    assert_eq!(inodes, after, "files were rewritten");
}

#[test]
fn differing_local_files_are_replaced_or_with_no_clobber_kept_and_reported() {
    let (_server, env) = setup();
    rich_tree(&env);
    let expected = tree(&env.src);
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");
    env.restore_ok(TARGET, &dest, &[]);

    // Same size and mtime but other bytes; another size; a missing file.
    let a_mtime = mtime_of(&dest.join("a.txt"));
    std::fs::write(dest.join("a.txt"), "HELLO\n").unwrap();
    filetime::set_file_mtime(dest.join("a.txt"), FileTime::from_unix_time(a_mtime.0, a_mtime.1)).unwrap();
    std::fs::write(dest.join("dir/b.txt"), "locally edited").unwrap();
    std::fs::remove_file(dest.join("empty.txt")).unwrap();

    let r = env.restore(TARGET, &dest, &["--json", "--no-clobber"]);
    r.expect_code(0);
    let s = r.restore_summary();
    let mut kept = s.kept_paths.clone();
    kept.sort();
    assert_eq!(kept, ["a.txt", "dir/b.txt"]);
    assert_eq!((s.kept, s.downloaded, s.failed), (2, 1, 0), "{s:?}");
    for p in ["a.txt", "dir/b.txt"] {
        assert!(
            r.stderr.lines().any(|l| l.contains("kept") && l.contains(p)),
            "stderr reports {p} as kept\n{}",
            r.show()
        );
    }
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"HELLO\n");
    assert_eq!(std::fs::read(dest.join("dir/b.txt")).unwrap(), b"locally edited");
    assert!(dest.join("empty.txt").is_file());

    let s = env.restore_ok(TARGET, &dest, &[]);
    assert_eq!((s.downloaded, s.kept), (2, 0), "{s:?}");
    assert_eq!(
        tree(&dest),
        expected,
        "replaced files have the backup's bytes, mtime, mode"
    );
}

#[test]
fn corrupted_object_fails_its_blake3_check_and_leaves_dest_alone() {
    let (server, env) = setup();
    env.write("a.txt", "fine");
    env.write_at("dir/b.txt", "bee\n", (1_600_000_000, 5));
    env.backup_ok(TARGET, &[]);
    // Same size, other bytes, behind the server's back.
    std::fs::write(server.object_path(BUCKET, "pre/dir/b.txt"), "BEE\n").unwrap();

    let dest = env.root().join("dest");
    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!((s.downloaded, s.failed), (1, 1), "{s:?}");
    assert_eq!(s.failed_paths(), ["dir/b.txt"]);
    assert!(s.failures[0].error.contains("blake3"), "{:?}", s.failures[0]);
    assert!(!dest.join("dir/b.txt").exists(), "corrupt bytes written");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"fine");
    assert_eq!(temp_files(&dest), Vec::<String>::new());

    // An existing local file is left as it was.
    std::fs::write(dest.join("dir/b.txt"), "local version").unwrap();
    filetime::set_file_mtime(dest.join("dir/b.txt"), FileTime::from_unix_time(1_111, 1)).unwrap();
    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(3);
    assert_eq!(r.restore_summary().failed_paths(), ["dir/b.txt"]);
    assert_eq!(std::fs::read(dest.join("dir/b.txt")).unwrap(), b"local version");
    assert_eq!(mtime_of(&dest.join("dir/b.txt")), (1_111, 1));
    assert_eq!(temp_files(&dest), Vec::<String>::new());

    // From a listing, the object's blake3 metadata catches it too.
    let dest2 = env.root().join("dest2");
    let r = env.restore(TARGET, &dest2, &["--json", "--from-listing"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.failed_paths(), ["dir/b.txt"]);
    assert!(s.failures[0].error.contains("blake3"), "{:?}", s.failures);
    assert!(!dest2.join("dir/b.txt").exists());
    assert_eq!(temp_files(&dest2), Vec::<String>::new());
}

#[test]
fn hostile_keys_in_a_listing_write_nothing_outside_dest() {
    let (server, env) = setup();
    let (sandbox, dest, outside) = sandbox(&env);
    let c = sdk_client(&server.endpoint());
    sdk_put(&c, BUCKET, "hostile/ok.txt", b"fine");
    // A backslash is a plain name byte on Unix: one file inside DEST.
    sdk_put(&c, BUCKET, "hostile/back\\..\\..\\slash", b"backslash");
    let abs = format!("{}/abs.txt", outside.display());
    let listed = [
        "hostile/../escape.txt".to_owned(),
        "hostile/a/../../x".to_owned(),
        format!("hostile/{abs}"),
        "hostile/a//b".to_owned(),
        "hostile/./dot".to_owned(),
        "hostile/../../../../../../../../tmp/s3backup-escape".to_owned(),
    ];
    for k in &listed {
        server.add_listed_key(BUCKET, k, 4);
    }

    let r = env.restore("bkt::hostile", &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    let mut want: Vec<String> = listed
        .iter()
        .map(|k| k.strip_prefix("hostile/").unwrap().to_owned())
        .collect();
    want.sort();
    assert_eq!(
        s.failed_paths(),
        want,
        "every unsafe name is reported\n{}",
        r.show()
    );
    for f in &s.failures {
        assert!(f.error.contains("unsafe"), "{f:?}");
    }
    assert_eq!(s.downloaded, 2);
    assert_eq!(
        paths_under(&sandbox),
        [
            "a",
            "a/b",
            "a/b/dest",
            "a/b/dest/back\\..\\..\\slash",
            "a/b/dest/ok.txt"
        ]
    );
    assert_eq!(paths_under(&outside), Vec::<String>::new());
    assert!(!Path::new("/tmp/s3backup-escape").exists());
    let mut gets = file_gets(&server);
    gets.sort();
    assert_eq!(
        gets,
        ["hostile/back\\..\\..\\slash", "hostile/ok.txt"],
        "unsafe keys are not even fetched"
    );
}

#[test]
fn hostile_manifest_writes_nothing_outside_dest() {
    let (server, env) = setup();
    let (sandbox, dest, outside) = sandbox(&env);
    let c = sdk_client(&server.endpoint());
    let abs = format!("{}/abs.txt", outside.display());
    let good = b"good".to_vec();
    let evil = b"EVIL".to_vec();
    let file = |path: &str, content: &[u8]| {
        serde_json::json!({
            "path": path, "type": "file", "size": content.len(), "mtime_ns": 1_600_000_000_000_000_000i64,
            "mode": "644", "blake3": blake3_hex(content),
        })
    };
    let dir = |path: &str| {
        serde_json::json!({
            "path": path, "type": "dir", "size": 0, "mtime_ns": 1_600_000_000_000_000_000i64, "mode": "777",
        })
    };
    let hostile_files = [
        "../../evil".to_owned(),
        abs.clone(),
        "ok/../../y".to_owned(),
        "a//b".to_owned(),
        "./dot".to_owned(),
        "x/..".to_owned(),
        "nul\0byte".to_owned(),
        String::new(),
    ];
    let mut entries: Vec<serde_json::Value> = hostile_files.iter().map(|p| file(p, &evil)).collect();
    entries.push(dir("../evildir"));
    entries.push(dir("/tmp"));
    entries.push(file("good.txt", &good));
    // First, so the server's directory `evil` exists before a hostile key
    // such as `evil/x/..` could be stored as a file of that name.
    sdk_put(&c, BUCKET, "evil/good.txt", &good);
    // Objects behind the hostile keys, so a restore that followed them
    // would really have bytes to write.
    for p in ["../../evil", "ok/../../y", "x/.."] {
        let _ = block_on(
            c.put_object()
                .bucket(BUCKET)
                .key(format!("evil/{p}"))
                .body(evil.clone().into())
                .send(),
        );
    }
    let manifest = encode_manifest(&manifest_header(10, 40), &entries);
    sdk_put(
        &c,
        BUCKET,
        "evil/.s3backup/manifests/20200101T000000Z-0000000000000000000000000000beef.jsonl.zst",
        &manifest,
    );
    server.clear_requests();

    let r = env.restore("bkt::evil", &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert_eq!(s.source, "20200101T000000Z-0000000000000000000000000000beef");
    let mut want: Vec<String> = hostile_files
        .iter()
        .cloned()
        .chain(["../evildir".to_owned(), "/tmp".to_owned()])
        .collect();
    want.sort();
    assert_eq!(s.failed_paths(), want, "{}", r.show());
    assert_eq!(s.downloaded, 1);
    assert_eq!(
        paths_under(&sandbox),
        ["a", "a/b", "a/b/dest", "a/b/dest/good.txt"]
    );
    assert_eq!(paths_under(&outside), Vec::<String>::new());
    assert_eq!(file_gets(&server), ["evil/good.txt"]);
    // `/tmp` from the manifest was not chmod-ed to 777.
    let tmp_mode = std::fs::metadata("/tmp").unwrap().mode() & 0o7777;
    assert_eq!(tmp_mode & 0o1000, 0o1000, "/tmp lost its sticky bit");
}

#[test]
fn symlinks_inside_dest_are_not_followed() {
    let (server, env) = setup();
    let (_sandbox, dest, outside) = sandbox(&env);
    env.write("link/x", "through the link");
    env.write("a.txt", "replaces a symlink");
    env.write("ok.txt", "ok");
    env.backup_ok(TARGET, &[]);

    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();
    let victim = outside.join("victim.txt");
    std::fs::write(&victim, "do not touch").unwrap();
    std::os::unix::fs::symlink(&victim, dest.join("a.txt")).unwrap();
    server.clear_requests();

    let r = env.restore(TARGET, &dest, &["--json"]);
    r.expect_code(3);
    let s = r.restore_summary();
    assert!(
        s.failure("link/x").is_some(),
        "link/x is refused and reported\n{}",
        r.show()
    );
    assert_eq!(
        paths_under(&outside),
        ["victim.txt"],
        "nothing written through DEST/link"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
    // The symlink at a file's own name is replaced, not written through.
    let md = std::fs::symlink_metadata(dest.join("a.txt")).unwrap();
    assert!(md.is_file(), "DEST/a.txt is still a symlink");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"replaces a symlink");
    assert_eq!(std::fs::read(dest.join("ok.txt")).unwrap(), b"ok");
    assert!(
        std::fs::symlink_metadata(dest.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn unknown_bucket_is_an_error_and_creates_nothing() {
    let (server, env) = setup();
    let dest = env.root().join("dest");
    let r = env.restore("nosuchbucket::pre", &dest, &["--json"]);
    r.expect_code(1);
    assert!(r.error_line().contains("nosuchbucket"), "{}", r.show());
    assert!(r.stdout.trim().is_empty(), "{}", r.show());
    assert!(!dest.exists(), "DEST created");
    assert!(!server.bucket_exists("nosuchbucket"), "the bucket was created");

    let r = env.snapshots("s3://nosuchbucket/pre", &[]);
    r.expect_code(1);
    assert!(r.error_line().contains("nosuchbucket"), "{}", r.show());

    // A bucket these credentials may not read: exit 1, named, nothing written.
    server.create_bucket("closed");
    server.deny_bucket("closed");
    let r = env.restore("closed::pre", &dest, &[]);
    r.expect_code(1);
    assert!(r.error_line().contains("closed"), "{}", r.show());
    assert!(!dest.exists(), "DEST created");

    // DEST is a file: exit 1, the file is left alone.
    server.allow_bucket("closed");
    env.write("a.txt", "a");
    env.backup_ok("closed::pre", &[]);
    std::fs::write(&dest, "a file").unwrap();
    let r = env.restore("closed::pre", &dest, &[]);
    r.expect_code(1);
    assert!(r.error_line().contains(dest.to_str().unwrap()), "{}", r.show());
    assert_eq!(std::fs::read(&dest).unwrap(), b"a file");
}

#[test]
fn empty_prefix_is_nothing_to_restore() {
    let (_server, env) = setup();
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");
    let r = env.restore("s3://bkt/other/prefix", &dest, &[]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(e.contains("nothing to restore"), "{}", r.show());
    assert!(e.contains("bkt") && e.contains("other/prefix"), "{}", r.show());
    assert!(!dest.exists(), "DEST created");

    // An existing DEST is left as it was.
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("mine"), "mine").unwrap();
    env.restore("s3://bkt/other/prefix", &dest, &[]).expect_code(1);
    assert_eq!(paths_under(&dest), ["mine"]);
}

#[test]
fn unknown_snapshot_points_to_the_snapshots_command() {
    let (_server, env) = setup();
    env.write("a.txt", "a");
    env.backup_ok(TARGET, &[]);
    let dest = env.root().join("dest");
    let r = env.restore(TARGET, &dest, &["--snapshot", "20990101T000000Z-nope"]);
    r.expect_code(1);
    let e = r.error_line();
    assert!(e.contains("20990101T000000Z-nope"), "{}", r.show());
    assert!(e.contains("s3backup snapshots"), "{}", r.show());
    assert!(!dest.exists(), "DEST created");

    // --snapshot and --from-listing contradict each other: a usage error.
    env.restore(TARGET, &dest, &["--snapshot", "latest", "--from-listing"])
        .expect_code(2);
}

#[test]
fn snapshots_lists_time_file_count_and_size() {
    let (server, env) = setup();
    env.write("a.txt", "12345");
    env.write("dir/b.txt", noise(3000, 2));
    let first = env.backup_ok(TARGET, &[]);
    env.write("c.txt", "more");
    let second = env.backup_ok(TARGET, &[]);
    let ids = [
        snapshot_id(first.snapshot.as_deref().unwrap()),
        snapshot_id(second.snapshot.as_deref().unwrap()),
    ];
    server.clear_requests();

    let rows = env.snapshot_list(TARGET);
    assert_eq!(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!((rows[0].files, rows[0].bytes), (2, 3005));
    assert_eq!((rows[1].files, rows[1].bytes), (3, 3009));
    let src = env.src.canonicalize().unwrap();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    for r in &rows {
        assert_eq!(r.source, src.to_str().unwrap());
        assert_eq!(r.host, host);
        let t = chrono::DateTime::parse_from_rfc3339(&r.created)
            .unwrap_or_else(|e| panic!("created {:?}: {e}", r.created));
        let age = chrono::Utc::now().signed_duration_since(t);
        assert!(age.num_seconds() >= 0 && age.num_seconds() < 600, "{}", r.created);
    }
    assert!(rows[0].created <= rows[1].created);

    let r = env.snapshots(TARGET, &[]);
    r.expect_code(0);
    for row in &rows {
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(&row.id))
            .unwrap_or_else(|| panic!("{} not listed\n{}", row.id, r.show()));
        let size = indicatif::HumanBytes(row.bytes).to_string();
        assert!(line.contains(&row.created), "time in {line:?}");
        assert!(
            line.split_whitespace().any(|w| w == row.files.to_string()),
            "file count in {line:?}"
        );
        assert!(line.contains(&size), "size {size} in {line:?}");
    }

    // A prefix without backups: no snapshots, not an error.
    let r = env.snapshots("bkt::elsewhere", &["--json"]);
    r.expect_code(0);
    assert_eq!(r.stdout.trim(), "[]");
    let r = env.snapshots("bkt::elsewhere", &[]);
    r.expect_code(0);
    assert!(r.stdout.contains("no snapshots"), "{}", r.show());
    assert!(
        server
            .requests()
            .iter()
            .all(|r| ["GET", "HEAD"].contains(&r.method.as_str())),
        "snapshots only reads: {:?}",
        server.ops()
    );
}
