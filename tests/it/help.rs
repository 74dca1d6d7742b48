//! Help and integration: `s3backup completions SHELL` prints a script that
//! names the subcommands, an unknown shell is a usage error, `s3backup man`
//! prints a roff page (and `man --all DIR` one page per subcommand), every
//! `--help` in the command tree shows examples, and neither help nor
//! errors carry ANSI colours when the output is a pipe, with or without
//! `NO_COLOR` (and even with `CLICOLOR_FORCE`).

use clap::CommandFactory;

use crate::common::*;

/// An ANSI escape sequence (colour, bold, …) starts with this.
const ANSI: &str = "\x1b[";

/// Every command path of the CLI, from `[]` (the top level) down to
/// `["snapshots", "forget"]` and `["state", "rebuild"]`, read from the
/// same clap definitions the binary parses with.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            walk(sub, p, out);
        }
        out.push(path);
    }
    let mut out = Vec::new();
    walk(&s3backup::cli::args::Cli::command(), Vec::new(), &mut out);
    out
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_subcommands() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = run({
            let mut cmd = env.cmd();
            cmd.args(["completions", shell]);
            cmd
        });
        r.expect_code(0);
        assert!(!r.stdout.trim().is_empty(), "{shell}: empty script\n{}", r.show());
        for word in [
            "backup",
            "restore",
            "snapshots",
            "verify",
            "state",
            "forget",
            "dry-run",
        ] {
            assert!(r.stdout.contains(word), "{shell}: {word} missing\n{}", r.show());
        }
        assert!(r.stderr.is_empty(), "{shell}: stderr\n{}", r.show());
    }
}

#[test]
fn bash_completion_script_loads_in_bash() {
    let env = TestEnv::new();
    let r = run({
        let mut cmd = env.cmd();
        cmd.args(["completions", "bash"]);
        cmd
    });
    r.expect_code(0);
    let script = env.root().join("s3backup.bash");
    std::fs::write(&script, &r.stdout).unwrap();
    let Ok(out) = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p s3backup", script.display()))
        .output()
    else {
        println!("skipped: no bash to load the script in");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bash could not load it: {out:?}");
    assert!(text.contains("s3backup"), "{text}");
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let env = TestEnv::new();
    let r = run({
        let mut cmd = env.cmd();
        cmd.args(["completions", "tcsh"]);
        cmd
    });
    r.expect_code(2);
    assert!(r.stdout.is_empty(), "{}", r.show());
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains("tcsh"),
        "{}",
        r.show()
    );
    assert!(r.stderr.contains("bash"), "lists the shells\n{}", r.show());
}

#[test]
fn man_prints_a_roff_page() {
    let env = TestEnv::new();
    let r = run({
        let mut cmd = env.cmd();
        cmd.arg("man");
        cmd
    });
    r.expect_code(0);
    let page = &r.stdout;
    assert!(
        page.starts_with(".TH") || page.starts_with(".ie"),
        "not roff\n{}",
        r.show()
    );
    assert!(page.contains(".TH s3backup 1"), "{}", r.show());
    for needle in [
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        "backup",
        "restore",
        ".SH EXAMPLES",
        "EXIT STATUS",
    ] {
        assert!(page.contains(needle), "{needle} missing\n{}", r.show());
    }
}

#[test]
fn man_all_writes_one_page_per_subcommand() {
    let env = TestEnv::new();
    let dir = env.root().join("man1");
    let r = run({
        let mut cmd = env.cmd();
        cmd.args(["man", "--all"]).arg(&dir);
        cmd
    });
    r.expect_code(0);
    for path in command_paths() {
        let name = std::iter::once("s3backup".to_owned())
            .chain(path)
            .collect::<Vec<_>>()
            .join("-");
        let page = std::fs::read_to_string(dir.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}\n{}", r.show()));
        assert!(page.contains(&format!(".TH {name} 1")), "{name}.1\n{page}");
        assert!(page.contains(".SH EXAMPLES"), "{name}.1 has no examples\n{page}");
    }
    assert!(!dir.join("s3backup-help.1").exists(), "no page for clap's help");
}

#[test]
fn every_help_shows_examples() {
    let env = TestEnv::new();
    let paths = command_paths();
    // The tree as the issue names it, so that a walk finding less fails.
    for expected in [
        "backup",
        "restore",
        "snapshots",
        "snapshots forget",
        "verify",
        "state",
        "state sets",
        "state files",
        "state show",
        "state runs",
        "state stats",
        "state rebuild",
        "completions",
        "man",
    ] {
        assert!(
            paths.iter().any(|p| p.join(" ") == expected),
            "{expected} not in {paths:?}"
        );
    }
    for path in paths {
        for flag in ["--help", "-h"] {
            let r = run({
                let mut cmd = env.cmd();
                cmd.args(&path).arg(flag);
                cmd
            });
            r.expect_code(0);
            assert!(
                r.stdout.contains("Examples:\n  s3backup "),
                "s3backup {} {flag}: no examples\n{}",
                path.join(" "),
                r.show()
            );
        }
    }
}

#[test]
fn top_level_help_documents_exit_codes_and_verbosity() {
    let env = TestEnv::new();
    let r = run({
        let mut cmd = env.cmd();
        cmd.arg("--help");
        cmd
    });
    r.expect_code(0);
    for needle in [
        "Exit codes:",
        "0  ok",
        "1  error",
        "2  usage error",
        "3  partial",
        "-vv",
        "-q",
        "RUST_LOG",
        "NO_COLOR",
    ] {
        assert!(r.stdout.contains(needle), "{needle} missing\n{}", r.show());
    }
}

#[test]
fn no_colour_in_piped_help_or_errors() {
    let env = TestEnv::new();
    let invocations: [&[&str]; 6] = [
        &["--help"],
        &["backup", "--help"],
        &["backup"],
        &["completions", "tcsh"],
        &["--no-such-flag"],
        &[],
    ];
    // NO_COLOR=1 (set by `s3backup()`), unset, and unset with CLICOLOR_FORCE:
    // a pipe gets no colours in any case.
    for (label, no_color, force) in [
        ("NO_COLOR=1", true, false),
        ("no NO_COLOR", false, false),
        ("CLICOLOR_FORCE=1", false, true),
    ] {
        for args in invocations {
            let r = run({
                let mut cmd = env.cmd();
                if !no_color {
                    cmd.env_remove("NO_COLOR");
                }
                if force {
                    cmd.env("CLICOLOR_FORCE", "1");
                }
                cmd.args(args);
                cmd
            });
            assert!(matches!(r.code, Some(0 | 2)), "{label} {args:?}\n{}", r.show());
            assert!(
                !r.stdout.contains(ANSI) && !r.stderr.contains(ANSI),
                "{label} {args:?}: ANSI escape in piped output\n{}",
                r.show()
            );
            assert!(
                !(r.stdout.trim().is_empty() && r.stderr.trim().is_empty()),
                "{label} {args:?}: nothing printed\n{}",
                r.show()
            );
        }
    }
}

#[test]
fn no_colour_in_piped_log_lines() {
    let env = TestEnv::new();
    // A run that fails at once with a logged error: a missing source.
    let r = run({
        let mut cmd = env.cmd();
        cmd.env_remove("NO_COLOR")
            .env("CLICOLOR_FORCE", "1")
            .args(["-vv", "backup", "no-such-dir"])
            .arg(env.root().join("store"));
        cmd
    });
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(!r.stderr.contains(ANSI), "ANSI in log lines\n{}", r.show());
}
