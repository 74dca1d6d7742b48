//! The keys written so far onto a destination that folds names, and which
//! of them would land on one file there ([`Twins`]).
//!
//! Keys are grouped by [`Folding::fold`], a fold wider than any file
//! system's own table (lower case of upper case, after NFC where the form
//! is folded): two keys that a real file system takes for one name always
//! share a group. Keys in one group are not always one name there: exFAT
//! and NTFS upper-case each letter by a table, so `ς` and `σ` are one
//! name and `ǅ` and `ǆ` are two. So when a second spelling meets a group,
//! the destination itself is asked where it may be written
//! ([`Judge::Dest`]: a fresh temporary name built from the first spelling
//! is created, the same name built from the second is looked up, and the
//! file is removed); where it may not (a dry run), the group's verdict
//! stands ([`Judge::Superset`]): a false clash, never a silent merge.
//!
//! Memory: each key costs its folded path's hash, its exact path's hash
//! and its last component's spelling as a bit mask over the folded
//! component (which letters are upper case): 24 bytes a key, and the
//! hash table's slack. Only a name the mask cannot spell (over 62
//! characters, or a letter that is neither the folded one nor its upper
//! case, as `ς` over `σ`) is kept as text. From the
//! mask and the later key's folded component the earlier spelling is
//! rebuilt, so a refusal can name the key that won.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use crate::fs::case::Folding;

/// Why a key cannot be written beside the ones before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clash {
    /// An earlier key lands on the same file (or directory) name.
    Name,
    /// A directory on this key's path was spelled otherwise by an earlier
    /// key: its entries would merge into that directory. Holds this key's
    /// spelling of the directory.
    Directory(String),
}

/// A [`Clash`] and the earlier key it clashes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// What clashes.
    pub clash: Clash,
    /// The earlier spelling that keeps its place: the key (for
    /// [`Clash::Name`]) or the directory, or the file that holds its name
    /// (for [`Clash::Directory`]), as a `/`-separated relative path.
    pub winner: String,
}

/// Who decides whether two spellings of one group are one name.
#[derive(Debug, Clone)]
pub enum Judge {
    /// The group does: every two spellings [`Folding::fold`] puts together
    /// clash (where nothing may be written to ask).
    Superset,
    /// The destination does, by a temporary file in `base` (its root, or
    /// the nearest existing ancestor); names are written through
    /// [`crate::fs::winname::to_windows`] when `windows_names`. A probe
    /// that cannot be made counts as one name.
    Dest {
        /// Where the temporary files are made.
        base: PathBuf,
        /// Whether the destination holds Windows stand-in names.
        windows_names: bool,
    },
}

/// One key's last component, as spelled (see the module doc).
#[derive(Debug)]
enum Spelling {
    /// Bit `i` set: the `i`-th character is the upper case of the folded one.
    Mask(u64),
    /// A spelling the mask cannot hold.
    Text(Box<str>),
}

/// The longest name (in characters) a [`Spelling::Mask`] spells; the two
/// top bits of [`Member::bits`] are flags.
const MASK_CHARS: usize = 62;
/// [`Member::bits`]: the key is a directory.
const DIR: u64 = 1 << 63;
/// [`Member::bits`]: the spelling is in [`Twins::texts`].
const TEXT: u64 = 1 << 62;

/// A key taken: its exact path's hash, and its last component's spelling
/// mask with the [`DIR`] and [`TEXT`] flags (16 bytes).
#[derive(Debug)]
struct Member {
    exact: u64,
    bits: u64,
}

/// What an earlier key at the same folded path is, for a new spelling.
enum Found {
    /// No earlier key takes this name.
    None,
    /// This very key (`dir`: taken as a directory).
    Same(bool),
    /// Another spelling that is the same name on the destination.
    Other(String),
}

/// The keys written so far (see the module doc).
#[derive(Debug)]
pub struct Twins {
    folding: Folding,
    judge: Judge,
    /// Folded path hash → the first key taken there.
    first: HashMap<u64, Member>,
    /// Folded path hash → further keys the destination holds apart.
    more: HashMap<u64, Vec<Member>>,
    /// Exact path hash → a last component no mask spells (rare).
    texts: HashMap<u64, Box<str>>,
}

impl Twins {
    /// An empty record for a destination that folds as `folding`, with
    /// every two keys of one group taken as one name ([`Judge::Superset`]).
    pub fn new(folding: Folding) -> Self {
        Self::asking(folding, Judge::Superset)
    }

    /// An empty record whose groups are decided by `judge`.
    pub fn asking(folding: Folding, judge: Judge) -> Self {
        Self {
            folding,
            judge,
            first: HashMap::new(),
            more: HashMap::new(),
            texts: HashMap::new(),
        }
    }

