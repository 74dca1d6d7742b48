//! Stage 3, hashing a chunk: each file the walk handed on is read once,
//! on blocking threads (one per core), for its blake3 and the MD5 of each
//! request body the transfer will send it in, so a send costs no second
//! read. Reading failures come back per file, for the apply stage to report.

use std::path::Path;

use futures::StreamExt;

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
pub(super) async fn hash_chunk(
    source: &Path,
    chunk: Vec<(ScanEntry, Option<FileRow>)>,
    cut: impl Fn(u64) -> Option<u64>,
    algorithm: Option<Algorithm>,
    progress: &dyn Progress,
) -> Vec<HashedFile> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (files, bytes) = (chunk.len() as u64, chunk.iter().map(|(e, _)| e.size).sum());
    let hashed = futures::stream::iter(chunk)
        .map(|(entry, old)| {
            let path = names::local(source, &entry.path);
            let part_size = cut(entry.size);
            async move {
                let seen = entry.clone();
                let result =
                    tokio::task::spawn_blocking(move || hash::hash_file(&path, &seen, part_size, algorithm))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                (entry, old, result)
            }
        })
        .buffered(threads)
        .collect()
        .await;
    progress.hashed(files, bytes);
    hashed
}
