//! How the local store spells keys on disk: as they are, or under the
//! stand-ins a restore onto Windows uses ([`crate::fs::winname`], rclone's
//! encoding) so a store on Windows, or on a disk that refuses the names
//! Windows refuses (exFAT, FAT, NTFS mounted on Linux), holds every key:
//! `a:b.txt` is the file `a：b.txt`, `con.txt` is `ｃon.txt`, `trailing.` is
//! `trailing．`. Every operation maps the key's components on the way in
//! and the listing maps names back, so backup, restore, verify and
//! snapshots see the original keys.
//!
//! The encoding is a property of the store, not of whoever reads it: a
//! store written on ext4 may hold a literal `a：b.txt`, which must never
//! read back as `a:b.txt` on Windows, and a store written on Windows must
//! read back the same keys when its disk is read on Linux. So it is
//! recorded in the store, in the marker object [`MARKER`] (one line,
//! [`WINDOWS`]), written by the first write of a run to a store whose disk
//! refuses Windows names ([`crate::fs::winname::refused_by`]; always on
//! Windows) and that has no marker yet. A store without the marker keeps
//! literal names. An older store on such a disk is adopted only when no
//! name in it would read differently through the stand-ins (one walk of
//! the store, once); otherwise it keeps literal names and a warning says why.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::OpenOptions;

use super::scratch::Scratch;
use super::{DIR_MODE, confine_error, io_error};
use crate::fs::confine::{ConfineError, Create, Root};
use crate::fs::winname;
use crate::store::{StoreError, StoreResult};

/// The marker object's key, in the store's own area (never listed).
pub(super) const MARKER: &str = ".s3backup/name-encoding";

/// The marker's line for rclone's stand-ins as [`crate::fs::winname`] maps them.
pub(super) const WINDOWS: &str = "windows-stand-ins 1";

/// How keys are spelled on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Names {
    /// As they are (no marker).
    Literal,
    /// Each component through [`winname::to_windows`] (the marker says [`WINDOWS`]).
    Windows,
}

impl Names {
    /// The relative path (`/`-separated) that holds `key` on disk.
    pub(super) fn disk_of(self, key: &str) -> Cow<'_, str> {
        match self {
            Names::Literal => Cow::Borrowed(key),
            Names::Windows => winname::path_to_windows(key),
        }
    }

    /// The key component a name on disk stands for.
    pub(super) fn key_of(self, name: &str) -> Cow<'_, str> {
        match self {
            Names::Literal => Cow::Borrowed(name),
            Names::Windows => winname::from_windows(name),
        }
    }
}

/// What this run knows of the store's encoding, shared by the store's clones.
#[derive(Debug, Default, Clone)]
pub(super) struct NameGuard(Arc<Mutex<Known>>);

#[derive(Debug, Default)]
struct Known {
    /// The encoding the marker records, once read.
    names: Option<Names>,
    /// Whether a write has settled it (read the marker, or written it).
    settled: bool,
}

impl NameGuard {
    /// The store's encoding as its marker records it (read once per run).
    ///
    /// # Errors
    /// The marker cannot be read, or names an encoding this version does not know.
    pub(super) fn for_reads(&self, root: &Root) -> StoreResult<Names> {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(names) = known.names {
            return Ok(names);
        }
        let names = read_marker(root)?;
        known.names = Some(names);
        Ok(names)
    }

    /// The encoding a write uses: the marker's; where there is none and the
    /// disk refuses Windows names, the stand-ins, recorded by writing the
    /// marker first (see the module doc).
    ///
    /// # Errors
    /// The marker cannot be read or written, the probe fails.
    pub(super) fn for_writes(&self, root: &Root, scratch: &Scratch) -> StoreResult<Names> {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if known.settled
            && let Some(names) = known.names
        {
            return Ok(names);
        }
        let mut names = read_marker(root)?;
        if names == Names::Literal {
            let refused = winname::refused_by(root.path(), true).map_err(|e| {
                io_error(
                    e,
                    &format!(
                        "probing whether '{}' takes names Windows refuses",
                        root.path().display()
                    ),
                )
            })?;
            if refused {
                match literal_name_read_otherwise(root)? {
                    None => {
                        write_marker(root, scratch)?;
                        names = Names::Windows;
                    }
                    Some(key) => tracing::warn!(
                        "'{}' refuses names Windows refuses, but already holds '{key}', which would read back \
                         otherwise under the stand-ins for them; the store keeps literal names (keys such as \
                         'a:b.txt' cannot be stored there)",
                        root.path().display()
                    ),
                }
            }
        }
        *known = Known {
            names: Some(names),
            settled: true,
        };
        Ok(names)
    }
}

