//! The binary's edge: turns parsed arguments into engine options, runs the
//! command, prints what the user sees, and says which exit code fits.

/// The clap types: what the command line accepts, and nothing else.
pub mod args;
/// Completion scripts and man pages generated from [`args`].
pub mod generate;
pub mod inspect;
pub mod interrupt;
pub mod sets;
pub mod shell;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;

use crate::backup::{self, BackupOptions, BackupReport};
use crate::cli::args::{BackupArgs, Cli, Command, ManArgs, RestoreArgs, S3Args};
use crate::progress::{BarProgress, JsonProgress, LineProgress, NoProgress, Progress};
use crate::restore::{self, RestoreOptions};
use crate::state::StateDb;
use crate::store::S3Settings;

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Ok = 0,
    /// The run could not be done.
    Error = 1,
    /// The command line was wrong.
    Usage = 2,
    /// Some files failed; the rest were done.
    Partial = 3,
    /// Stopped by Ctrl-C (SIGINT): 128 + 2.
    Interrupted = 130,
    /// Stopped by SIGTERM: 128 + 15.
    Terminated = 143,
}

/// Runs a parsed command line. `completions` and `man` only print what
/// the clap definitions say, so they run before (and without) the state
/// file and the async runtime.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let Cli {
        quiet,
        verbose,
        state,
        command,
    } = cli;
    let shell_state = state.clone();
    // Everything else needs the runtime, and a state file path (found
    // first, as before, so that a missing state directory is reported
    // the same way by every command).
    let setup = || -> anyhow::Result<(tokio::runtime::Runtime, std::path::PathBuf)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let state_path = match state {
            Some(path) => path,
            None => StateDb::default_path().context("cannot find a state directory: pass --state FILE")?,
        };
        Ok((runtime, state_path))
    };
    match command {
        Command::Completions(args) => write_stdout(&generate::completions(args.shell)),
        Command::Man(args) => man(args, quiet),
        Command::Backup(args) => {
            let (runtime, state_path) = setup()?;
            let signals = interrupt::Interrupts::listen(&runtime).context("catching Ctrl-C")?;
            signals.outcome(runtime.block_on(backup(args, state_path, quiet, verbose, signals.cancel())))
        }
        Command::Restore(args) => {
            let runtime = setup()?.0;
            let signals = interrupt::Interrupts::listen(&runtime).context("catching Ctrl-C")?;
            signals.outcome(runtime.block_on(restore(args, quiet, verbose, signals.cancel())))
        }
        Command::Snapshots(args) => setup()?.0.block_on(inspect::snapshots(args)),
        Command::Verify(args) => setup()?.0.block_on(inspect::verify(args)),
        Command::State(action) => {
            let (runtime, state_path) = setup()?;
            runtime.block_on(inspect::state(action, &state_path))
        }
        Command::Shell => crate::cli::shell::run(crate::cli::shell::ShellContext {
            state: shell_state,
            quiet,
            verbose,
        }),
        Command::Sets { json } => {
            let (runtime, state_path) = setup()?;
            runtime.block_on(inspect::state(
                crate::cli::args::StateAction::Sets { json },
                &state_path,
            ))
        }
    }
}

/// `s3backup man`: the top-level page on stdout, or every page into a directory.
fn man(args: ManArgs, quiet: bool) -> anyhow::Result<Exit> {
    let Some(dir) = args.all else {
        return write_stdout(&generate::man_page()?);
    };
    let written = generate::man_pages_to(&dir)?;
    if !quiet {
        println!("wrote {} man pages to {}", written.len(), dir.display());
    }
    Ok(Exit::Ok)
}

/// Writes generated text to stdout. A reader that stops early
/// (`s3backup completions bash | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(Exit::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Ok),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// The filters of a command line (reading any `--exclude-from` files).
fn filters(args: &crate::cli::args::FilterArgs) -> anyhow::Result<crate::fs::filter::Filters> {
    Ok(crate::fs::filter::Filters::new(
        &args.exclude,
        &args.include,
        &args.exclude_from,
    )?)
}