    /// How the destination folds names.
    pub fn folding(&self) -> Folding {
        self.folding
    }

    /// Takes the relative path `rel` (`/`-separated) of a file, link or
    /// (`is_dir`) directory: `Ok` when it has a place of its own, or the
    /// [`Clash`] that keeps it out (it is then not recorded).
    ///
    /// # Errors
    /// The [`Clash`] with an earlier key.
    pub fn take(&mut self, rel: &str, is_dir: bool) -> Result<(), Clash> {
        self.take_named(rel, is_dir).map_err(|t| t.clash)
    }

    /// [`Twins::take`], naming the earlier key on a clash.
    ///
    /// # Errors
    /// The [`Twin`]: the clash and the key that keeps its place.
    pub fn take_named(&mut self, rel: &str, is_dir: bool) -> Result<(), Twin> {
        if self.folding == Folding::Exact {
            return Ok(());
        }
        // Directories on the way: the first spelling of each wins, and a
        // file already there under another spelling keeps its place.
        let mut pending = Vec::new();
        for (end, _) in rel.match_indices('/') {
            let dir = &rel[..end];
            let clash = |winner| {
                Err(Twin {
                    clash: Clash::Directory(dir.to_string()),
                    winner,
                })
            };
            match self.find(dir) {
                Found::Same(true) => {}
                Found::Same(false) => return clash(dir.to_string()),
                Found::Other(winner) => return clash(winner),
                Found::None => pending.push(dir),
            }
        }
        match self.find(rel) {
            Found::Same(true) if is_dir => return Ok(()),
            Found::Same(_) => {
                return Err(Twin {
                    clash: Clash::Name,
                    winner: rel.to_string(),
                });
            }
            Found::Other(winner) => {
                return Err(Twin {
                    clash: Clash::Name,
                    winner,
                });
            }
            Found::None => {}
        }
        self.insert(rel, is_dir);
        for dir in pending {
            self.insert(dir, true);
        }
        Ok(())
    }

    /// The earlier key at `path`'s folded path, if any, and what it is.
    fn find(&self, path: &str) -> Found {
        let folded = self.folding.fold(path).unwrap_or_default();
        let key = hash(&folded);
        let members = self
            .first
            .get(&key)
            .into_iter()
            .chain(self.more.get(&key).into_iter().flatten());
        let (parent, name) = split(path);
        let folded_name = split(&folded).1;
        for m in members {
            let spelled = match self.texts.get(&m.exact) {
                Some(text) if m.bits & TEXT != 0 => text.to_string(),
                _ => Spelling::Mask(m.bits & (TEXT - 1)).spell(folded_name),
            };
            let full = match parent {
                Some(p) => format!("{p}/{spelled}"),
                None => spelled.clone(),
            };
            // Another parent's spelling: a different directory (a parent
            // spelled otherwise was refused on its own path first).
            if hash(&full) != m.exact {
                continue;
            }
            if full == path {
                return Found::Same(m.bits & DIR != 0);
            }
            if self.same_name(&spelled, name) {
                return Found::Other(full);
            }
        }
        Found::None
    }

    /// Records `path` as taken.
    fn insert(&mut self, path: &str, dir: bool) {
        let folded = self.folding.fold(path).unwrap_or_default();
        let exact = hash(path);
        let bits = match Spelling::of(split(path).1, split(&folded).1) {
            Spelling::Mask(mask) => mask,
            Spelling::Text(text) => {
                self.texts.insert(exact, text);
                TEXT
            }
        };
        let member = Member {
            exact,
            bits: bits | if dir { DIR } else { 0 },
        };
        match self.first.entry(hash(&folded)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(member);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                self.more.entry(*o.key()).or_default().push(member);
            }
        }
    }

    /// Whether the names `a` (taken) and `b` (new), one group, are one
    /// name on the destination (see [`Judge`]).
    fn same_name(&self, a: &str, b: &str) -> bool {
        match &self.judge {
            Judge::Superset => true,
            Judge::Dest { base, windows_names } => {
                let local = |s: &str| {
                    if *windows_names {
                        crate::fs::winname::to_windows(s).into_owned()
                    } else {
                        s.to_string()
                    }
                };
                let tag = crate::fs::own::temp_name("probe");
                let tag = tag.to_string_lossy();
                let made = base.join(format!("{tag}-{}", local(a)));
                let other = base.join(format!("{tag}-{}", local(b)));
                match crate::fs::case::create_new(&made) {
                    Ok(file) => {
                        drop(file);
                        let same = other.symlink_metadata().is_ok();
                        // One left behind is swept as a restore's temporary file.
                        let _ = std::fs::remove_file(&made);
                        same
                    }
                    Err(e) => {
                        tracing::debug!(
                            "could not ask '{}' whether '{a}' and '{b}' are one name: {e}",
                            base.display()
                        );
                        true
                    }
                }
            }
        }
    }
}

