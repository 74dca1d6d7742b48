//! Whether a SOURCE lies on a file system that refuses the names Windows
//! refuses (FAT, exFAT, NTFS through a Windows-names driver), so that a
//! backup reads the stand-ins a restore wrote there back as their
//! original keys, as a Windows backup does ([`crate::fs::names`],
//! [`crate::fs::winname`]).
//!
//! Without it, a Linux backup of a tree a restore wrote onto exFAT stored
//! `a：b.txt` as the key for what had been `a:b.txt`, and each round trip
//! added another `‛` to a name holding one.
//!
//! It is decided without writing into SOURCE where the kernel says enough:
//! on Linux, `statfs`'s `f_type` names FAT (`0x4d44`) and exFAT
//! (`0x2011BAB0`), whose drivers refuse those names, and the common native
//! file systems (ext2/3/4, XFS, Btrfs, tmpfs, overlayfs, ZFS, F2FS, …),
//! which take every name. Anything else (FUSE mounts such as exfat-fuse
//! and ntfs-3g, which `/proc/self/mountinfo` only calls `fuseblk`; the
//! in-kernel NTFS drivers, which take `:` unless mounted with a
//! Windows-names option; SMB, NFS, 9p, or another system) is asked: a
//! probe file whose name holds `:` is created with `O_CREAT|O_EXCL`
//! ([`crate::fs::winname::refused_by`]). A file system that refuses the
//! name fails with `EINVAL` and creates nothing; one that takes it has the
//! probe removed at once (it is named as a restore's temporary file, which
//! a backup's walk leaves out, should the removal itself fail). A dry run
//! writes nothing, so there the answer for such a file system is "no", and
//! a SOURCE that cannot be written (read-only) is taken as "no" too.

use std::path::Path;

/// `statfs` `f_type`s whose drivers refuse Windows names: vfat/msdos, exfat.
#[cfg(target_os = "linux")]
const REFUSING: [u32; 2] = [0x4d44, 0x2011_BAB0];

/// `statfs` `f_type`s that take any name but `/` and NUL: ext2/3/4, XFS,
/// Btrfs, tmpfs, ramfs, overlayfs, ZFS, F2FS, bcachefs, JFS, ReiserFS,
/// NILFS, squashfs.
#[cfg(target_os = "linux")]
const NATIVE: [u32; 13] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0x8584_58F6,
    0x794C_7630,
    0x2FC1_2FC1,
    0xF2F5_2010,
    0xCA45_1A4E,
    0x3153_464A,
    0x5265_4973,
    0x3434,
    0x7371_7368,
];

/// Whether the file system holding the directory `root` refuses the names
/// Windows refuses (see the module doc): always on Windows; on Linux from
/// `statfs` where the type says, else by a probe (only with `may_write`).
pub fn refuses_windows_names(root: &Path, may_write: bool) -> bool {
    if cfg!(windows) {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let Ok(st) = rustix::fs::statfs(root) {
        // f_type is a signed word of the platform's size; the magic numbers are 32-bit.
        let kind = (st.f_type as u64 & 0xFFFF_FFFF) as u32;
        if REFUSING.contains(&kind) {
            return true;
        }
        if NATIVE.contains(&kind) {
            return false;
        }
    }
    match crate::fs::winname::refused_by(root, may_write) {
        Ok(refused) => refused,
        Err(e) => {
            tracing::debug!(
                "cannot tell whether '{}' refuses Windows names (taken as no): {e}",
                root.display()
            );
            false
        }
    }
}

/// Makes the names under the SOURCE `root` (absolute) map as on Windows
/// when its file system refuses Windows names ([`refuses_windows_names`];
/// a dry run, `may_write` false, probes nothing), and says so at `-v`.
pub fn map_source_names(root: &Path, may_write: bool) {
    if !cfg!(windows) && refuses_windows_names(root, may_write) {
        tracing::info!(
            "'{}' is on a file system that refuses Windows names: names such as 'a：b.txt' are read back as the keys a restore wrote them for ('a:b.txt')",
            root.display()
        );
        crate::fs::names::map_windows_names_under(root);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_native_file_system_takes_every_name_and_is_not_written_to() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!refuses_windows_names(dir.path(), true));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left behind"
        );
    }

    /// The exFAT mount the case-folding tests use, when there is one.
    #[test]
    fn an_exfat_mount_refuses_them_without_a_file_written() {
        let Some(dir) = std::env::var_os("S3BACKUP_TEST_FOLDING_DIR") else {
            return;
        };
        let dir = tempfile::tempdir_in(dir).unwrap();
        assert!(refuses_windows_names(dir.path(), true));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left behind"
        );
    }
}
