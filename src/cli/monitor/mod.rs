//! Telling someone how an unattended run went: `--metrics-file` writes the
//! run's metrics in the Prometheus text format (for node_exporter's
//! textfile collector, [`metrics`]), and `--on-success` / `--on-failure`
//! run a command with the outcome in its environment (the usual way to
//! ping a health-check service or send mail, [`hooks`]).
//!
//! A command fills a [`Watch`] as it goes (the settings once a named set
//! is applied, what it backs up where, what the run did), and
//! [`Watch::finish`] acts on the outcome once the run is over, whether it
//! ended with an exit code or an error: metrics first (so a hook can ship
//! them), then the hook. A dry run does neither: it is not a backup.

mod hooks;
mod metrics;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::cli::Exit;
use crate::cli::args::MonitorArgs;
use crate::cli::exit::usage;

/// Stops the hook that runs now, if any (see `hooks`): for the exit a
/// second Ctrl-C or SIGTERM makes.
pub(crate) fn stop_hook() {
    hooks::stop_running();
}

/// What a finished run did, by name, for the metrics file and the hooks.
/// Names are lowercase words (`uploaded`, `sent`, `put`): they become
/// label values and, uppercased, environment variable names.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The snapshot the run wrote or checked, if any.
    pub snapshot: Option<String>,
    /// Files by outcome (`uploaded`, `unchanged`, `failed`, …).
    pub files: Vec<(&'static str, u64)>,
    /// Bytes by direction (`sent`, `received`, `checked`).
    pub bytes: Vec<(&'static str, u64)>,
    /// Requests sent to the store by kind (`list`, `put`, …).
    pub requests: Vec<(&'static str, u64)>,
}

impl Facts {
    /// Facts with the run's requests by kind and `bytes` followed by the
    /// requests' body bytes (`network_out`, `network_in`); the snapshot
    /// and files left empty for the caller to fill.
    pub(crate) fn with_requests(
        r: &crate::store::RequestCounts,
        mut bytes: Vec<(&'static str, u64)>,
    ) -> Self {
        bytes.extend([("network_out", r.bytes_sent), ("network_in", r.bytes_received)]);
        Facts {
            snapshot: None,
            files: Vec::new(),
            bytes,
            requests: r.kinds().to_vec(),
        }
    }
}

/// How a run ended, in the words the metrics and the hooks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 3: some files failed, the rest were done.
    Partial,
    /// Stopped by Ctrl-C or SIGTERM (exit 130 or 143).
    Interrupted,
    /// Any other exit code.
    Failure,
}

impl Outcome {
    /// The outcome of an exit code.
    pub(crate) fn of(exit: Exit) -> Self {
        match exit {
            Exit::Ok => Outcome::Success,
            Exit::Partial => Outcome::Partial,
            Exit::Interrupted | Exit::Terminated => Outcome::Interrupted,
            Exit::Error | Exit::Usage => Outcome::Failure,
        }
    }

    /// The word (`S3BACKUP_OUTCOME`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Interrupted => "interrupted",
            Outcome::Failure => "failure",
        }
    }
}

/// The monitoring settings in force, with empty values (which drop a
/// saved one) taken out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Settings {
    metrics_file: Option<PathBuf>,
    on_success: Option<String>,
    on_failure: Option<String>,
}

impl Settings {
    fn of(args: &MonitorArgs) -> Self {
        Settings {
            metrics_file: args.metrics_file.clone().filter(|p| !p.as_os_str().is_empty()),
            on_success: args.on_success.clone().filter(|c| !c.trim().is_empty()),
            on_failure: args.on_failure.clone().filter(|c| !c.trim().is_empty()),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Settings::default()
    }
}

/// One run, watched from its command line to its exit code.
#[derive(Debug)]
pub(crate) struct Watch {
    /// `backup` or `verify`.
    command: &'static str,
    settings: Settings,
    started: Instant,
    /// The set's name, if the run has one.
    set: Option<String>,
    /// TARGET as text, once known.
    target: Option<String>,
    /// SOURCE, for a backup, once known.
    source: Option<PathBuf>,
    dry_run: bool,
    facts: Option<Facts>,
    /// The first error line the command printed itself (a run that ends
    /// with an exit code rather than an error), for `S3BACKUP_ERROR`.
    error: Option<String>,
}

impl Watch {
    /// Starts watching a run of `command` with the settings typed on its
    /// command line (a named set's come in with [`Self::configure`]).
    pub(crate) fn new(command: &'static str, typed: &MonitorArgs) -> Self {
        Watch {
            command,
            settings: Settings::of(typed),
            started: Instant::now(),
            set: None,
            target: None,
            source: None,
            dry_run: false,
            facts: None,
            error: None,
        }
    }

    /// The settings the run goes by (a named set's applied), checked
    /// before anything is done: the metrics file's directory must exist.
    ///
    /// # Errors
    /// A [`UsageError`](crate::cli::exit::UsageError) (exit 2) for a
    /// metrics file that is a directory or whose directory is missing.
    pub(crate) fn configure(&mut self, args: &MonitorArgs, dry_run: bool) -> anyhow::Result<()> {
        self.settings = Settings::of(args);
        self.dry_run = dry_run;
        if let Some(file) = &self.settings.metrics_file
            && let Err(e) = check_metrics_file(file)
        {
            // Said once, as the run's error; the hooks still hear of it.
            self.settings.metrics_file = None;
            return Err(e);
        }
        Ok(())
    }

    /// Names what the run works on (for labels and the hooks' environment).
    pub(crate) fn identify(&mut self, target: String, source: Option<PathBuf>, set: Option<String>) {
        self.target = Some(target);
        self.source = source;
        self.set = set;
    }

