//! Stage 3, hashing a chunk: each file the walk handed on is read once,
//! on blocking threads (one per core, each taking the chunk's files in
//! turn), for its blake3 and the MD5 of each request body the transfer
//! will send it in, so no second hashing read is needed. Reading failures come back per file, for the apply stage to report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::BackupOptions;
use super::multipart::part_size_for;
use crate::fs::checksum::Algorithm;
use crate::fs::hash;
use crate::fs::names;
use crate::fs::scan::ScanEntry;
use crate::progress::Progress;
use crate::state::FileRow;

/// A file of a chunk with its row and what reading it gave.
pub(super) type HashedFile = (ScanEntry, Option<FileRow>, std::io::Result<hash::Hashed>);

/// The part size a file of `size` bytes is sent in (`None`: one request),
/// as the transfer engine cuts it.
pub(super) fn part_size(opts: &BackupOptions, size: u64) -> Option<u64> {
    (size > opts.multipart_threshold).then(|| part_size_for(size, opts.part_size))
}

/// Hashes a chunk of files on blocking threads, one per core, with the
/// MD5 of each request body they will be sent in (`cut` gives a file's
/// part size from its size, see [`part_size`]) and `algorithm`'s checksum of
/// each (`--checksum-algorithm`), in the chunk's order; then
/// tells `progress` how many files and bytes were hashed.
///
/// Each blocking thread takes the chunk's next file until none is left
/// (one task a thread, not one a file: waking a blocking thread for each
/// small file cost more CPU than hashing it). Dropping the returned future
/// (an interrupted run) stops the threads at their next file.
pub(super) async fn hash_chunk(
    source: &Path,
    chunk: Vec<(ScanEntry, Option<FileRow>)>,
    cut: impl Fn(u64) -> Option<u64>,
    algorithm: Option<Algorithm>,
    progress: &dyn Progress,
) -> Vec<HashedFile> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (files, bytes) = (chunk.len() as u64, chunk.iter().map(|(e, _)| e.size).sum());
    let work: Arc<Vec<Work>> = Arc::new(
        chunk
            .iter()
            .map(|(entry, _)| (names::local(source, &entry.path), entry.clone(), cut(entry.size)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let tasks: Vec<_> = (0..threads.min(work.len()))
        .map(|_| {
            let (work, next, stop) = (work.clone(), next.clone(), stop.0.clone());
            tokio::task::spawn_blocking(move || hash_some(&work, &next, &stop, algorithm))
        })
        .collect();
    let mut results: Vec<Option<std::io::Result<hash::Hashed>>> = (0..chunk.len()).map(|_| None).collect();
    for task in tasks {
        // A task that died leaves its files without a result: they fail below.
        for (i, result) in task.await.unwrap_or_default() {
            results[i] = Some(result);
        }
    }
    progress.hashed(files, bytes);
    chunk
        .into_iter()
        .zip(results)
        .map(|((entry, old), result)| {
            let result = result.unwrap_or_else(|| Err(std::io::Error::other("hashing task failed")));
            (entry, old, result)
        })
        .collect()
}

/// A file to hash: where it is, what the walk saw, its part size.
type Work = (PathBuf, ScanEntry, Option<u64>);

/// Sets its flag when dropped: the blocking threads of an abandoned chunk stop.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One blocking thread's share of [`hash_chunk`]: files taken in turn
/// from `next` until the chunk is done or `stop` is set, each with its index.
fn hash_some(
    work: &[Work],
    next: &AtomicUsize,
    stop: &AtomicBool,
    algorithm: Option<Algorithm>,
) -> Vec<(usize, std::io::Result<hash::Hashed>)> {
    let mut done = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((path, seen, part_size)) = work.get(i) else {
            break;
        };
        done.push((i, hash::hash_file(path, seen, *part_size, algorithm)));
    }
    done
}