impl Spelling {
    /// How `name` is spelled over `folded`, its folded form.
    fn of(name: &str, folded: &str) -> Self {
        let mut mask = 0u64;
        let (mut n, mut f) = (name.chars(), folded.chars());
        for i in 0..=MASK_CHARS {
            match (n.next(), f.next()) {
                (None, None) => return Spelling::Mask(mask),
                (Some(c), Some(g)) if i < MASK_CHARS => {
                    if c == g {
                        continue;
                    }
                    if upper(g) != Some(c) {
                        break;
                    }
                    mask |= 1 << i;
                }
                _ => break,
            }
        }
        Spelling::Text(name.into())
    }

    /// The spelling, given the folded form of the name.
    fn spell(&self, folded: &str) -> String {
        match self {
            Spelling::Text(t) => t.to_string(),
            Spelling::Mask(m) => folded
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i < MASK_CHARS && (m >> i) & 1 == 1 {
                        upper(c).unwrap_or(c)
                    } else {
                        c
                    }
                })
                .collect(),
        }
    }
}

/// The upper case of `c` when it is one character.
fn upper(c: char) -> Option<char> {
    let mut u = c.to_uppercase();
    let first = u.next()?;
    u.next().is_none().then_some(first)
}

/// A `/`-separated path's parent (`None` at the top) and last component.
fn split(path: &str) -> (Option<&str>, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, path),
    }
}

