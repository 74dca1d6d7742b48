//! Shell completion scripts and man pages, generated from the clap
//! definitions in [`crate::cli::args`] so that they never drift from the options
//! the binary really takes (`s3backup completions SHELL`, `s3backup man`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use crate::cli::args::Cli;

/// The completion script of `shell` for `s3backup`, ready to be written out.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// The top-level man page, `s3backup(1)`, as roff.
pub fn man_page() -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    render(man_command(), &mut out).context("rendering the man page")?;
    Ok(out)
}

/// Writes `s3backup.1` and one page per subcommand (`s3backup-backup.1`,
/// `s3backup-snapshots-forget.1`, …) into `dir`, creating it if needed,
/// and returns the paths written, the top-level page last.
pub fn man_pages_to(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating '{}'", dir.display()))?;
    let mut written = Vec::new();
    write_pages(man_command(), dir, &mut written)?;
    Ok(written)
}

/// The command tree as the man pages show it: built, so that subcommands
/// carry their full names (`s3backup-backup`), and without clap's `help`
/// subcommand, which needs no page of its own.
fn man_command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    render(cmd, &mut page).with_context(|| format!("rendering the man page of {name}"))?;
    std::fs::write(&path, page).with_context(|| format!("writing '{}'", path.display()))?;
    written.push(path);
    Ok(())
}

/// Renders one page: clap_mangen's title, name, synopsis, description,
/// options and subcommands, then the `after_help` text as sections of its
/// own. clap_mangen would put that text in one EXTRA section and fill its
/// lines into a paragraph, running the examples together; here each
/// `Heading:` paragraph becomes a section (`Exit codes` becomes the usual
/// `EXIT STATUS`) with its lines kept as they are.
fn render(cmd: clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subcommands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let after_help = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(ToString::to_string);
    let has_version = cmd.get_version().is_some();
    let man = Man::new(cmd);
    // Each part clap_mangen writes opens with the same preamble: keep the first only.
    let preamble = Roff::new().render();
    let mut part = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| -> std::io::Result<()> {
        let mut buf = Vec::new();
        render(&mut buf)?;
        let body = if out.is_empty() {
            &buf[..]
        } else {
            buf.strip_prefix(preamble.as_bytes()).unwrap_or(&buf[..])
        };
        out.write_all(body)
    };
    part(&|w| man.render_title(w))?;
    part(&|w| man.render_name_section(w))?;
    part(&|w| man.render_synopsis_section(w))?;
    part(&|w| man.render_description_section(w))?;
    if has_options {
        part(&|w| man.render_options_section(w))?;
    }
    if has_subcommands {
        part(&|w| man.render_subcommands_section(w))?;
    }
    if let Some(text) = after_help {
        let sections = after_help_sections(&text);
        part(&|w| sections.to_writer(w))?;
    }
    if has_version {
        part(&|w| man.render_version_section(w))?;
    }
    Ok(())
}

/// Turns `Heading:\n  line\n  line\n\nHeading:\n…` into roff sections with
/// unfilled bodies; a paragraph without a heading line goes under NOTES.
fn after_help_sections(text: &str) -> Roff {
    let mut roff = Roff::new();
    for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let mut lines = paragraph.lines();
        let first = lines.next().unwrap_or_default();
        let (heading, body): (String, Vec<&str>) = match first.strip_suffix(':') {
            Some(h) if !first.starts_with(' ') => (h.to_uppercase(), lines.collect()),
            _ => ("NOTES".to_owned(), paragraph.lines().collect()),
        };
        let heading = if heading == "EXIT CODES" {
            "EXIT STATUS".to_owned()
        } else {
            heading
        };
        roff.control("SH", [heading.as_str()]);
        roff.control("nf", []);
        for line in body {
            roff.text([roman(line.strip_prefix("  ").unwrap_or(line))]);
        }
        roff.control("fi", []);
    }
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_has_examples_and_exit_status_sections() {
        let page = String::from_utf8(man_page().unwrap_or_default()).unwrap_or_default();
        assert!(page.contains(".TH s3backup 1"), "{page}");
        assert!(page.contains(".SH EXAMPLES"), "{page}");
        assert!(
            page.contains(".SH \"EXIT STATUS\"") || page.contains(".SH EXIT STATUS"),
            "{page}"
        );
        assert_eq!(
            page.matches(".ds Aq").count(),
            2,
            "one preamble (two lines)\n{page}"
        );
    }

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let script = String::from_utf8(completions(shell)).unwrap_or_default();
            for sub in ["backup", "restore", "snapshots", "completions"] {
                assert!(script.contains(sub), "{shell}: {sub}");
            }
        }
    }
}
