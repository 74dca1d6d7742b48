//! `--metrics-file`: the run's metrics in the Prometheus text exposition
//! format (version 0.0.4, <https://prometheus.io/docs/instrumenting/exposition_formats/>),
//! written the way node_exporter's textfile collector asks: to a
//! temporary file in the same directory, then renamed over FILE, so the
//! collector never reads half a file. The file is readable by everyone
//! (mode 0644 on Unix): the collector usually runs as another user.
//!
//! Every series carries the run's `command`, `set` and `target` labels. A
//! failed run cannot know when the last success was, so
//! `s3backup_last_success_timestamp_seconds` is carried over from the
//! file's previous contents (same labels); one file per job keeps that
//! simple, and is what the collector expects anyway.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::Facts;

/// The metric carried over from the previous file when a run fails.
const LAST_SUCCESS: &str = "s3backup_last_success_timestamp_seconds";

/// One run's metrics.
#[derive(Debug, Clone)]
pub(super) struct Run {
    /// `(name, value)` labels of every series, in order.
    pub labels: Vec<(&'static str, String)>,
    /// When the run ended, in seconds since the Unix epoch.
    pub ended: f64,
    /// Wall time of the run, in seconds.
    pub duration: f64,
    /// The exit code.
    pub exit_code: u8,
    /// Whether the run succeeded (exit 0).
    pub success: bool,
    /// What it did.
    pub facts: Facts,
}

/// Writes `run`'s metrics to `file`, atomically.
///
/// # Errors
/// The temporary file could not be created, written or renamed.
pub(super) fn write(file: &Path, run: &Run) -> std::io::Result<()> {
    let labels = label_text(&run.labels, None);
    let last_success = if run.success {
        Some(run.ended)
    } else {
        previous_success(file, &labels)
    };
    let text = render(run, last_success);
    // A link (into a collector's directory, say) is written through.
    let resolved;
    let file = if file.is_symlink() {
        resolved = std::fs::canonicalize(file)?;
        resolved.as_path()
    } else {
        file
    };
    if file.exists() && !file.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is no longer a regular file",
        ));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("its directory {} no longer exists", dir.display()),
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".s3backup-metrics-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create a file in {}: {}", dir.display(), plain(&e)),
            )
        })?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// An I/O error's own words, without the path tempfile adds to them.
fn plain(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.kind().to_string(),
    }
}

/// The file's text: `# HELP` and `# TYPE` lines, then the samples.
fn render(run: &Run, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let base = label_text(&run.labels, None);
    let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: String| vec![(base.clone(), v)];
    gauge(
        "s3backup_last_run_timestamp_seconds",
        "When the last run ended, in seconds since the Unix epoch.",
        &one(format_float(run.ended)),
    );
    if let Some(t) = last_success {
        gauge(
            LAST_SUCCESS,
            "When the last run that ended with exit 0 ended, in seconds since the Unix epoch.",
            &one(format_float(t)),
        );
    }
    gauge(
        "s3backup_last_run_duration_seconds",
        "Wall time of the last run.",
        &one(format_float(run.duration)),
    );
    gauge(
        "s3backup_last_run_exit_code",
        "Exit code of the last run (0 ok, 1 error, 2 usage, 3 some files failed, 130/143 interrupted).",
        &one(run.exit_code.to_string()),
    );
    gauge(
        "s3backup_last_run_success",
        "1 if the last run ended with exit 0, else 0.",
        &one(u8::from(run.success).to_string()),
    );
    let by = |label: &'static str, values: &[(&'static str, u64)]| -> Vec<(String, String)> {
        values
            .iter()
            .map(|(name, n)| (label_text(&run.labels, Some((label, name))), n.to_string()))
            .collect()
    };
    let groups = [
        (
            "s3backup_last_run_files",
            "Files of the last run by outcome.",
            "outcome",
            &run.facts.files,
        ),
        (
            "s3backup_last_run_bytes",
            "Bytes of the last run by direction.",
            "direction",
            &run.facts.bytes,
        ),
        (
            "s3backup_last_run_requests",
            "Requests the last run sent to the store, by kind.",
            "kind",
            &run.facts.requests,
        ),
    ];
    for (name, help, label, values) in groups {
        if !values.is_empty() {
            gauge(name, help, &by(label, values));
        }
    }
    out
}

/// `{a="x",b="y"}`, with `extra` appended, values escaped as the format
/// says (backslash, double quote and line feed).
fn label_text(labels: &[(&'static str, String)], extra: Option<(&str, &str)>) -> String {
    let escape = |v: &str| v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n");
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{}\"", escape(v)));
    }
    format!("{{{}}}", parts.join(","))
}

/// A float as the format writes it: plain decimal, no exponent for
/// whole seconds, millisecond precision.
fn format_float(v: f64) -> String {
    format!("{v:.3}")
}

/// The last success time the file already holds for these labels, if any
/// (a missing or unreadable file has none).
fn previous_success(file: &Path, labels: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    let prefix = format!("{LAST_SUCCESS}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(success: bool) -> Run {
        Run {
            labels: vec![
                ("command", "backup".into()),
                ("set", "do\"cs".into()),
                ("target", "s3://b/p\\q".into()),
            ],
            ended: 1_700_000_000.5,
            duration: 2.25,
            exit_code: if success { 0 } else { 3 },
            success,
            facts: Facts {
                snapshot: None,
                files: vec![("uploaded", 2), ("failed", 1)],
                bytes: vec![("sent", 10)],
                requests: Vec::new(),
            },
        }
    }

    #[test]
    fn renders_escaped_labels_and_carries_the_last_success_over() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.prom");
        write(&file, &run(true)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let l = r#"{command="backup",set="do\"cs",target="s3://b/p\\q"}"#;
        assert!(
            text.contains(&format!("{LAST_SUCCESS}{l} 1700000000.500\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "s3backup_last_run_files{} 1\n",
            &l.replace('}', ",outcome=\"failed\"}")
        )));
        assert!(!text.contains("s3backup_last_run_requests"));
        let mut failed = run(false);
        failed.ended = 1_700_000_100.0;
        write(&file, &failed).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(&format!("{LAST_SUCCESS}{l} 1700000000.500\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "s3backup_last_run_timestamp_seconds{l} 1700000100.000\n"
        )));
        assert!(text.contains(&format!("s3backup_last_run_exit_code{l} 3\n")));
        // Only FILE is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
