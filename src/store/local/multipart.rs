//! Multipart uploads in a directory: each open upload is a directory
//! `upload-ID` in the temporary area holding a `meta` file (a line of the
//! object's metadata, then a line with its key) and one file per part;
//! completing one writes the parts, in order, to a temporary file renamed
//! into place like any other write. The key lets a listing keep to a
//! prefix, as S3's does: sets with other prefixes in one store never see
//! (nor abort) each other's uploads.

use std::io::{self, Write};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::OpenOptions;

use super::scratch::TMP;
use super::{DIR_MODE, LocalStore, Stat, blocking, check_key_text, confine_error, io_error, upload_name};
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
        check_key_text(key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let name = upload_name(&upload_id)?;
        let meta_line = format!("{} {} {}\n{key}", meta.mtime_ns, meta.mode, meta.blake3);
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
        check_key_text(key)?;
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
                    sum: None,
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
            let meta_text = dir.read_to_string("meta").map_err(what)?;
            let mut fields = meta_text.lines().next().unwrap_or_default().split(' ');
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

    /// The uploads left open in the temporary area for keys under `prefix`
    /// (a string prefix, as S3's). An upload begun by a version that did
    /// not record its key is listed, with an empty key, only for the empty
    /// prefix (which takes every key).
    pub(super) async fn pending_uploads(&self, prefix: &str) -> StoreResult<Vec<PendingUpload>> {
        let (this, prefix) = (self.clone(), prefix.to_string());
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
                let key = tmp
                    .open_dir_nofollow(entry.file_name())
                    .and_then(|dir| dir.read_to_string("meta"))
                    .ok()
                    .and_then(|text| text.lines().nth(1).map(str::to_string));
                let key = match key {
                    Some(key) if key.starts_with(&prefix) => key,
                    None if prefix.is_empty() => String::new(),
                    _ => continue,
                };
                open.push(PendingUpload {
                    key,
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

#[cfg(test)]
mod tests {
    use crate::store::{ObjectMeta, ObjectStore};

    /// An open upload is listed with its key, and only under a prefix of
    /// that key (it was listed, keyless, under every prefix): so a run
    /// finds the uploads of a key whose beginning it never heard about,
    /// and never those of keys outside its prefix.
    #[tokio::test(flavor = "multi_thread")]
    async fn open_uploads_are_listed_by_key_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::LocalStore::new(dir.path().join("store"));
        store.prepare(true).await.unwrap();
        let meta = ObjectMeta {
            mtime_ns: 1,
            mode: 0o644,
            blake3: "b".into(),
            symlink: false,
        };
        let a = ObjectStore::create_multipart(&store, "one/big.bin", &meta)
            .await
            .unwrap();
        let b = ObjectStore::create_multipart(&store, "two/big.bin", &meta)
            .await
            .unwrap();
        let listed = |prefix: &'static str| {
            let store = store.clone();
            async move {
                let mut l: Vec<(String, String)> = ObjectStore::pending_uploads(&store, prefix)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|p| (p.key, p.upload_id))
                    .collect();
                l.sort();
                l
            }
        };
        assert_eq!(listed("one/").await, [("one/big.bin".to_string(), a.clone())]);
        assert_eq!(
            listed("two/big.bin").await,
            [("two/big.bin".to_string(), b.clone())]
        );
        assert_eq!(listed("").await.len(), 2);
        assert!(listed("three/").await.is_empty());
    }
}