    /// Prints `error: TEXT` on stderr, as the binary's edge prints errors,
    /// and keeps the first such text for the hooks (`S3BACKUP_ERROR`).
    pub(crate) fn say_error(&mut self, text: String) {
        crate::cli::output::errln!("error: {text}");
        self.error.get_or_insert(text);
    }

    /// What the run did.
    pub(crate) fn record(&mut self, facts: Facts) {
        self.facts = Some(facts);
    }

    /// Acts on the run's outcome: prints its error (as the binary's edge
    /// would), writes the metrics file, runs the hook, and returns the
    /// exit code. A metrics file that cannot be written turns exit 0 into
    /// 1 (the monitoring would otherwise show a stale success); a hook
    /// that fails is a warning and leaves the code alone (the run itself
    /// went as its code says).
    ///
    /// A signal that cancels `stop` while the hook runs stops the hook
    /// (a warning; the exit code stays).
    ///
    /// # Errors
    /// `outcome`'s when there is nothing to do (no settings, a dry run).
    pub(crate) async fn finish(
        self,
        outcome: anyhow::Result<Exit>,
        stop: Option<crate::cancel::Cancel>,
    ) -> anyhow::Result<Exit> {
        if self.settings.is_empty() || self.dry_run {
            return outcome;
        }
        let (mut exit, mut error) = match outcome {
            Ok(exit) => (exit, self.error.clone()),
            Err(e) => {
                let line = format!("{e:#}");
                (crate::cli::exit::report(Err(e)), Some(line))
            }
        };
        let ended = SystemTime::now();
        if let Some(file) = &self.settings.metrics_file {
            let written = metrics::write(file, &self.metrics(exit, ended));
            if let Err(e) = written {
                let text = format!(
                    "the {} is over, but its metrics file {} could not be written: {e}",
                    self.command,
                    file.display()
                );
                crate::cli::output::errln!("error: {text}");
                error.get_or_insert(text);
                if exit == Exit::Ok {
                    exit = Exit::Error;
                }
            }
        }
        let hook = if exit == Exit::Ok {
            self.settings.on_success.as_deref().map(|c| ("--on-success", c))
        } else {
            self.settings.on_failure.as_deref().map(|c| ("--on-failure", c))
        };
        if let Some((flag, cmd)) = hook {
            let env = self.environment(exit, error.as_deref());
            if let Err(e) = hooks::run(cmd, &env, stop.as_ref()).await {
                crate::cli::output::errln!("warning: the {flag} command {e}");
            }
        }
        Ok(exit)
    }

    /// The run's labels: command, set (empty without one) and target.
    fn labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("command", self.command.to_owned()),
            ("set", self.set.clone().unwrap_or_default()),
            ("target", self.target.clone().unwrap_or_default()),
        ]
    }

    /// The metrics of the run as it ended with `exit` at `ended`.
    fn metrics(&self, exit: Exit, ended: SystemTime) -> metrics::Run {
        metrics::Run {
            labels: self.labels(),
            ended: seconds(ended),
            duration: self.started.elapsed().as_secs_f64(),
            exit_code: exit.code(),
            success: exit == Exit::Ok,
            facts: self.facts.clone().unwrap_or_default(),
        }
    }

    /// The hook's `S3BACKUP_*` environment (see README, "Running it
    /// regularly"): names uppercase, counts in decimal, times in seconds.
    fn environment(&self, exit: Exit, error: Option<&str>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("COMMAND".into(), self.command.to_owned()),
            ("OUTCOME".into(), Outcome::of(exit).as_str().to_owned()),
            ("EXIT_CODE".into(), exit.code().to_string()),
            (
                "DURATION_SECONDS".into(),
                format!("{:.3}", self.started.elapsed().as_secs_f64()),
            ),
            ("TARGET".into(), self.target.clone().unwrap_or_default()),
            ("SET".into(), self.set.clone().unwrap_or_default()),
        ];
        if let Some(source) = &self.source {
            env.push(("SOURCE".into(), source.display().to_string()));
        }
        if let Some(file) = &self.settings.metrics_file {
            env.push(("METRICS_FILE".into(), file.display().to_string()));
        }
        if let Some(error) = error {
            env.push(("ERROR".into(), error.to_owned()));
        }
        if let Some(facts) = &self.facts {
            if let Some(snapshot) = &facts.snapshot {
                env.push(("SNAPSHOT".into(), snapshot.clone()));
            }
            let groups = [
                ("FILES", &facts.files),
                ("BYTES", &facts.bytes),
                ("REQUESTS", &facts.requests),
            ];
            for (group, values) in groups {
                for (name, n) in values.iter() {
                    env.push((format!("{group}_{}", name.to_uppercase()), n.to_string()));
                }
            }
        }
        env.into_iter()
            .map(|(k, v)| (format!("S3BACKUP_{k}"), v))
            .collect()
    }
}

/// Refuses a metrics file that cannot be written in place before the run
/// starts, rather than after it.
fn check_metrics_file(file: &Path) -> anyhow::Result<()> {
    if file.is_dir() {
        usage!(
            "--metrics-file {} is a directory; name a file in it (e.g. s3backup.prom)",
            file.display()
        );
    }
    // It is replaced by a rename: never a device, a pipe or a socket
    // (`/dev/null` in a root crontab would be replaced for everyone).
    if file.exists() && !file.is_file() {
        usage!(
            "--metrics-file {} is not a regular file; name a file (e.g. s3backup.prom)",
            file.display()
        );
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.exists() && !dir.is_dir() {
        usage!(
            "--metrics-file {}: {} is not a directory",
            file.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        usage!(
            "--metrics-file {}: the directory {} does not exist",
            file.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Seconds since the Unix epoch (0 for a clock before it).
fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
