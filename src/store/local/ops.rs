//! The local store's operations on the file system, each run on a blocking
//! thread by the `ObjectStore` methods in the parent module, which hold
//! the async shims; see its module doc for the rules they keep (every path
//! reached beneath the root's handle, never through a link).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, SystemTimeSpec};
use cap_std::fs::{Dir, Metadata, OpenOptions};

use super::fold::Deleting;
use super::scratch::{Scratch, TMP};
use super::{
    DIR_MODE, LocalStore, Stat, apply_meta, check_key_text, confine_error, io_error, remote_of, upload_name,
};
use crate::fs::confine::{ConfineError, Create, Parent, Root};
use crate::store::{ObjectMeta, PutOutcome, RemoteObject, StoreError, StoreResult};

impl LocalStore {
    /// Writes `fill`'s output to a temporary file, applies `meta`, and
    /// renames it to `key` (see the module doc for what is replaced).
    pub(super) fn write_atomically(
        &self,
        key: &str,
        meta: &ObjectMeta,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> StoreResult<PutOutcome> {
        check_key_text(key)?;
        let what = |e: io::Error| io_error(e, &format!("writing '{}'", self.shown(key)));
        let root = self.open_root()?;
        let scratch = self.scratch(&root)?;
        let rel = self.write_path(&root, &scratch, key)?;
        let rel = Path::new(&rel);
        let (name, mut file) = scratch.create_file().map_err(what)?;
        let filled = fill(&mut file)
            .and_then(|()| file.sync_data())
            .and_then(|()| apply_meta(&file, meta))
            .and_then(|()| Metadata::from_file(&file));
        let placed = filled
            .map_err(what)
            .and_then(|md| self.place(&root, &scratch, &name, key, rel).map(|()| md));
        placed
            .map(|md| Stat::of(&md).put_outcome())
            .inspect_err(|_| scratch.discard(&name))
    }

    /// Renames the temporary entry `name` to `key`, beneath the root and
    /// without following a link on the way.
    fn place(&self, root: &Root, scratch: &Scratch, name: &str, key: &str, rel: &Path) -> StoreResult<()> {
        let what = |e: io::Error| io_error(e, &format!("writing '{}'", self.shown(key)));
        let parent = root
            .parent_replacing(rel, DIR_MODE)
            .map_err(|e| confine_error(e, "writing"))?;
        if parent
            .dir
            .symlink_metadata(&parent.name)
            .is_ok_and(|md| md.is_dir())
        {
            // A directory became a file: an empty directory goes; one that
            // still holds objects is not emptied behind the engine's back.
            match parent.dir.remove_dir(&parent.name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                    return Err(StoreError::Fatal(format!(
                        "'{}' is a directory holding other objects in the store; not replaced by a file",
                        self.shown(key)
                    )));
                }
                Err(e) => return Err(what(e)),
            }
        }
        crate::fs::winpath::clear_readonly(&parent.dir, Path::new(&parent.name)).map_err(what)?;
        scratch
            .dir()
            .rename(name, &parent.dir, &parent.name)
            .map_err(what)
    }

