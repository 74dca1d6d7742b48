//! What the command line said beyond the values clap's derive keeps:
//! which options were typed, and the order the filters were typed in.
//!
//! - A named set's saved options yield to every option typed on the
//!   command line, even one typed with its default value (`--jobs 16`
//!   over a saved 4). Only clap's `ArgMatches::value_source` tells a
//!   typed value from a default, so the ids of the typed options are kept
//!   as [`Given`] in `BackupArgs::given`.
//! - The last matching filter decides (see [`crate::fs::filter`]), so the
//!   filters are kept in command-line order as `FilterArgs::rules`; clap
//!   gives each option's values apart and their positions in
//!   `ArgMatches::indices_of`.
//!
//! Both are read from the matches before `from_arg_matches_mut` takes the
//! values out of them. `main.rs` and the shell parse through [`parse`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::args::{Cli, Command, FilterArgs};
use crate::fs::filter::Rule;

/// The ids (clap's, the field names: `jobs`, `no_delete`, `endpoint_url`)
/// of the options typed on a `backup` command line; not those that hold a
/// default or come from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given(BTreeSet<String>);

impl Given {
    /// Whether the option with clap id `id` was typed.
    pub fn has(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    /// Counts the option with clap id `id` as typed: the shell's own
    /// connection options count as typed on each command line in it.
    pub(crate) fn mark(&mut self, id: &str) {
        self.0.insert(id.to_string());
    }

    /// The typed options among `matches`' arguments.
    fn of(matches: &ArgMatches) -> Self {
        Self(
            matches
                .ids()
                .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.as_str().to_string())
                .collect(),
        )
    }
}

/// Turns matches into a [`Cli`], keeping what the derive would drop (see
/// the module doc).
///
/// # Errors
/// clap's error if the matches do not fit the [`Cli`] types.
pub fn parse(mut matches: ArgMatches) -> Result<Cli, clap::Error> {
    let sub = matches
        .subcommand()
        .map(|(_, m)| (Given::of(m), ordered_rules(m)));
    let mut cli = Cli::from_arg_matches_mut(&mut matches)?;
    if let Some((given, rules)) = sub {
        match &mut cli.command {
            Command::Backup(args) => {
                args.given = given;
                args.filters.rules = rules;
            }
            Command::Restore(args) => args.filters.rules = rules,
            _ => {}
        }
    }
    Ok(cli)
}

/// Parses the words of a command line (the program's name first), as
/// `Cli::try_parse_from` would, through [`parse`].
///
/// # Errors
/// clap's error for a command line it refuses (or a help request).
pub fn try_parse_from<I, T>(words: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::command().try_get_matches_from(words).and_then(parse)
}

/// The filters of a subcommand's matches in command-line order (empty if
/// it has none).
fn ordered_rules(m: &ArgMatches) -> Vec<Rule> {
    let mut at: Vec<(usize, Rule)> = Vec::new();
    let mut take = |id: &str, make: &dyn Fn(&str) -> Rule| {
        // `try_get_raw` first: `indices_of` panics on an id the subcommand lacks.
        let Ok(Some(values)) = m.try_get_raw(id) else {
            return;
        };
        let Some(indices) = m.indices_of(id) else {
            return;
        };
        for (value, index) in values.zip(indices) {
            at.push((index, make(&value.to_string_lossy())));
        }
    };
    take("exclude", &|v| Rule::Exclude(v.to_string()));
    take("include", &|v| Rule::Include(v.to_string()));
    take("exclude_from", &|v| Rule::ExcludeFrom(PathBuf::from(v)));
    at.sort_by_key(|(index, _)| *index);
    at.into_iter().map(|(_, rule)| rule).collect()
}

/// The filters of `args` in the order they were typed; for a `FilterArgs`
/// not made by [`parse`], excludes, then `--exclude-from` files, then
/// includes (the order in which `--include` wins).
pub fn rules(args: &FilterArgs) -> Vec<Rule> {
    if !args.rules.is_empty() {
        return args.rules.clone();
    }
    args.exclude
        .iter()
        .cloned()
        .map(Rule::Exclude)
        .chain(args.exclude_from.iter().cloned().map(Rule::ExcludeFrom))
        .chain(args.include.iter().cloned().map(Rule::Include))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(words: &[&str]) -> crate::cli::args::BackupArgs {
        let all = [&["s3backup", "backup"][..], words].concat();
        match try_parse_from(all).unwrap().command {
            Command::Backup(args) => *args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn typed_options_are_told_from_defaults() {
        let a = backup(&["s", "/t", "--jobs", "16", "--delete"]);
        assert!(a.given.has("jobs") && a.given.has("delete"));
        assert!(!a.given.has("part_size") && !a.given.has("no_delete"));
        // The later of a flag and its --no- twin is the one given.
        let a = backup(&["s", "/t", "--delete", "--no-delete"]);
        assert!(a.given.has("no_delete") && !a.given.has("delete") && !a.delete);
        let a = backup(&["s", "/t", "--no-delete", "--delete"]);
        assert!(a.given.has("delete") && !a.given.has("no_delete") && a.delete);
    }

    #[test]
    fn filters_keep_their_order() {
        let a = backup(&[
            "s",
            "/t",
            "--include",
            "*.txt",
            "--exclude-from",
            "list",
            "--exclude",
            "*",
            "--include",
            "keep",
        ]);
        assert_eq!(
            a.filters.rules,
            [
                Rule::Include("*.txt".into()),
                Rule::ExcludeFrom("list".into()),
                Rule::Exclude("*".into()),
                Rule::Include("keep".into()),
            ]
        );
    }
}
