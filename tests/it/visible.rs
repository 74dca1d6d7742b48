//! File names holding control characters (an escape sequence, a line
//! break) are printed escaped in human output, so a hostile name in a
//! backed-up tree can neither drive the terminal nor pass for another line;
//! `--json` keeps them exact.

use crate::common::*;

const EVIL: &str = "evil\u{1b}[31mred\nerror: fake line";

#[test]
fn names_with_control_characters_are_printed_escaped() {
    let env = TestEnv::new();
    env.write(EVIL, "x");
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    let shown = "evil\\x1b[31mred\\nerror: fake line";

    let r = env.backup(&target, &["--dry-run"]);
    r.expect_code(0);
    assert!(r.stdout.contains(&format!("upload {shown}")), "{}", r.stdout);
    assert!(!r.stdout.contains('\u{1b}'), "{}", r.stdout);
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("error: fake")),
        "{}",
        r.stdout
    );

    env.backup_ok(&target, &[]);
    let mut cmd = env.cmd();
    cmd.args(["state", "files", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert!(r.stdout.contains(shown), "{}", r.stdout);
    assert!(!r.stdout.contains('\u{1b}'), "{}", r.stdout);

    // JSON keeps the name exact.
    let mut cmd = env.cmd();
    cmd.args(["state", "files", "--json", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert!(
        r.stdout.contains(r#"evil\u001b[31mred\nerror: fake line"#),
        "{}",
        r.stdout
    );
}

/// A C1 control (U+009B is a one-character escape sequence introducer on
/// some terminals) is raw in JSON text; `--json` output escapes it as
/// `\u009b`, so every line parses back to the exact name.
#[test]
fn json_output_escapes_c1_controls_and_parses_back_to_the_name() {
    let env = TestEnv::new();
    let name = "c1\u{9b}31mx";
    env.write(name, "x");
    let store = env.root().join("store");
    let target = store.to_str().unwrap().to_owned();
    let s = env.backup_ok(&target, &[]);
    assert_eq!(s.uploaded, 1);
    let mut cmd = env.cmd();
    cmd.args(["state", "files", "--json", "--state"]).arg(&env.state);
    let r = run(cmd);
    r.expect_code(0);
    assert!(!r.stdout.contains('\u{9b}'), "{}", r.stdout);
    let paths: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("state files --json does not parse: {e}\n{l}"));
            row["path"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(paths, [name]);
}
