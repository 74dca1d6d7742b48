//! Multipart uploads in a directory: each open upload is a directory
//! `upload-ID` in the temporary area holding a `meta` line and one file
//! per part; completing one writes the parts, in order, to a temporary
//! file renamed into place like any other write.

use std::io::{self, Write};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::OpenOptions;

use super::scratch::TMP;
use super::{DIR_MODE, LocalStore, Stat, blocking, check_key, confine_error, io_error, upload_name};
use crate::fs::confine::{ConfineError, Create, Root};
use crate::store::{
    CompletedPart, FileRange, ObjectMeta, PendingUpload, PutOutcome, StoreError, StoreResult,
};

/// The [`crate::store::ObjectStore`] multipart operations (errors as
/// [`io_error`] and [`confine_error`] sort them, [`StoreError::Fatal`]
/// for a malformed key or upload ID).
impl LocalStore {
    /// Opens an upload directory for `key`, returning its ID.
    pub(super) async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> StoreResult<String> {
        check_key(key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let name = upload_name(&upload_id)?;
        let meta_line = format!("{} {} {}", meta.mtime_ns, meta.mode, meta.blake3);
        let this = self.clone();
        blocking(move || {
            let what = |e| {
                io_error(
                    e,
                    &format!(
                        "starting upload '{upload_id}' in '{}'",
                        this.root.join(TMP).display()
                    ),
                )
            };
            let root = this.open_root()?;
            let tmp = this
                .tmp_dir(&root, Create::Mode(DIR_MODE))?
                .ok_or_else(|| StoreError::Fatal("the temporary area vanished".into()))?;
            tmp.create_dir(&name).map_err(what)?;
            let dir = tmp.open_dir_nofollow(&name).map_err(what)?;
            dir.open_with(
                "meta",
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .follow(FollowSymlinks::No),
            )
            .and_then(|mut f| f.write_all(meta_line.as_bytes()))
            .map_err(what)?;
            Ok(upload_id)
        })
        .await
    }

    /// Writes part `number` of an upload from `range`.
    pub(super) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        range: FileRange<'_>,
    ) -> StoreResult<String> {
        check_key(key)?;
        upload_name(upload_id)?;
        let (path, offset, len, md5) = (range.path.to_path_buf(), range.offset, range.len, range.md5);
        let (this, upload_id, handle) = (self.clone(), upload_id.to_string(), self.pace_handle()?);
        blocking(move || {
            let root = this.open_root()?;
            let dir = this.upload_dir(&root, &upload_id)?;
            let part = format!("part-{number:05}");
            let what = |e| io_error(e, &format!("writing part {number} of upload '{upload_id}'"));
            let mut out = dir
                .open_with(
                    &part,
                    OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .follow(FollowSymlinks::No),
                )
                .map_err(what)?
                .into_std();
            this.copy_in(
                &mut out,
                FileRange {
                    path: &path,
                    offset,
                    len,
                    md5,
                },
                handle.as_ref(),
            )
            .map_err(what)?;
            out.flush().map_err(what)?;
            Ok(format!("{number}-{len:x}"))
        })
        .await
    }

    /// Joins the parts into the object at `key` and removes the upload.
    pub(super) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> StoreResult<PutOutcome> {
        let name = upload_name(upload_id)?;
        let (this, key, upload_id) = (self.clone(), key.to_string(), upload_id.to_string());
        let numbers: Vec<i32> = parts.iter().map(|p| p.number).collect();
        blocking(move || {
            let what = |e| io_error(e, &format!("completing upload '{upload_id}'"));
            let root = this.open_root()?;
            let dir = this.upload_dir(&root, &upload_id)?;
            let meta_line = dir.read_to_string("meta").map_err(what)?;
            let mut fields = meta_line.split(' ');
            let meta = ObjectMeta {
                mtime_ns: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0),
                mode: fields.next().and_then(|f| f.parse().ok()).unwrap_or(0o644),
                blake3: fields.next().unwrap_or_default().to_string(),
                symlink: false,
            };
            let outcome = this.write_atomically(&key, &meta, |out| {
                for n in &numbers {
                    let mut part = dir
                        .open_with(
                            format!("part-{n:05}"),
                            OpenOptions::new().read(true).follow(FollowSymlinks::No),
                        )?
                        .into_std();
                    io::copy(&mut part, out)?;
                }
                Ok(())
            })?;
            if let Some(tmp) = this.tmp_dir(&root, Create::No)? {
                let _ = tmp.remove_dir_all(&name);
            }
            Ok(outcome)
        })
        .await
    }

    /// The uploads left open in the temporary area.
    pub(super) async fn pending_uploads(&self) -> StoreResult<Vec<PendingUpload>> {
        let this = self.clone();
        blocking(move || {
            let what = |e| io_error(e, &format!("listing '{}'", this.root.join(TMP).display()));
            let root = match Root::open(&this.root) {
                Ok(root) => root,
                Err(ConfineError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(confine_error(e, "opening the store")),
            };
            let Some(tmp) = this.tmp_dir(&root, Create::No)? else {
                return Ok(Vec::new());
            };
            let mut open = Vec::new();
            for entry in tmp.entries().map_err(what)? {
                let entry = entry.map_err(what)?;
                let Some(upload_id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("upload-"))
                    .map(str::to_string)
                else {
                    continue;
                };
                // Not followed: a link here is no upload.
                let Some(md) = entry.metadata().ok().filter(|md| md.is_dir()) else {
                    continue;
                };
                open.push(PendingUpload {
                    key: String::new(),
                    upload_id,
                    initiated_secs: Some(Stat::of(&md).mtime_ns.div_euclid(1_000_000_000)),
                });
            }
            Ok(open)
        })
        .await
    }

    /// Removes an upload and its parts; a missing one is not an error.
    pub(super) async fn abort_multipart(&self, upload_id: &str) -> StoreResult<()> {
        let name = upload_name(upload_id)?;
        let this = self.clone();
        blocking(move || {
            let root = this.open_root()?;
            let Some(tmp) = this.tmp_dir(&root, Create::No)? else {
                return Ok(());
            };
            // cap-std's remove_dir_all removes links inside, never what they point to.
            match tmp.remove_dir_all(&name) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(
                    e,
                    &format!("aborting upload '{}'", this.root.join(TMP).join(&name).display()),
                )),
                _ => Ok(()),
            }
        })
        .await
    }
}
