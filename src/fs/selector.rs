//! A PATH typed after `restore TARGET DEST` or `snapshots ls ID`: it names
//! that entry and, for a directory, everything under it. Typed with a
//! trailing `/` it names a directory only, as in a shell, rsync or
//! `--exclude` (`docs/` never picks a file called `docs`).

/// One requested path: `/`-separated, relative to the backup root, with
/// its leading and trailing `/` dropped, and whether it was typed with a
/// trailing `/` (a directory only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSelector {
    /// The path without its leading and trailing `/`.
    pub path: String,
    /// Typed with a trailing `/`: names a directory, never a file.
    pub dir_only: bool,
}

impl PathSelector {
    /// The selector for `typed` (leading `/` dropped).
    pub fn new(typed: &str) -> Self {
        let dir_only = typed.ends_with('/') && !typed.trim_matches('/').is_empty();
        Self {
            path: typed.trim_matches('/').to_string(),
            dir_only,
        }
    }

    /// The path as the user meant it, for messages: `d/` for a directory only.
    pub fn typed(&self) -> String {
        if self.dir_only {
            format!("{}/", self.path)
        } else {
            self.path.clone()
        }
    }

    /// Whether the entry at `path` (a directory when `is_dir`) is named:
    /// the entry itself (a directory, if `dir_only`), or anything under it.
    pub fn names(&self, path: &str, is_dir: bool) -> bool {
        match path.strip_prefix(self.path.as_str()) {
            Some("") => is_dir || !self.dir_only,
            Some(rest) => rest.starts_with('/') || self.path.is_empty(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_slash_names_a_directory_only() {
        let d = PathSelector::new("d/");
        assert!(d.dir_only && d.path == "d");
        assert!(d.names("d", true) && d.names("d/x", false) && d.names("d/x/y", true));
        assert!(!d.names("d", false), "a file named d is not the directory d/");
        assert!(!d.names("dd", true) && !d.names("e/d", true));
        let f = PathSelector::new("/d");
        assert!(!f.dir_only && f.names("d", false) && f.names("d", true) && f.names("d/x", false));
        let all = PathSelector::new("/");
        assert!(!all.dir_only && all.names("x", false));
    }
}