    /// Stores a symlink whose target is `target` under `key` (blocking).
    pub(super) fn write_symlink(&self, key: &str, target: &OsStr, mtime_ns: i64) -> StoreResult<PutOutcome> {
        check_key_text(key)?;
        let what = |e: io::Error| io_error(e, &format!("writing symlink '{}'", self.shown(key)));
        let root = self.open_root()?;
        let scratch = self.scratch(&root)?;
        let rel = self.write_path(&root, &scratch, key)?;
        let rel = Path::new(&rel);
        let name = scratch.fresh_name();
        make_symlink(scratch.dir(), target, &name).map_err(what)?;
        let time = || {
            Some(SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(
                system_time(mtime_ns),
            )))
        };
        let placed = scratch
            .dir()
            .set_symlink_times(&name, time(), time())
            .and_then(|()| scratch.dir().symlink_metadata(&name))
            .map_err(what)
            .and_then(|md| self.place(&root, &scratch, &name, key, rel).map(|()| md));
        placed
            .map(|md| Stat::of(&md).put_outcome())
            .inspect_err(|_| scratch.discard(&name))
    }

    /// The directory holding `key`'s final name, for a read: `NotFound`
    /// when a component is missing or not a directory, a refusal naming
    /// the link when one is a symbolic link.
    fn parent_of(&self, root: &Root, key: &str) -> StoreResult<Parent> {
        root.parent(Path::new(&self.read_path(root, key)?), Create::No)
            .map_err(|e| confine_error(e, &format!("reading '{key}'")))
    }

    /// The temporary area's handle, if it exists.
    pub(super) fn tmp_dir(&self, root: &Root, create: Create) -> StoreResult<Option<Dir>> {
        match root.open_dir(Path::new(TMP), create) {
            Ok((dir, _)) => Ok(Some(dir)),
            Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(confine_error(e, "opening the temporary area")),
        }
    }

    /// The open upload `upload_id`'s directory handle.
    pub(super) fn upload_dir(&self, root: &Root, upload_id: &str) -> StoreResult<Dir> {
        let name = upload_name(upload_id)?;
        let gone = || {
            StoreError::NotFound(format!(
                "upload '{upload_id}' is not open in {}",
                self.root.display()
            ))
        };
        let tmp = self.tmp_dir(root, Create::No)?.ok_or_else(gone)?;
        tmp.open_dir_nofollow(&name).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => gone(),
            _ => io_error(e, &format!("opening upload '{upload_id}'")),
        })
    }

    /// Copies `src_key` to `dst_key` (blocking); see [`ObjectStore::copy`].
    /// One refused for a name clash with its own source is noted, for a
    /// delete of the source to rename it (see [`super::fold`]).
    pub(super) fn copy_blocking(
        &self,
        src_key: &str,
        dst_key: &str,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        let copied = self.copy_unnoted(src_key, dst_key, meta, if_match);
        if let Err(StoreError::NameClash(_)) = &copied {
            let root = self.open_root()?;
            let (from, to) = (self.read_path(&root, src_key)?, self.read_path(&root, dst_key)?);
            self.case.refused_copy(&root, &from, &to)?;
        }
        copied
    }

    /// [`Self::copy_blocking`] without the note.
    fn copy_unnoted(
        &self,
        src_key: &str,
        dst_key: &str,
        meta: &ObjectMeta,
        if_match: Option<&str>,
    ) -> StoreResult<PutOutcome> {
        check_key_text(dst_key)?;
        let root = self.open_root()?;
        // A source beneath a link, or a file where a directory should be,
        // is no object of the store: reported missing, so the engine uploads instead.
        let parent = root
            .parent(Path::new(&self.read_path(&root, src_key)?), Create::No)
            .map_err(|e| match e {
                ConfineError::Symlink { .. } | ConfineError::NotDir { .. } => {
                    StoreError::NotFound(format!("copying '{src_key}': {e}"))
                }
                e => confine_error(e, &format!("copying '{src_key}'")),
            })?;
        let what = |e: io::Error| io_error(e, &format!("copying '{}'", self.shown(src_key)));
        let lmd = parent.dir.symlink_metadata(&parent.name).map_err(what)?;
        let changed = |stat: &Stat| match if_match.filter(|e| !e.is_empty()) {
            Some(expected) if !super::etag::agree(&stat.etag(), expected) => Err(StoreError::Changed(
                format!("'{src_key}' no longer holds the content recorded for it"),
            )),
            _ => Ok(()),
        };
        if lmd.is_symlink() {
            changed(&Stat::of(&lmd))?;
            if src_key == dst_key {
                let time = || {
                    Some(SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(
                        system_time(meta.mtime_ns),
                    )))
                };
                parent
                    .dir
                    .set_symlink_times(&parent.name, time(), time())
                    .and_then(|()| parent.dir.symlink_metadata(&parent.name))
                    .map(|md| Stat::of(&md).put_outcome())
                    .map_err(what)
            } else {
                let target = parent.dir.read_link_contents(&parent.name).map_err(what)?;
                self.write_symlink(dst_key, target.as_os_str(), meta.mtime_ns)
            }
        } else if lmd.is_file() {
            let mut input = open_object(&parent).map_err(what)?;
            let md = Metadata::from_file(&input).map_err(what)?;
            if !md.is_file() {
                return Err(StoreError::NotFound(format!(
                    "'{}' is not a file",
                    self.shown(src_key)
                )));
            }
            changed(&Stat::of(&md))?;
            if src_key == dst_key {
                // A metadata refresh: done on the open file, without rewriting the bytes.
                apply_meta(&input, meta)
                    .and_then(|()| Metadata::from_file(&input))
                    .map(|md| Stat::of(&md).put_outcome())
                    .map_err(what)
            } else {
                // The ETag here is size and mtime, which a file rewritten at
                // its old size and mtime keeps: the bytes copied are checked
                // against the blake3 the caller expects, so a copy (a content
                // object above all, named by its hash) never holds other bytes.
                let differs = std::cell::Cell::new(false);
                let copied = self.write_atomically(dst_key, meta, |out| {
                    let mut hasher = blake3::Hasher::new();
                    let mut reader = HashingReader {
                        inner: self.cancel.reader(&mut input),
                        hasher: &mut hasher,
                    };
                    io::copy(&mut reader, out)?;
                    if meta.blake3.is_empty() || hasher.finalize().to_hex().as_str() == meta.blake3 {
                        Ok(())
                    } else {
                        differs.set(true);
                        Err(io::Error::other(ContentDiffers))
                    }
                });
                match copied {
                    // Only the check above: a write refused before any byte
                    // was read (a name clash) stays what it is.
                    Err(_) if differs.get() => Err(StoreError::Changed(format!(
                        "'{src_key}' no longer holds the content recorded for it (its bytes hash otherwise)"
                    ))),
                    other => other,
                }
            }
        } else {
            Err(StoreError::NotFound(format!(
                "'{}' is not a file",
                self.shown(src_key)
            )))
        }
    }

    /// Deletes `key` and the directories it leaves empty (blocking).
    pub(super) fn delete_blocking(&self, key: &str) -> StoreResult<()> {
        check_key_text(key)?;
        let root = match Root::open(&self.root) {
            Ok(root) => root,
            Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(confine_error(e, "opening the store")),
        };
        let rel = self.read_path(&root, key)?;
        // On a case-folding disk, another spelling's object is not this key's.
        // On a case-folding disk, another spelling's object is not this
        // key's; one whose new spelling was refused stays, so the store never
        // holds neither spelling of the file (or takes that spelling, for a
        // refused copy of it: see module `fold`).
        match self.case.before_delete(&root, &rel)? {
            Deleting::Remove => {}
            Deleting::NotItsOwn | Deleting::Renamed => return Ok(()),
            Deleting::Kept => {
                return Err(StoreError::NameClash(format!(
                    "'{key}' is kept in the store: a key that differs from it only in letter case could not \
                     be written in this run, and the store's file system would keep only one of them"
                )));
            }
        }
        let rel = Path::new(&rel);
        let parent = match root.parent(rel, Create::No) {
            Ok(parent) => parent,
            // No object of the store can be beneath a link or a file, and
            // nothing beyond one is deleted.
            Err(ConfineError::Symlink { .. } | ConfineError::NotDir { .. }) => return Ok(()),
            Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(confine_error(e, "deleting")),
        };
        // A read-only object (from a Unix backup of a 0444 file) can only go on Windows once writable.
        let _ = crate::fs::winpath::clear_readonly(&parent.dir, Path::new(&parent.name));
        match parent.dir.remove_file_or_symlink(&parent.name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // A directory is no object: nothing to delete.
            Err(_)
                if parent
                    .dir
                    .symlink_metadata(&parent.name)
                    .is_ok_and(|md| md.is_dir()) => {}
            Err(e) => return Err(io_error(e, &format!("deleting '{}'", self.shown(key)))),
        }
        // Like a bucket, the store has no empty "folders": prune them up to
        // the root. The handle on the object's directory is closed first:
        // Windows does not remove a directory that a handle holds open.
        drop(parent);
        let mut dir = rel.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let Ok(p) = root.parent(d, Create::No) else { break };
            if p.dir.remove_dir(&p.name).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Describes `key` without reading it (blocking).
    pub(super) fn head_blocking(&self, key: &str) -> StoreResult<RemoteObject> {
        let root = self.open_root()?;
        let parent = self.parent_of(&root, key)?;
        let md = parent
            .dir
            .symlink_metadata(&parent.name)
            .map_err(|e| io_error(e, &format!("checking '{}'", self.shown(key))))?;
        remote_of(key, &md)
    }

    /// Opens `key` for reading (blocking): a symlink's target, or the open file.
    pub(super) fn open_blocking(&self, key: &str) -> StoreResult<(RemoteObject, Body)> {
        let what = |e: io::Error| io_error(e, &format!("reading '{}'", self.shown(key)));
        let root = self.open_root()?;
        let parent = self.parent_of(&root, key)?;
        let lmd = parent.dir.symlink_metadata(&parent.name).map_err(what)?;
        if lmd.is_symlink() {
            // Never followed: the body is the target itself.
            let target = parent.dir.read_link_contents(&parent.name).map_err(what)?;
            let mut body = target.into_os_string().into_encoded_bytes();
            if cfg!(windows) {
                // Made with `\` for the `/` of the stored target (`make_symlink`).
                body.iter_mut().filter(|b| **b == b'\\').for_each(|b| *b = b'/');
            }
            return Ok((remote_of(key, &lmd)?, Body::Link(body)));
        }
        if !lmd.is_file() {
            return Err(StoreError::NotFound(format!("'{key}' is not a file")));
        }
        let file = open_object(&parent).map_err(what)?;
        let md = Metadata::from_file(&file).map_err(what)?;
        Ok((remote_of(key, &md)?, Body::File(file)))
    }
}

