//! Fuzzes the manifest reader with bytes from a bucket anyone may write to.
//!
//! Restores, `verify` and `state rebuild` stream manifests fetched from the
//! store, so the reader must never panic, never hang and never let the input
//! decide how much memory one step takes. The first input byte picks how
//! the rest is fed, so the fuzzer reaches past the zstd layer:
//! 0. the raw bytes, as a corrupt or foreign object;
//! 1. the bytes as the JSON lines of a valid zstd frame (hostile JSON);
//! 2. a valid header line, then the bytes as entry lines, compressed;
//! 3. a zstd frame of raw and RLE blocks whose one line decompresses to up
//!    to 512 MiB from a few kilobytes (a decompression bomb).
//!
//! A counting allocator measures the most memory live at once while one
//! manifest is read; it must stay under [`PEAK_LIMIT`] whatever the input
//! (libFuzzer's own `-malloc_limit_mb` needs a sanitizer's malloc hooks, so
//! it does nothing in the stable `--sanitizer none` mode).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use s3backup::manifest::Reader;

/// A header line as this build writes it.
const HEADER: &[u8] = br#"{"format":1,"tool":"s3backup fuzz","source":"/src","target":"s3://bucket/p","host":"h","created":"2026-01-01T00:00:00Z","run_id":"r","files":1,"dirs":0,"bytes":3}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => read_all(rest),
        1 => read_all(&compress(rest)),
        2 => read_all(&compress(&[HEADER, b"\n", rest].concat())),
        _ => {
            let [byte, hi, lo, head @ ..] = rest else {
                return;
            };
            // A run of newlines is millions of blank lines: bounded work per
            // decompressed byte, like any large manifest, so not explored here.
            let byte = if *byte == b'\n' { b'x' } else { *byte };
            let blocks = u16::from_be_bytes([*hi, *lo]) % 4096 + 1;
            read_all(&rle_bomb(head, byte, blocks));
        }
    }
});

/// Memory one manifest read may hold at once: zstd's largest window
/// (128 MiB, its default limit for a frame's declared window) plus slack
/// for a line and the decoder's buffers.
const PEAK_LIMIT: usize = 160 << 20;

/// The system allocator, counting live bytes and their high-water mark.
struct Counting;

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been since [`read_all`] reset it.
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed straight to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Old and new blocks can both be live while the data is copied.
        let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        new
    }
}

/// Every allocation of the fuzz binary goes through the counter.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Reads a manifest to its end; any error is fine, a panic, a hang or an
/// input-sized allocation is not.
fn read_all(bytes: &[u8]) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    read_entries(bytes);
    let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(used <= PEAK_LIMIT, "reading took {} MiB at once", used >> 20);
}

/// Opens and iterates the manifest as restore does with each entry.
fn read_entries(bytes: &[u8]) {
    let Ok(reader) = Reader::new(bytes) else {
        return;
    };
    let mut items = 0u64;
    for entry in reader {
        items += 1;
        if let Ok(e) = entry {
            // What restore does with an entry next.
            let _ = u32::from_str_radix(&e.mode, 8);
            let _ = s3backup::safe_path::validate(&e.path);
        }
        assert!(items < 1 << 24, "the reader does not end");
    }
}

/// One valid zstd frame of `bytes`, as the writer makes them.
fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut enc = zstd::Encoder::new(Vec::new(), 1).expect("encoder");
    enc.write_all(bytes).expect("compress");
    enc.finish().expect("finish")
}

/// A zstd frame: `head` in a raw block, then `blocks` RLE blocks of 128 KiB
/// of `byte` each (4 bytes apiece), the last one marked last.
fn rle_bomb(head: &[u8], byte: u8, blocks: u16) -> Vec<u8> {
    const BLOCK: u32 = 128 * 1024;
    let head = &head[..head.len().min(BLOCK as usize)];
    // Magic, then a frame header: no checksum, no content size, 128 KiB window.
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 7 << 3];
    let block_header = |last: bool, kind: u32, size: u32| {
        let h = u32::from(last) | (kind << 1) | (size << 3);
        [h as u8, (h >> 8) as u8, (h >> 16) as u8]
    };
    out.extend(block_header(false, 0, head.len() as u32));
    out.extend_from_slice(head);
    for i in 0..blocks {
        out.extend(block_header(i + 1 == blocks, 1, BLOCK));
        out.push(byte);
    }
    out
}