/// The encoding the marker records; [`Names::Literal`] without one.
fn read_marker(root: &Root) -> StoreResult<Names> {
    let what = || format!("reading '{}'", root.path().join(MARKER).display());
    let parent = match root.parent(Path::new(MARKER), Create::No) {
        Ok(parent) => parent,
        Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => {
            return Ok(Names::Literal);
        }
        Err(ConfineError::NotDir { .. }) => return Ok(Names::Literal),
        Err(e) => return Err(confine_error(e, &what())),
    };
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    let mut text = String::new();
    match parent.dir.open_with(&parent.name, &options) {
        Ok(mut file) => file.read_to_string(&mut text).map_err(|e| io_error(e, &what()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Names::Literal),
        Err(e) => return Err(io_error(e, &what())),
    };
    match text.trim_end() {
        WINDOWS => Ok(Names::Windows),
        other => Err(StoreError::Fatal(format!(
            "'{}' records the name encoding '{other}', which this version of s3backup does not know; \
             use the version that wrote the store",
            root.path().join(MARKER).display()
        ))),
    }
}

/// Writes the marker through a temporary file renamed into place.
fn write_marker(root: &Root, scratch: &Scratch) -> StoreResult<()> {
    let what = |e: io::Error| io_error(e, &format!("writing '{}'", root.path().join(MARKER).display()));
    let parent = root
        .parent_replacing(Path::new(MARKER), DIR_MODE)
        .map_err(|e| confine_error(e, "writing the name-encoding marker"))?;
    let (name, mut file) = scratch.create_file().map_err(what)?;
    let written = file
        .write_all(format!("{WINDOWS}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .and_then(|()| scratch.dir().rename(&name, &parent.dir, &parent.name));
    if let Err(e) = written {
        scratch.discard(&name);
        return Err(what(e));
    }
    tracing::info!(
        "'{}' refuses names Windows refuses: keys are stored under stand-ins (recorded in '{MARKER}')",
        root.path().display()
    );
    Ok(())
}

/// The first key in the store (its own area left out) with a component
/// that reads otherwise through the stand-ins (`a：b.txt`): such a store
/// cannot take the encoding on.
fn literal_name_read_otherwise(root: &Root) -> StoreResult<Option<String>> {
    let mut found = None;
    let mut failed = None;
    super::walk::walk(root, "", Names::Literal, |item| match item {
        Ok(object) => {
            if object.key.starts_with(".s3backup/") {
                return true;
            }
            if object
                .key
                .split('/')
                .any(|c| matches!(winname::from_windows(c), Cow::Owned(_)))
            {
                found = Some(object.key);
                return false;
            }
            true
        }
        Err(e) => {
            failed = Some(e);
            false
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_stand_ins_and_back_only_under_the_windows_encoding() {
        let key = "d:ir/a:b.txt";
        assert_eq!(Names::Literal.disk_of(key), key);
        assert_eq!(Names::Windows.disk_of(key), "d\u{ff1a}ir/a\u{ff1a}b.txt");
        assert_eq!(Names::Windows.key_of("con\u{ff0e}"), "con.");
        assert_eq!(Names::Literal.key_of("a\u{ff1a}b.txt"), "a\u{ff1a}b.txt");
    }

    #[test]
    fn a_store_without_a_marker_is_literal_and_an_unknown_marker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(read_marker(&root).unwrap(), Names::Literal);
        std::fs::create_dir_all(dir.path().join(".s3backup")).unwrap();
        std::fs::write(dir.path().join(MARKER), format!("{WINDOWS}\n")).unwrap();
        assert_eq!(read_marker(&root).unwrap(), Names::Windows);
        std::fs::write(dir.path().join(MARKER), "something-newer 2\n").unwrap();
        let err = read_marker(&root).unwrap_err();
        assert!(err.to_string().contains("something-newer 2"), "{err}");
    }
}