/// `--max-bandwidth` of a backup or restore, checked: 0 is refused (it
/// would never finish); the limit is shared by the run's `--jobs` transfers.
fn bandwidth(
    max_bandwidth: Option<u64>,
    jobs: u16,
) -> anyhow::Result<Option<crate::store::pace::BandwidthLimit>> {
    match max_bandwidth {
        Some(0) => anyhow::bail!("--max-bandwidth must be more than 0 bytes per second"),
        Some(bytes_per_sec) => Ok(Some(crate::store::pace::BandwidthLimit {
            bytes_per_sec,
            streams: usize::from(jobs),
        })),
        None => Ok(None),
    }
}

impl From<S3Args> for S3Settings {
    fn from(a: S3Args) -> Self {
        S3Settings {
            profile: a.profile,
            region: a.region,
            endpoint_url: a.endpoint_url,
            path_style: a.path_style,
            connect_timeout: std::time::Duration::from_secs(a.connect_timeout),
            read_timeout: std::time::Duration::from_secs(a.read_timeout),
            write: Default::default(),
            bandwidth: None,
        }
    }
}

/// How a run shows progress: JSON events when asked, bars on a terminal,
/// a periodic line with `-v` elsewhere, else nothing.
fn progress_for(json_progress: bool, json: bool, quiet: bool, verbose: u8) -> Arc<dyn Progress> {
    if json_progress {
        Arc::new(JsonProgress::new(std::time::Duration::from_secs(1)))
    } else if quiet || json {
        Arc::new(NoProgress)
    } else if std::io::stderr().is_terminal() {
        Arc::new(BarProgress::new())
    } else if verbose > 0 {
        Arc::new(LineProgress::new(std::time::Duration::from_secs(5)))
    } else {
        Arc::new(NoProgress)
    }
}

async fn backup(
    args: BackupArgs,
    state_path: std::path::PathBuf,
    quiet: bool,
    verbose: u8,
    cancel: crate::cancel::Cancel,
) -> anyhow::Result<Exit> {
    let args = crate::cli::sets::resolve(args, &state_path)?;
    let saving = (args.set.is_some() && !args.dry_run).then(|| args.clone());
    if args.write.sse_kms_key_id.is_some()
        && !args
            .write
            .sse
            .as_deref()
            .is_some_and(|s| s.starts_with("aws:kms"))
    {
        anyhow::bail!("--sse-kms-key-id needs --sse aws:kms (or aws:kms:dsse)");
    }
    let bandwidth = bandwidth(args.max_bandwidth, args.jobs)?;
    let (Some(source), Some(target)) = (args.source, args.target) else {
        anyhow::bail!("give SOURCE and TARGET, or --set NAME of a saved set");
    };
    let opts = BackupOptions {
        source,
        target,
        state_path: state_path.clone(),
        delete: args.delete,
        dry_run: args.dry_run,
        walk: crate::fs::scan::WalkOptions {
            follow_symlinks: args.follow_symlinks,
            filters: filters(&args.filters)?,
            ignore_files: true,
            // Filled in by the backup, which knows its state file and store.
            own: Default::default(),
        },
        rehash: args.rehash,
        jobs: usize::from(args.jobs),
        multipart_threshold: args.multipart_threshold,
        part_size: args.part_size,
        s3: S3Settings {
            write: crate::store::WriteOptions {
                storage_class: args.write.storage_class.clone(),
                sse: args.write.sse.clone(),
                sse_kms_key_id: args.write.sse_kms_key_id.clone(),
                acl: args.write.acl.clone(),
            },
            bandwidth,
            ..args.s3.into()
        },
        cancel,
    };
    let json = args.json || args.json_progress;
    let progress = progress_for(args.json_progress, json, quiet, verbose);
    let report = backup::run(&opts, progress).await?;
    if let Some(saving) = saving {
        crate::cli::sets::save(&saving, &state_path, report.set_id)?;
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&opts, &report, quiet);
    }
    for f in &report.failures {
        eprintln!("error: {}: {}", f.path, f.error);
    }
    if report.counts.failed > 0 {
        eprintln!(
            "error: {} file(s) were not backed up; run the backup again to retry them",
            report.counts.failed
        );
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}

