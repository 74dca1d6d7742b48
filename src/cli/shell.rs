//! `s3backup shell`: the seed program's way of working, kept: commands
//! typed at a prompt (`backup DIR bucket::prefix`, `restore bucket::prefix
//! DIR`, `snapshots TARGET`, …, `help`, `exit`), each parsed exactly like
//! the same words on the command line and run by [`crate::cli::run`].
//!
//! Connection options given to the shell itself (`s3backup shell
//! --endpoint-url URL --profile P --region R --path-style`) apply to every
//! command typed in it that talks to a store, as `--state` does; a command
//! that gives one of them itself uses its own. For `backup --set NAME`
//! they count as given on that command line.
//!
//! `-v`, `-vv` or `-q` typed on a line sets the log level for that line
//! (the shell's own `-v` counts too: `s3backup -v shell` and a line's `-v`
//! make `-vv`); the shell's level comes back after it.
//!
//! On a terminal the prompt has line editing and a history file (beside the
//! state file); piped input is read line by line with no prompt, so a
//! script of commands can be fed to it. A failing command prints its error
//! and the shell goes on; the shell's exit code is the last command's.

use std::io::BufRead;
use std::path::PathBuf;

use crate::cli::args::{Cli, Command, S3Args, ShellArgs, SnapshotsAction, StateAction};
use crate::cli::output::outln;
use crate::cli::{self, Exit, exit};

/// The prompt.
const PROMPT: &str = "s3backup> ";

/// What `help` prints.
const HELP: &str = "\
Commands (the same words and options as on the command line):
  backup SOURCE TARGET [OPTIONS]     back up a directory (or: backup --set NAME)
  restore TARGET DEST [OPTIONS]      restore a backup into DEST
  snapshots TARGET                   list the snapshots of a backup
  snapshots diff|ls|find TARGET ...  compare, list or search snapshots
  verify TARGET [--deep]             check the bucket holds a snapshot
  sets                               the backup sets in the state file
  state sets|files|runs|stats|show   inspect the state file
  help [COMMAND]                     this list, or a command's options
  exit                               leave (also quit, or end of input)
TARGET is bucket::prefix, s3://bucket/prefix or a local directory.
--endpoint-url, --profile, --region and --path-style given to 'shell' apply
to every command; a command may give its own.";

/// The global flags the shell was started with, given to every command.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShellContext {
    /// `--state FILE`.
    pub(crate) state: Option<PathBuf>,
    /// `-q`.
    pub(crate) quiet: bool,
    /// `-v` count.
    pub(crate) verbose: u8,
    /// `--endpoint-url`, `--profile`, `--region`, `--path-style`.
    pub(crate) s3: ShellArgs,
}

impl ShellContext {
    fn global_args(&self) -> Vec<String> {
        let mut args = vec!["s3backup".to_string()];
        if let Some(state) = &self.state {
            args.push("--state".into());
            args.push(state.to_string_lossy().into_owned());
        }
        if self.quiet {
            args.push("-q".into());
        }
        if self.verbose > 0 {
            args.push(format!("-{}", "v".repeat(usize::from(self.verbose))));
        }
        args
    }

    /// Gives the shell's connection options to a command that talks to a
    /// store, where the command line typed did not give its own. For
    /// `backup` they count as typed (see [`crate::cli::matches::Given`]),
    /// so they win over a named set's saved ones as on the command line.
    fn fill(&self, cli: &mut Cli) {
        let s3 = match &mut cli.command {
            Command::Backup(a) => {
                for id in self.fill_s3(&mut a.s3) {
                    a.given.mark(id);
                }
                return;
            }
            Command::Restore(a) => &mut a.s3,
            Command::Verify(a) => &mut a.s3,
            Command::Snapshots(a) => match &mut a.action {
                Some(SnapshotsAction::Forget(f)) => &mut f.s3,
                Some(SnapshotsAction::Diff(d)) => &mut d.s3,
                Some(SnapshotsAction::Ls(l)) => &mut l.s3,
                Some(SnapshotsAction::Find(f)) => &mut f.s3,
                Some(SnapshotsAction::Prune(p)) => &mut p.s3,
                None => &mut a.s3,
            },
            Command::State(StateAction::Rebuild { s3, .. }) => s3,
            _ => return,
        };
        self.fill_s3(s3);
    }

    /// Fills in `s3` what the shell was given and the line was not; returns
    /// the clap ids of the options it filled.
    fn fill_s3(&self, s3: &mut S3Args) -> Vec<&'static str> {
        let given = &self.s3;
        let mut filled = Vec::new();
        let mut fill = |id, slot: &mut Option<String>, value: &Option<String>| {
            if slot.is_none() && value.is_some() {
                slot.clone_from(value);
                filled.push(id);
            }
        };
        fill("profile", &mut s3.profile, &given.profile);
        fill("region", &mut s3.region, &given.region);
        fill("endpoint_url", &mut s3.endpoint_url, &given.endpoint_url);
        // A line's own --no-path-style wins over the shell's --path-style.
        if given.path_style && !s3.path_style && !s3.no_path_style {
            s3.path_style = true;
            filled.push("path_style");
        }
        filled
    }
}

