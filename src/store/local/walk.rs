//! Listing the local store: a depth-first walk over directory handles, in
//! key order, that never descends through a symbolic link.
//!
//! Each directory is opened from its parent's handle with no-follow
//! semantics ([`cap_fs_ext::DirExt::open_dir_nofollow`]), so a link
//! anywhere in the store (a stored symlink object, or one planted there)
//! is listed as the object it is and never walked into, even if it is
//! swapped in while the walk runs. Siblings are sorted as their keys sort
//! (a directory as `name/`), so the walk yields keys in byte order, as S3
//! lists them; only one directory's names are held at a time per level.
//! The temporary area, the name-encoding marker and names that are not
//! UTF-8 (which no key can name) are passed over. Under the stand-ins
//! ([`Names::Windows`]) each name is read back as the key component it
//! stands for, and siblings sort by those.

use std::io;
use std::path::Path;

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;

use super::names::{MARKER, Names};
use super::scratch::TMP;
use super::{Stat, confine_error};
use crate::fs::confine::{ConfineError, Create, Root};
use crate::store::{ObjectInfo, StoreError, StoreResult};

/// One directory being walked: its handle, its key with a trailing `/`
/// ("" at the root), and its remaining entries in key order.
struct Level {
    dir: Dir,
    key: String,
    entries: std::vec::IntoIter<Entry>,
}

/// A directory entry: its name on disk, the key component it stands for,
/// and whether it is a directory.
struct Entry {
    disk: String,
    name: String,
    is_dir: bool,
}

/// Walks the objects whose keys start with `prefix`, handing each to
/// `emit` in key order; stops early when `emit` returns false.
pub(super) fn walk(
    root: &Root,
    prefix: &str,
    names: Names,
    mut emit: impl FnMut(StoreResult<ObjectInfo>) -> bool,
) {
    let base_key = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let base_disk = names.disk_of(base_key.trim_end_matches('/'));
    let base = match root.open_dir(Path::new(&*base_disk), Create::No) {
        Ok((dir, _)) => dir,
        // Nothing under a missing directory, a file, or a link (not followed).
        Err(ConfineError::Symlink { at, .. }) => {
            tracing::debug!("not listing through the symbolic link '{}'", at.display());
            return;
        }
        Err(ConfineError::NotDir { .. }) => return,
        Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            emit(Err(confine_error(e, "listing")));
            return;
        }
    };
    let mut stack = Vec::new();
    match level(base, base_key.to_string(), names) {
        Ok(l) => stack.push(l),
        Err(e) => {
            emit(Err(e));
            return;
        }
    }
    while let Some(top) = stack.last_mut() {
        let Some(Entry { disk, name, is_dir }) = top.entries.next() else {
            stack.pop();
            continue;
        };
        let key = format!("{}{name}", top.key);
        if is_dir {
            let dir_key = format!("{key}/");
            let wanted = prefix.starts_with(&dir_key) || dir_key.starts_with(prefix);
            if !wanted || key == TMP {
                continue;
            }
            let next = match top.dir.open_dir_nofollow(&disk) {
                Ok(dir) => level(dir, dir_key, names),
                // Gone, or replaced by a link or a file since it was listed.
                Err(_) if !is_dir_now(&top.dir, &disk) => continue,
                Err(e) => Err(StoreError::Fatal(format!("listing '{key}': {e}"))),
            };
            match next {
                Ok(l) => stack.push(l),
                Err(e) => {
                    if !emit(Err(e)) {
                        return;
                    }
                }
            }
            continue;
        }
        if !key.starts_with(prefix) || key == MARKER {
            continue;
        }
        let item = match top.dir.symlink_metadata(&disk) {
            Ok(md) if md.is_file() || md.is_symlink() => {
                let stat = Stat::of(&md);
                Ok(ObjectInfo {
                    etag: stat.etag(),
                    size: stat.len,
                    last_modified_ns: Some(Stat::stored_ns(&md)),
                    key,
                    storage_class: None,
                })
            }
            // Gone since it was listed, or not an object (a FIFO, a socket).
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => Err(StoreError::Fatal(format!("listing '{key}': {e}"))),
        };
        if !emit(item) {
            return;
        }
    }
}

/// Reads one directory's entries (name, is a directory) in key order:
/// types as the directory records them, links never followed.
fn level(dir: Dir, key: String, names: Names) -> StoreResult<Level> {
    let fail = |e: io::Error| StoreError::Fatal(format!("listing '{key}': {e}"));
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::debug!("passing over a name that is not UTF-8 in '{key}'");
            continue;
        };
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail(e)),
        };
        let key_name = names.key_of(&name).into_owned();
        entries.push(Entry {
            disk: name,
            name: key_name,
            is_dir,
        });
    }
    entries.sort_by_key(sort_key);
    Ok(Level {
        dir,
        key,
        entries: entries.into_iter(),
    })
}

/// Siblings sort as "name/" for directories, so the depth-first walk
/// yields keys in byte order.
fn sort_key(entry: &Entry) -> Vec<u8> {
    let mut key = entry.name.as_bytes().to_vec();
    if entry.is_dir {
        key.push(b'/');
    }
    key
}

fn is_dir_now(dir: &Dir, name: &str) -> bool {
    dir.symlink_metadata(name).is_ok_and(|md| md.is_dir())
}