/// A 64-bit hash of a path (a false match is about one in 10^8 for a
/// million names).
fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_destinations_take_every_key() {
        let mut t = Twins::new(Folding::Exact);
        assert_eq!(t.take("Case.txt", false), Ok(()));
        assert_eq!(t.take("case.txt", false), Ok(()));
    }

    #[test]
    fn keys_differing_only_in_case_clash_after_the_first() {
        let mut t = Twins::new(Folding::Case);
        assert_eq!(t.take("Case.txt", false), Ok(()));
        assert_eq!(t.take("case.txt", false), Err(Clash::Name));
        assert_eq!(t.take_named("CASE.TXT", false).unwrap_err().winner, "Case.txt");
        assert_eq!(t.take("other.txt", false), Ok(()));
    }

    #[test]
    fn a_directory_spelled_two_ways_clashes_for_the_second_spelling() {
        let mut t = Twins::new(Folding::Case);
        assert_eq!(t.take("Docs", true), Ok(()));
        assert_eq!(t.take("Docs/a.txt", false), Ok(()));
        assert_eq!(
            t.take_named("docs/b.txt", false),
            Err(Twin {
                clash: Clash::Directory("docs".into()),
                winner: "Docs".into()
            })
        );
        assert_eq!(t.take("Docs/b.txt", false), Ok(()));
        // The same directory entry again is no clash; another spelling is.
        assert_eq!(t.take("Docs", true), Ok(()));
        assert_eq!(t.take("DOCS", true), Err(Clash::Name));
        // Directories seen only on a file's path count too.
        assert_eq!(t.take("x/Y/z", false), Ok(()));
        assert_eq!(t.take("X/y/w", false), Err(Clash::Directory("X".into())));
        assert_eq!(
            t.take_named("x/y/w", false).unwrap_err(),
            Twin {
                clash: Clash::Directory("x/y".into()),
                winner: "x/Y".into()
            }
        );
        // A file and a directory with one folded name clash, either way round.
        assert_eq!(t.take("x/y", false), Err(Clash::Name));
        assert_eq!(t.take("File", false), Ok(()));
        assert_eq!(
            t.take_named("file/inner", false).unwrap_err(),
            Twin {
                clash: Clash::Directory("file".into()),
                winner: "File".into()
            }
        );
    }

    #[test]
    fn normalisation_forms_clash_only_where_the_form_is_folded() {
        let nfc = "caf\u{e9}";
        let nfd = "cafe\u{301}";
        let mut case = Twins::new(Folding::Case);
        assert_eq!(case.take(nfc, false), Ok(()));
        assert_eq!(case.take(nfd, false), Ok(()));
        let mut both = Twins::new(Folding::CaseAndForm);
        assert_eq!(both.take(nfc, false), Ok(()));
        let upper = nfd.to_uppercase();
        assert_eq!(
            both.take_named(&upper, false).unwrap_err().winner,
            nfc,
            "the winner is spelled as it was"
        );
    }

    #[test]
    fn long_and_unmaskable_names_are_spelled_back_too() {
        let mut t = Twins::new(Folding::Case);
        let long = format!("{}.txt", "Ab".repeat(40));
        assert_eq!(t.take(&format!("D/{long}"), false), Ok(()));
        let twin = t.take_named(&format!("d/{}", long.to_lowercase()), false);
        assert_eq!(twin.unwrap_err().winner, "D");
        let twin = t.take_named(&format!("D/{}", long.to_uppercase()), false);
        assert_eq!(twin.unwrap_err().winner, format!("D/{long}"));
        assert_eq!(t.take("\u{3c2}", true), Ok(()));
        let twin = t.take_named("\u{3a3}/x", false).unwrap_err();
        assert_eq!(twin.winner, "\u{3c2}", "a directory spelled as text");
        assert_eq!(t.take("\u{3c2}/x", false), Ok(()));
    }

    #[test]
    fn letters_a_table_folds_unlike_to_lowercase_share_a_group() {
        // exFAT and NTFS take final and medial sigma for one name; without
        // asking, the group's verdict is a clash, never a merge.
        let mut t = Twins::new(Folding::Case);
        assert_eq!(t.take("\u{3c3}.txt", false), Ok(()));
        let twin = t.take_named("\u{3c2}.txt", false).unwrap_err();
        assert_eq!(twin.winner, "\u{3c3}.txt");
        // Title-case ǅ and ǆ share a group too (the destination may hold both).
        assert_eq!(t.take("\u{1c6}", false), Ok(()));
        assert_eq!(t.take("\u{1c5}", false), Err(Clash::Name));
    }

    #[test]
    fn spellings_round_trip_through_their_masks() {
        for name in [
            "Case.txt",
            "case",
            "ÉCOLE",
            "ǅ",
            "ς",
            "Straße",
            &"Ab".repeat(31),
            &"Ab".repeat(40),
            "İ",
        ] {
            let folded = Folding::Case.fold(name).unwrap();
            assert_eq!(Spelling::of(name, &folded).spell(&folded), name, "{name}");
        }
        assert!(matches!(
            Spelling::of("MiXeD", &Folding::Case.fold("MiXeD").unwrap()),
            Spelling::Mask(0b1_0101)
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_destination_asked_keeps_apart_what_it_holds_apart() {
        // A case-sensitive directory, taken to fold: it holds both spellings.
        let dir = tempfile::tempdir().unwrap();
        let judge = Judge::Dest {
            base: dir.path().to_path_buf(),
            windows_names: false,
        };
        let mut t = Twins::asking(Folding::Case, judge);
        assert_eq!(t.take("Case.txt", false), Ok(()));
        assert_eq!(t.take("case.txt", false), Ok(()));
        assert_eq!(t.take("Case.txt", false), Err(Clash::Name));
        assert_eq!(t.take("D/x", false), Ok(()));
        assert_eq!(t.take("d/x", false), Ok(()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probes left");
    }

    #[cfg(windows)]
    #[test]
    fn a_windows_destination_asked_takes_case_twins_for_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let judge = Judge::Dest {
            base: dir.path().to_path_buf(),
            windows_names: true,
        };
        let mut t = Twins::asking(Folding::Case, judge);
        assert_eq!(t.take("Case.txt", false), Ok(()));
        assert_eq!(t.take_named("case.txt", false).unwrap_err().winner, "Case.txt");
        // A name Windows refuses is asked under its stand-in.
        assert_eq!(t.take("A:b", false), Ok(()));
        assert_eq!(t.take("a:B", false), Err(Clash::Name));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probes left");
    }

    #[cfg(unix)]
    #[test]
    fn an_exfat_destination_decides_by_its_own_table() {
        let Some(root) = std::env::var_os("S3BACKUP_TEST_FOLDING_DIR") else {
            return;
        };
        let dir = tempfile::tempdir_in(root).unwrap();
        let judge = Judge::Dest {
            base: dir.path().to_path_buf(),
            windows_names: false,
        };
        let mut t = Twins::asking(Folding::Case, judge);
        assert_eq!(t.take("\u{3c3}", false), Ok(()));
        assert_eq!(t.take("\u{3c2}", false), Err(Clash::Name));
        assert_eq!(t.take("\u{1c5}", false), Ok(()));
        assert_eq!(t.take("\u{1c6}", false), Ok(()));
        assert_eq!(t.take("Case", false), Ok(()));
        assert_eq!(t.take("CASE", false), Err(Clash::Name));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probes left");
    }
}