/// An object's body as opened: a symlink's target or a regular file.
pub(super) enum Body {
    Link(Vec<u8>),
    File(File),
}

/// Opens the entry at a parent's final name for reading, never through a
/// link (`O_NOFOLLOW`). Callers check first that it is a regular file (so
/// no FIFO is opened) and check the open file's type again.
fn open_object(parent: &Parent) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    Ok(parent.dir.open_with(&parent.name, &options)?.into_std())
}

/// `ns` nanoseconds since the epoch as a time (the epoch where out of range).
fn system_time(ns: i64) -> SystemTime {
    let d = std::time::Duration::from_nanos(ns.unsigned_abs());
    let t = if ns >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(d)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(unix)]
fn make_symlink(dir: &Dir, target: &OsStr, name: &str) -> io::Result<()> {
    // `symlink_contents`: the target is stored as given, absolute or not; it is never resolved here.
    dir.symlink_contents(target, name)
}

/// Windows' error code for a call the process lacks the privilege for
/// (`ERROR_PRIVILEGE_NOT_HELD`): making a symlink without the "Create
/// symbolic links" privilege.
#[cfg(windows)]
const ERROR_PRIVILEGE_NOT_HELD: i32 = 1314;

/// A symlink on Windows: a file link whose target's `/` become `\` (the
/// object's body, read back with the `\` turned back into `/`). Lacking the
/// privilege, or a system that reports a link made that is not there
/// (wine 8 does), is one line saying so, not an OS error code.
#[cfg(windows)]
fn make_symlink(dir: &Dir, target: &OsStr, name: &str) -> io::Result<()> {
    let Some(text) = target.to_str() else {
        return Err(io::Error::other(
            "its target is not UTF-8, which a Windows symlink cannot hold; not stored",
        ));
    };
    let target = std::path::PathBuf::from(text.replace('/', "\\"));
    match dir.symlink_file(&target, name) {
        Err(e) if e.raw_os_error() == Some(ERROR_PRIVILEGE_NOT_HELD) => {
            return Err(io::Error::other(
                "a symlink is stored in a local store as a link, and making one on Windows needs the \
                 \"Create symbolic links\" privilege (run as an administrator, or turn Developer Mode on); \
                 not stored",
            ));
        }
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if !dir
        .symlink_metadata(name)
        .is_ok_and(|md| md.file_type().is_symlink())
    {
        let _ = dir.remove_file(name);
        return Err(io::Error::other(
            "the system reported the symlink made, but there is none (wine does this); not stored",
        ));
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn make_symlink(_dir: &Dir, _target: &OsStr, _name: &str) -> io::Result<()> {
    Err(io::Error::other("symlinks are not supported on this platform"))
}

/// The error a copy's closure stops with when the bytes hash otherwise
/// than the caller expects (see `copy_unnoted`).
#[derive(Debug)]
struct ContentDiffers;

impl std::fmt::Display for ContentDiffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bytes copied hash otherwise than recorded")
    }
}

impl std::error::Error for ContentDiffers {}

/// A reader that hashes what passes through it.
struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut blake3::Hasher,
}

impl<R: io::Read> io::Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