fn print_report(opts: &BackupOptions, r: &BackupReport, quiet: bool) {
    if r.dry_run {
        for line in &r.planned {
            println!("{line}");
        }
    }
    if quiet {
        return;
    }
    let verb = if r.dry_run {
        "dry run: would back up"
    } else {
        "backed up"
    };
    println!("{verb} {} -> {}", opts.source.display(), opts.target);
    println!(
        "  scanned {} files: uploaded {}, copied {}, touched {}, unchanged {}, deleted {}, failed {}, skipped {}",
        r.counts.scanned,
        r.counts.uploaded,
        r.counts.copied,
        r.counts.touched,
        r.counts.unchanged,
        r.counts.deleted,
        r.counts.failed,
        r.skipped
    );
    if r.excluded > 0 {
        println!("  excluded {} by filters", r.excluded);
    }
    println!(
        "  sent {} in {:.2} s",
        indicatif::HumanBytes(r.counts.bytes_sent),
        r.elapsed_ms as f64 / 1000.0
    );
    if let Some(key) = &r.snapshot {
        println!("  snapshot {key}");
    }
}

async fn restore(
    args: RestoreArgs,
    quiet: bool,
    verbose: u8,
    cancel: crate::cancel::Cancel,
) -> anyhow::Result<Exit> {
    let bandwidth = bandwidth(args.max_bandwidth, args.jobs)?;
    check_dest(&args.dest)?;
    let opts = RestoreOptions {
        target: args.target,
        dest: args.dest,
        snapshot: args.snapshot,
        from_listing: args.from_listing,
        paths: args.paths,
        no_clobber: args.no_clobber,
        preserve_special_bits: args.preserve_special_bits,
        jobs: usize::from(args.jobs),
        filters: filters(&args.filters)?,
        s3: S3Settings {
            bandwidth,
            ..args.s3.into()
        },
        cancel,
    };
    let json = args.json || args.json_progress;
    let progress = progress_for(args.json_progress, json, quiet, verbose);
    let r = restore::run_with_progress(&opts, progress).await?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else if !quiet {
        println!(
            "restored {} from {} -> {}",
            opts.target,
            r.source,
            opts.dest.display()
        );
        println!(
            "  {} files: downloaded {}, unchanged {}, kept {}, failed {}; {} directories",
            r.files, r.downloaded, r.unchanged, r.kept, r.failed, r.dirs
        );
        println!(
            "  received {} in {:.2} s",
            indicatif::HumanBytes(r.bytes_received),
            r.elapsed_ms as f64 / 1000.0
        );
    }
    for path in &r.kept_paths {
        eprintln!("kept (differs from the backup): {path}");
    }
    for f in &r.failures {
        if f.path.is_empty() {
            eprintln!("error: {}", f.error);
        } else {
            eprintln!("error: {}: {}", f.path, f.error);
        }
    }
    if let Some(stopped) = &r.stopped {
        // Not "some files failed": how many entries were never read is unknown.
        eprintln!("error: {stopped}");
        return Ok(Exit::Error);
    }
    if r.failed > 0 {
        eprintln!("error: {} file(s) were not restored", r.failed);
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}

/// Refuses, with one line and before anything is fetched, a DEST that
/// cannot be a directory (it is a file, or lies under one) or an existing
/// DEST directory this process cannot create files in (permissions, a
/// read-only mount); otherwise every file would fail on its own, each with
/// the same error. The write probe is a temporary file, removed at once.
fn check_dest(dest: &std::path::Path) -> anyhow::Result<()> {
    let shown = dest.display();
    if !dest.is_dir() {
        if dest.exists() {
            anyhow::bail!("DEST '{shown}' exists but is not a directory");
        }
        // The nearest existing ancestor must be a directory to create DEST in.
        if let Some(file) = dest
            .ancestors()
            .skip(1)
            .find(|a| a.exists())
            .filter(|a| !a.is_dir())
        {
            anyhow::bail!(
                "DEST '{shown}' cannot be created: '{}' is not a directory",
                file.display()
            );
        }
        return Ok(());
    }
    match tempfile::Builder::new()
        .prefix(".s3backup-restore-")
        .tempfile_in(dest)
    {
        Ok(_probe) => Ok(()),
        Err(e) => {
            // tempfile's text ends with the probe's random name: leave that out.
            let text = e.to_string();
            let cause = text.split(" at path ").next().unwrap_or(&text);
            anyhow::bail!("cannot write to DEST '{shown}': {cause}")
        }
    }
}