/// What one line asked for.
enum Line {
    /// Nothing to do (blank, a comment, or an error already printed).
    Nothing(Exit),
    /// Leave the shell.
    Exit,
    /// Run this command line.
    Run(Box<Cli>),
}

/// Parses one line of input.
fn parse(ctx: &ShellContext, text: &str) -> Line {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Line::Nothing(Exit::Ok);
    }
    let words = match shell_words::split(text) {
        Ok(w) => w,
        Err(e) => {
            crate::cli::output::errln!("error: cannot split the line into words: {e}");
            return Line::Nothing(Exit::Usage);
        }
    };
    match words.first().map(String::as_str) {
        Some("exit" | "quit") => return Line::Exit,
        Some("help" | "?") if words.len() == 1 => {
            // A closed stdout is no reason to stop reading commands.
            let _ = outln!("{HELP}");
            return Line::Nothing(Exit::Ok);
        }
        Some("shell") => {
            crate::cli::output::errln!("error: already in the shell");
            return Line::Nothing(Exit::Usage);
        }
        _ => {}
    }
    let mut args = ctx.global_args();
    if words[0] == "help" {
        // `help backup` → `backup --help`.
        args.extend(words[1..].iter().cloned());
        args.push("--help".into());
    } else {
        args.extend(words);
    }
    match crate::cli::matches::try_parse_from(&args) {
        Ok(mut cli) => {
            ctx.fill(&mut cli);
            Line::Run(Box::new(cli))
        }
        Err(e) => {
            let _ = e.print();
            Line::Nothing(exit::of_clap(&e))
        }
    }
}

/// Runs one parsed line; errors are printed, the shell goes on.
fn run_line(ctx: &ShellContext, text: &str) -> Option<Exit> {
    match parse(ctx, text) {
        Line::Exit => None,
        Line::Nothing(code) => Some(code),
        Line::Run(cli) => {
            // The line's own -v/-vv/-q (added to the shell's) hold for it only.
            let own_level = (cli.quiet, cli.verbose) != (ctx.quiet, ctx.verbose);
            if own_level {
                crate::cli::startup::set_log_level(cli.quiet, cli.verbose);
            }
            let code = exit::report(cli::run(*cli));
            if own_level {
                crate::cli::startup::set_log_level(ctx.quiet, ctx.verbose);
            }
            Some(code)
        }
    }
}

/// The shell's history file: beside the state file.
fn history_path(ctx: &ShellContext) -> Option<PathBuf> {
    let state = ctx.state.clone().or_else(crate::state::StateDb::default_path)?;
    Some(state.parent()?.join("shell-history"))
}

/// Runs the shell until `exit` or the end of input.
pub(crate) fn run(ctx: ShellContext) -> anyhow::Result<Exit> {
    let mut last = Exit::Ok;
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            match run_line(&ctx, &line) {
                Some(code) => last = code,
                None => break,
            }
        }
        return Ok(last);
    }
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = history_path(&ctx);
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let _ = outln!(
        "s3backup {} shell: 'help' lists the commands, 'exit' leaves.",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match run_line(&ctx, &line) {
                    Some(code) => last = code,
                    None => break,
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_line(ctx: &ShellContext, line: &str) -> crate::cli::args::BackupArgs {
        match parse(ctx, line) {
            Line::Run(cli) => match cli.command {
                Command::Backup(a) => *a,
                _ => unreachable!(),
            },
            _ => panic!("not a command: {line}"),
        }
    }

    #[test]
    fn the_shells_options_count_as_typed_unless_the_line_gives_its_own() {
        let ctx = ShellContext {
            s3: ShellArgs {
                endpoint_url: Some("http://127.0.0.1:9".into()),
                path_style: true,
                ..ShellArgs::default()
            },
            ..ShellContext::default()
        };
        let a = backup_line(&ctx, "backup --set x");
        assert_eq!(a.s3.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
        assert!(a.given.has("endpoint_url") && a.given.has("path_style") && a.s3.path_style);
        assert!(!a.given.has("region"));
        let a = backup_line(
            &ctx,
            "backup --set x --endpoint-url http://127.0.0.1:8 --no-path-style",
        );
        assert_eq!(a.s3.endpoint_url.as_deref(), Some("http://127.0.0.1:8"));
        assert!(!a.s3.path_style && !a.given.has("path_style"));
    }
}
