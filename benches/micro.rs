//! Micro-benchmarks of the parts a backup spends its time in.
//!
//! Run: `cargo bench --bench micro` (divan; add a filter such as `plan` to run some).

use std::collections::HashMap;
use std::sync::LazyLock;

use divan::counter::{BytesCount, ItemsCount};
use s3backup::fs::scan::{self, EntryKind, ScanEntry};
use s3backup::manifest;
use s3backup::plan;
use s3backup::state::{FileChange, FileRow, StateDb};

fn main() {
    divan::main();
}

fn entry(i: usize) -> ScanEntry {
    ScanEntry {
        path: format!("d{:04}/f{i:07}.txt", i / 100),
        kind: EntryKind::File,
        size: (i % 16_384) as u64,
        mtime_ns: 1_700_000_000_000_000_000 + i as i64,
        mode: 0o644,
        seen_ns: 1_800_000_000_000_000_000,
        stamp: scan::Stamp {
            ctime_ns: 1_700_000_000_000_000_000 + i as i64,
            inode: i as u64,
            device: 1,
        },
    }
}

fn row(i: usize) -> FileRow {
    let e = entry(i);
    FileRow {
        path: e.path,
        kind: EntryKind::File,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode,
        blake3: blake3::hash(&i.to_le_bytes()).to_hex().to_string(),
        etag: format!("{i:032x}"),
        version_id: None,
        uploaded_at: 1_800_000_000,
        checked_ns: 1_800_000_000_000_000_000,
        stamp: Some(e.stamp),
        checksum: None,
    }
}

const ROWS: usize = 100_000;

/// The set's rows in path order, as the state database streams them.
static STATE: LazyLock<Vec<FileRow>> = LazyLock::new(|| (0..ROWS).map(row).collect());

/// blake3 of a file (streamed from disk, page cache warm) by size.
#[divan::bench(args = [4 * 1024, 256 * 1024, 16 * 1024 * 1024])]
fn hash_file(bencher: divan::Bencher, size: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; size]).expect("write");
    let md = std::fs::metadata(&path).expect("stat");
    let seen = ScanEntry {
        path: "f".into(),
        kind: EntryKind::File,
        size: size as u64,
        mtime_ns: scan::mtime_ns(&md),
        mode: 0o644,
        seen_ns: scan::now_ns(),
        stamp: scan::Stamp::of(&md),
    };
    // As a backup reads files it sends in one request: blake3 and MD5.
    bencher
        .counter(BytesCount::new(size))
        .bench(|| s3backup::fs::hash::hash_file(&path, &seen, None, None).expect("hash"));
}

/// Walking and stat-ing a tree of 10,000 files in 100 directories.
#[divan::bench(sample_count = 20)]
fn scan_10k(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..10_000 {
        let d = dir.path().join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&d).expect("mkdir");
        }
        std::fs::write(d.join(format!("f{i}")), b"x").expect("write");
    }
    bencher
        .counter(ItemsCount::new(10_100usize))
        .bench(|| scan::scan(dir.path(), |_| {}).expect("scan"));
}

/// Merging 100,000 scanned files with 100,000 state rows and planning: all unchanged, then 1 % modified.
#[divan::bench(args = [0, 1000], sample_count = 20)]
fn plan_100k(bencher: divan::Bencher, modified: usize) {
    let state = &*STATE;
    bencher
        .counter(ItemsCount::new(ROWS))
        .with_inputs(|| {
            let entries: Vec<ScanEntry> = (0..ROWS)
                .map(|i| {
                    let mut e = entry(i);
                    if i < modified {
                        e.mtime_ns += 1;
                    }
                    e
                })
                .collect();
            (entries, state.clone())
        })
        .bench_values(|(entries, rows)| {
            // As a backup runs it: the merge hands on files to hash, each
            // is decided once hashed (here all new bytes, no copy source),
            // and the rest is planned once the walk is over.
            let mut to_hash = Vec::new();
            let triage = plan::triage(entries, rows, HashMap::new(), false, |found| {
                if let plan::Found::Changed(entry, old) = found {
                    to_hash.push((entry, old));
                }
            });
            let hashed = to_hash.into_iter().map(|(entry, old)| {
                let hashed = s3backup::fs::hash::Hashed {
                    blake3: "new".to_string(),
                    bodies: Default::default(),
                };
                (entry, old, hashed)
            });
            let decided = plan::decide(hashed, &mut plan::Confirmed::default(), |_, _| None);
            (decided, triage.into_rest(false))
        });
}

/// Writing 100,000 rows in batches of 512 (as a backup commits them); streaming them back in path order.
#[divan::bench(sample_count = 5)]
fn state_write_100k(bencher: divan::Bencher) {
    let rows: Vec<FileChange> = (0..ROWS).map(|i| FileChange::Upsert(row(i))).collect();
    bencher.counter(ItemsCount::new(ROWS)).bench(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = StateDb::open(&dir.path().join("state.db")).expect("open");
        let set = db.ensure_set("/src", "s3://b").expect("set");
        for chunk in rows.chunks(512) {
            db.apply(set, chunk).expect("apply");
        }
    });
}

#[divan::bench(sample_count = 10)]
fn state_load_100k(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let set = {
        let mut db = StateDb::open(&path).expect("open");
        let set = db.ensure_set("/src", "s3://b").expect("set");
        let rows: Vec<FileChange> = (0..ROWS).map(|i| FileChange::Upsert(row(i))).collect();
        db.apply(set, &rows).expect("apply");
        set
    };
    bencher
        .counter(ItemsCount::new(ROWS))
        .with_inputs(|| StateDb::open(&path).expect("open"))
        .bench_local_values(|db| db.with_file_rows(set, |rows| rows.count()).expect("stream"));
}

fn header() -> manifest::Header {
    manifest::Header {
        format: manifest::FORMAT,
        tool: "bench".into(),
        source: "/src".into(),
        target: "s3://b".into(),
        host: "h".into(),
        created: "2026-01-01T00:00:00Z".into(),
        run_id: "r".into(),
        files: ROWS as u64,
        dirs: 0,
        bytes: 0,
        history: None,
        tags: Vec::new(),
        lock: None,
    }
}

/// Writing and reading a 100,000-entry manifest (zstd, JSON lines).
#[divan::bench(sample_count = 10)]
fn manifest_write_100k(bencher: divan::Bencher) {
    let entries: Vec<manifest::Entry> = (0..ROWS).map(|i| manifest::Entry::from(&row(i))).collect();
    bencher.counter(ItemsCount::new(ROWS)).bench(|| {
        let mut w = manifest::Writer::new(Vec::new(), &header()).expect("writer");
        for e in &entries {
            w.push(e).expect("push");
        }
        w.finish().expect("finish")
    });
}

#[divan::bench(sample_count = 10)]
fn manifest_read_100k(bencher: divan::Bencher) {
    let mut w = manifest::Writer::new(Vec::new(), &header()).expect("writer");
    for i in 0..ROWS {
        w.push(&manifest::Entry::from(&row(i))).expect("push");
    }
    let bytes = w.finish().expect("finish");
    bencher.counter(ItemsCount::new(ROWS)).bench(|| {
        manifest::Reader::new(&bytes[..])
            .expect("reader")
            .map(|e| e.expect("entry").size)
            .sum::<u64>()
    });
}
