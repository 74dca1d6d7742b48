//! Command-line types (clap derive) and nothing else: no logic lives here.
//! `cli/options.rs` turns them into the options the engines take, and
//! `cli/values.rs` holds the value parsers that check each flag's text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};

use crate::cli::help_text::{
    BACKUP_EXAMPLES, COMPLETIONS_EXAMPLES, DIFF_EXAMPLES, FIND_EXAMPLES, LS_EXAMPLES, MAN_EXAMPLES,
    RESTORE_EXAMPLES, SETS_EXAMPLES, SHELL_EXAMPLES, SNAPSHOTS_EXAMPLES, STATE_EXAMPLES, TOP_HELP,
    VERIFY_EXAMPLES,
};
use crate::cli::values::{
    SetRef, parse_copy_cutoff, parse_cost, parse_dir, parse_duration, parse_endpoint, parse_find_pattern,
    parse_guard_limit, parse_history, parse_keep_count, parse_keep_tag, parse_limit, parse_marker_name,
    parse_name, parse_part_size, parse_pattern, parse_rate, parse_region, parse_restore_path, parse_set_name,
    parse_set_ref, parse_size, parse_snapshot_id, parse_state_pattern, parse_tag, parse_threshold,
    parse_timeout,
};
use crate::target::Target;

/// `--jobs`' default: the ceiling of the adaptive request limit
/// ([`crate::store::flow::DEFAULT_CEILING`]; 256 fits a `u16`).
const JOBS: u16 = crate::store::flow::DEFAULT_CEILING as u16;

/// Incremental backups of a directory to Amazon S3, any S3-compatible store, or a local directory.
#[derive(Debug, Parser)]
#[command(name = "s3backup", version, after_help = TOP_HELP)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors; no summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    // The default is `StateDb::default_path`: the platform's state directory,
    // else its local data directory (the `dirs` crate's).
    #[cfg_attr(
        all(not(windows), not(target_os = "macos")),
        doc = "State database file [default: $XDG_STATE_HOME/s3backup/state.db]."
    )]
    #[cfg_attr(
        target_os = "macos",
        doc = "State database file [default: ~/Library/Application Support/s3backup/state.db]."
    )]
    #[cfg_attr(
        windows,
        doc = "State database file [default: %LOCALAPPDATA%\\s3backup\\state.db]."
    )]
    #[arg(long, global = true, value_name = "FILE", env = "S3BACKUP_STATE", value_hint = ValueHint::FilePath)]
    pub state: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up SOURCE to TARGET, sending only what changed since the last run.
    #[command(after_help = BACKUP_EXAMPLES)]
    Backup(Box<BackupArgs>),
    /// Restore a backup (a snapshot, or a live listing of the bucket) into DEST.
    #[command(after_help = RESTORE_EXAMPLES)]
    Restore(RestoreArgs),
    /// List the snapshots (backup runs) stored under TARGET; forget old ones; diff, ls or find in them.
    #[command(after_help = SNAPSHOTS_EXAMPLES)]
    Snapshots(SnapshotsArgs),
    /// Check that the bucket holds every file of a snapshot (--deep: and its content).
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Inspect or rebuild the local state file.
    #[command(subcommand, after_help = STATE_EXAMPLES)]
    State(StateAction),
    /// Type commands at a prompt (backup, restore, snapshots, …; 'help', 'exit'), or pipe them in.
    #[command(after_help = SHELL_EXAMPLES)]
    Shell(ShellArgs),
    /// The backup sets in the state file, named ones with their names (same as 'state sets').
    #[command(after_help = SETS_EXAMPLES)]
    Sets {
        /// JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script on stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per subcommand into a directory.
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
}

/// `s3backup shell`: connection settings given once, for every command
/// typed in it (a command may still give its own).
#[derive(Debug, Args, Clone, Default)]
pub struct ShellArgs {
    /// Named profile from ~/.aws/config and ~/.aws/credentials, for every command.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub profile: Option<String>,
    /// Region, for every command (default: from the profile or AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION", value_parser = parse_region)]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server, for every command (e.g. http://localhost:9000).
    #[arg(long, value_name = "URL", value_parser = parse_endpoint)]
    pub endpoint_url: Option<String>,
    /// Address buckets as ENDPOINT/bucket, for every command.
    #[arg(long)]
    pub path_style: bool,
}

/// `s3backup completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `s3backup man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write s3backup.1 and one page per subcommand (s3backup-backup.1, ...) into DIR instead.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub all: Option<PathBuf>,
}

/// `s3backup restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where the backup is: bucket::prefix, s3://bucket/prefix, or a local directory store.
    pub target: Target,
    /// Directory to restore into (created if missing).
    #[arg(value_hint = ValueHint::DirPath, value_parser = parse_dir)]
    pub dest: PathBuf,
    /// Only these files or directories (paths relative to the backup root; `d/` with a trailing slash names a directory only).
    #[arg(value_parser = parse_restore_path)]
    pub paths: Vec<String>,
    /// Snapshot to restore: an ID from 's3backup snapshots', a unique prefix of one, or 'latest'.
    #[arg(long, value_name = "ID", conflicts_with = "from_listing", value_parser = parse_snapshot_id)]
    pub snapshot: Option<String>,
    /// Restore whatever the bucket holds under the prefix now, ignoring manifests.
    #[arg(long)]
    pub from_listing: bool,
    /// Keep local files that differ from the backup (they are reported) instead of replacing them.
    #[arg(long)]
    pub no_clobber: bool,
    /// Also restore setuid, setgid and sticky bits recorded in the backup (dropped otherwise, as tar does).
    #[arg(long)]
    pub preserve_special_bits: bool,
    /// Print what the restore would do; change nothing and download no file (only listings, manifests and object metadata are read).
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Estimate the run's cost from request prices: s3-standard (S3 Standard, us-east-1, USD; see README) or KIND=USD,... per 1000 requests (kinds: list, head, get, put, copy, part, delete, other; egress-gb per GB received), optionally after s3-standard.
    #[arg(long = "cost-per-1000", value_name = "SPEC", value_parser = parse_cost)]
    pub cost_per_1000: Option<crate::cost::CostSpec>,
    /// Also print progress events on stdout while running, one JSON object per line (implies --json).
    #[arg(long)]
    pub json_progress: bool,
    /// Most files and requests in flight at once: the requests in flight find their own level up to this (from 16, growing while throughput grows, halving on 503 SlowDown, 429 or timeouts).
    #[arg(short, long, default_value_t = JOBS, value_parser = clap::value_parser!(u16).range(1..=256), allow_negative_numbers = true)]
    pub jobs: u16,
    /// Limit the bytes received to RATE per second (e.g. 2MiB, 500K), paced as they come, shared by all downloads.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, allow_hyphen_values = true)]
    pub max_bandwidth: Option<u64>,
    /// Which paths to bring back.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `--exclude`, `--include` and `--exclude-from`: which paths a backup
/// takes or a restore brings back (gitignore syntax; the last matching
/// one, in command-line order, decides, as in the AWS CLI; all of them
/// over `.s3backupignore` files; see [`crate::fs::filter`]).
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Leave out paths matching GLOB (gitignore syntax, matched against the path relative to the source: `*.tmp`, `/build`, `cache/`, `**/*.log`). Repeatable; the last --exclude/--include that matches a path decides.
    #[arg(long, value_name = "GLOB", value_parser = parse_pattern)]
    pub exclude: Vec<String>,
    /// Take paths matching GLOB that an earlier --exclude or an ignore file leaves out (`--exclude '*' --include '*.txt'`; the other order keeps nothing). Repeatable.
    #[arg(long, value_name = "GLOB", value_parser = parse_pattern)]
    pub include: Vec<String>,
    /// Read --exclude patterns from FILE, one per line ('#' comments), as if typed here. Repeatable.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub exclude_from: Vec<PathBuf>,
    /// The three above in command-line order (filled by `cli::matches::parse`).
    #[arg(skip)]
    pub rules: Vec<crate::fs::filter::Rule>,
}

/// What a backup leaves out besides the filters (saved with --set; see
/// [`crate::fs::leave_out`]).
#[derive(Debug, Args, Clone, Default)]
pub struct LeaveOutArgs {
    /// Leave out the contents of every directory holding a valid CACHEDIR.TAG (a file starting 'Signature: 8a477f597d28d172789f06886806bc55', https://bford.info/cachedir/); the tag file itself is kept, so a restore shows what was left out.
    #[arg(long, overrides_with = "no_exclude_caches")]
    pub exclude_caches: bool,
    /// Take cache directories (the default; turns off an --exclude-caches saved with --set).
    #[arg(long, overrides_with = "exclude_caches")]
    pub no_exclude_caches: bool,
    /// Leave out the contents of every directory holding an entry called NAME (a plain name, no '/'); the NAME entry itself is kept. Repeatable.
    #[arg(long, value_name = "NAME", value_parser = parse_marker_name)]
    pub exclude_if_present: Vec<String>,
    /// Do not descend into directories on another file system than SOURCE (mount points are kept, empty).
    #[arg(short = 'x', long, overrides_with = "no_one_file_system")]
    pub one_file_system: bool,
    /// Cross into other file systems (the default; turns off a --one-file-system saved with --set).
    #[arg(long, overrides_with = "one_file_system")]
    pub no_one_file_system: bool,
    /// Leave out files larger than SIZE (e.g. 100M, 2GiB, 2048: K, M, G, T are powers of 1024); a file of exactly SIZE is taken.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub exclude_larger_than: Option<u64>,
}

/// Storage class, encryption and ACL of the objects a backup writes (S3
/// targets; the bucket's defaults apply to whatever is not given).
#[derive(Debug, Args, Clone, Default)]
pub struct S3WriteArgs {
    /// Storage class of file objects (manifests stay STANDARD so restores never wait on them).
    #[arg(long, value_name = "CLASS", value_parser = [
        "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
        "GLACIER", "DEEP_ARCHIVE", "REDUCED_REDUNDANCY", "EXPRESS_ONEZONE",
    ])]
    pub storage_class: Option<String>,
    /// Server-side encryption of new objects.
    #[arg(long, value_name = "ALGORITHM", value_parser = ["AES256", "aws:kms", "aws:kms:dsse"], overrides_with = "no_sse")]
    pub sse: Option<String>,
    /// Send no --sse (the bucket's default encryption applies; turns off an --sse saved with --set, and its key).
    #[arg(long, overrides_with = "sse")]
    pub no_sse: bool,
    /// KMS key (ID, ARN or alias) for --sse aws:kms, typed here or saved with --set (default: the account's S3 key).
    #[arg(long, value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,
    /// Canned ACL of new objects (default: none sent, so the bucket's owner settings apply).
    #[arg(long, value_name = "ACL", value_parser = [
        "private", "public-read", "public-read-write", "authenticated-read",
        "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
    ])]
    pub acl: Option<String>,
    /// An additional checksum every upload sends, computed in the read that hashes the file: the store refuses a body that differs and keeps the value for `verify --checksums` (S3 targets; `none` sends none).
    #[arg(long, value_name = "ALGORITHM", value_parser = ["crc64nvme", "crc32c", "sha256", "none"], overrides_with = "no_checksum_algorithm")]
    pub checksum_algorithm: Option<String>,
    /// Send no additional checksum (turns off a --checksum-algorithm saved with --set).
    #[arg(long, overrides_with = "checksum_algorithm")]
    pub no_checksum_algorithm: bool,
}

/// `s3backup snapshots`: list them, or `snapshots forget` old ones.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SnapshotsArgs {
    /// Forget old snapshots, or see the history (diff, ls, find).
    #[command(subcommand)]
    pub action: Option<SnapshotsAction>,
    /// Where the backup is.
    #[arg(required = true)]
    pub target: Option<Target>,
    /// Print a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

/// What to do with snapshots besides listing them.
#[derive(Debug, Subcommand)]
pub enum SnapshotsAction {
    /// Delete old snapshot manifests by policy or ID (never the newest readable one); --prune also frees the content only they kept.
    #[command(after_help = FORGET_HELP)]
    Forget(ForgetArgs),
    /// Delete the preserved content (.s3backup/content) that no snapshot references any more.
    #[command(after_help = PRUNE_HELP)]
    Prune(PruneArgs),
    /// What changed from snapshot A to snapshot B: added, removed, modified, renamed, metadata and type changes, with sizes.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// The tree of a snapshot (type, mode, size, mtime, path), whole or under PATHs.
    #[command(after_help = LS_EXAMPLES)]
    Ls(LsArgs),
    /// Which snapshots hold paths matching PATTERNs, and with what size and mtime, newest first.
    #[command(after_help = FIND_EXAMPLES)]
    Find(FindArgs),
}

/// `snapshots forget --help`'s closing text.
const FORGET_HELP: &str = "\
The --keep-* rules are restic's: snapshots are walked newest first, and each
rule keeps the newest snapshot of each of the last N hours, days, ISO weeks,
months or years that have one (local time; TZ is respected); one snapshot may
count for several rules; while a rule has slots left, the oldest snapshot is
kept too. --keep-within counts back from the newest snapshot, not from now.
--keep-tag a,b keeps snapshots tagged both a and b (backup --tag). Damaged
snapshots (listed as such by 's3backup snapshots') do not count as kept and
are never removed by a rule: name one to remove it.

Examples:
  s3backup snapshots forget s3://mybucket/documents --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --prune
  s3backup snapshots forget s3://mybucket/documents --keep-within 90d --dry-run
  s3backup snapshots forget mybucket::documents --keep-last 10 --keep-tag release --json
  s3backup snapshots forget mybucket::documents 20260301T120000Z";

/// `snapshots prune --help`'s closing text.
const PRUNE_HELP: &str = "\
Lists the content area once, reads every snapshot's manifest, and deletes the
preserved copies none of them references; copies newer than the prune's start
are kept. 'snapshots forget --prune' does the same after forgetting.

Examples:
  s3backup snapshots prune s3://mybucket/documents --dry-run
  s3backup snapshots prune mybucket::documents --json";

/// The keep rules of `snapshots forget` (restic's), also taken by
/// `backup`, which applies them after each successful run (saved with `--set`).
#[derive(Debug, Args, Clone, Default)]
pub struct KeepArgs {
    /// Keep the newest N snapshots ('unlimited' for all).
    #[arg(long, value_name = "N", value_parser = parse_keep_count, allow_negative_numbers = true)]
    pub keep_last: Option<usize>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N", value_parser = parse_keep_count, allow_negative_numbers = true)]
    pub keep_hourly: Option<usize>,
    /// Keep the newest snapshot of each of the last N days that have one (local time).
    #[arg(long, value_name = "N", value_parser = parse_keep_count, allow_negative_numbers = true)]
    pub keep_daily: Option<usize>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", value_parser = parse_keep_count, allow_negative_numbers = true)]
    pub keep_weekly: Option<usize>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N", value_parser = parse_keep_count, allow_negative_numbers = true)]
    pub keep_monthly: Option<usize>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N", value_parser = parse_keep_count, allow_negative_numbers = true)]
    pub keep_yearly: Option<usize>,
    /// Keep snapshots taken within this long before the newest one (e.g. 30d, 12h, 1y).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub keep_within: Option<std::time::Duration>,
    /// Keep snapshots carrying all these tags (comma-separated; repeatable: any list keeps).
    #[arg(long, value_name = "TAG[,TAG]", value_parser = parse_keep_tag)]
    pub keep_tag: Vec<String>,
    /// Then delete the preserved content no kept snapshot references.
    #[arg(long)]
    pub prune: bool,
}

/// `s3backup snapshots forget`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("keep").required(true).multiple(true).args([
    "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
    "keep_within", "keep_tag", "ids",
])))]
pub struct ForgetArgs {
    /// Where the backup is.
    pub target: Target,
    /// Snapshots to remove by ID (or unique prefix), damaged or not; never the newest readable one.
    #[arg(value_name = "ID", value_parser = parse_snapshot_id)]
    pub ids: Vec<String>,
    /// Which snapshots to keep.
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Print what would be removed (and, with --prune, deleted); remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// How a prune deletes.
    #[command(flatten)]
    pub pruning: PruneSettings,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

/// What `snapshots prune` and `snapshots forget --prune` share.
#[derive(Debug, Args, Clone)]
pub struct PruneSettings {
    /// Most deletions in flight at once: they find their own level up to this (from 16, growing while throughput grows, halving on 503 SlowDown, 429 or timeouts).
    #[arg(short, long, default_value_t = JOBS, value_parser = clap::value_parser!(u16).range(1..=256), allow_negative_numbers = true)]
    pub jobs: u16,
    /// Keep content stored less than this before the prune starts (default 15m: a backup may be copying it in, and 15m covers the clock skew S3 allows).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub min_age: Option<std::time::Duration>,
}

/// `s3backup snapshots prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Where the backup is.
    pub target: Target,
    /// Print what would be deleted and the bytes freed; delete nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// How a prune deletes.
    #[command(flatten)]
    pub pruning: PruneSettings,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `s3backup verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Where the backup is.
    pub target: Target,
    /// Snapshot to check (default: latest).
    #[arg(long, value_name = "ID", value_parser = parse_snapshot_id)]
    pub snapshot: Option<String>,
    /// Check every snapshot (oldest first), with a line for each and a total.
    #[arg(long, conflicts_with = "snapshot")]
    pub all: bool,
    /// Also download every file and check its blake3.
    #[arg(long)]
    pub deep: bool,
    /// Compare each file's checksum as the store keeps it (a HEAD, no download) with the one recorded by backup --checksum-algorithm (S3 targets).
    #[arg(long, conflicts_with = "deep")]
    pub checksums: bool,
    /// With --deep: download and check only SHARE of the files (5%, 1/20): those never checked first, then those checked longest ago, as remembered in the state file (at random, not remembered, without one), so runs in turn check every file; the rest get the listing's checks. Not with --all.
    #[arg(long, value_name = "SHARE", conflicts_with = "all", value_parser = clap::value_parser!(crate::verify::sample::Fraction))]
    pub sample: Option<crate::verify::sample::Fraction>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Estimate the run's cost from request prices: s3-standard (S3 Standard, us-east-1, USD; see README) or KIND=USD,... per 1000 requests (kinds: list, head, get, put, copy, part, delete, other; egress-gb per GB received), optionally after s3-standard.
    #[arg(long = "cost-per-1000", value_name = "SPEC", value_parser = parse_cost)]
    pub cost_per_1000: Option<crate::cost::CostSpec>,
    /// Most requests in flight at once: they find their own level up to this (from 16, growing while throughput grows, halving on 503 SlowDown, 429 or timeouts).
    #[arg(short, long, default_value_t = JOBS, value_parser = clap::value_parser!(u16).range(1..=256), allow_negative_numbers = true)]
    pub jobs: u16,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
    /// How the run reports itself when nobody watches.
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// `s3backup state`: look inside the state file.
#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Each backup set: source, target, files, bytes, last run and its outcome.
    #[command(after_help = "\
Examples:
  s3backup state sets
  s3backup state sets --json
  s3backup --state /mnt/usb/state.db state sets")]
    Sets {
        /// JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Files recorded as backed up, optionally of one set and matching a pattern (e.g. 'docs/*.pdf').
    #[command(after_help = "\
Examples:
  s3backup state files
  s3backup state files --set 1 'docs/*.pdf'
  s3backup state files --set 2 --json")]
    Files {
        /// Only this set: its ID or its name, from 'state sets'.
        #[arg(long, value_name = "SET", value_parser = parse_set_ref, allow_negative_numbers = true)]
        set: Option<SetRef>,
        /// Only paths matching PATTERN, in the syntax of --exclude (gitignore: 'docs/' everything under docs, '*.pdf' at any depth, '/a.txt' at the top only).
        #[arg(value_parser = parse_state_pattern)]
        pattern: Option<String>,
        /// JSON lines on stdout, one object per file.
        #[arg(long)]
        json: bool,
    },
    /// Everything recorded about one path.
    #[command(after_help = "\
Examples:
  s3backup state show docs/report.pdf
  s3backup state show docs/report.pdf --set 1 --json")]
    Show {
        /// Relative path, as backed up.
        path: String,
        /// Only this set: its ID or its name.
        #[arg(long, value_name = "SET", value_parser = parse_set_ref, allow_negative_numbers = true)]
        set: Option<SetRef>,
        /// JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run history, newest first.
    #[command(after_help = "\
Examples:
  s3backup state runs
  s3backup state runs --set 1 --limit 5
  s3backup state runs --set docs
  s3backup state runs --json")]
    Runs {
        /// Only this set: its ID or its name.
        #[arg(long, value_name = "SET", value_parser = parse_set_ref, allow_negative_numbers = true)]
        set: Option<SetRef>,
        /// How many runs (1 or more).
        #[arg(long, default_value_t = 20, value_parser = parse_limit, allow_negative_numbers = true)]
        limit: u32,
        /// JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Totals over the whole state file.
    #[command(after_help = "\
Examples:
  s3backup state stats
  s3backup state stats --json")]
    Stats {
        /// JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Recreate a set's state from the latest snapshot manifest (new machine, lost or damaged state).
    #[command(after_help = "\
Examples:
  s3backup state rebuild ~/Documents s3://mybucket/documents
  s3backup state rebuild ~/Documents mybucket::documents --profile work --json")]
    Rebuild {
        /// The source directory of the set.
        #[arg(value_hint = ValueHint::DirPath, value_parser = parse_dir)]
        source: PathBuf,
        /// Where the backup is.
        target: Target,
        /// JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// S3 connection settings.
        #[command(flatten)]
        s3: S3Args,
    },
}

/// `s3backup backup`.
#[derive(Debug, Args, Clone)]
pub struct BackupArgs {
    /// Directory to back up (may be left out with --set NAME of a saved set).
    #[arg(required_unless_present = "set", value_hint = ValueHint::DirPath, value_parser = parse_dir)]
    pub source: Option<PathBuf>,
    /// Where to: bucket::prefix, s3://bucket/prefix, or a local directory (file:///path, /path, ./path, ~/path).
    #[arg(required_unless_present = "set")]
    pub target: Option<Target>,
    /// Name this set and remember its options (with SOURCE and TARGET), or run the set saved under NAME (without them). Not all digits (those are set IDs), no control characters.
    #[arg(long, value_name = "NAME", value_parser = parse_set_name)]
    pub set: Option<String>,
    /// Delete remote files whose local file was deleted (default: keep them).
    #[arg(long, overrides_with = "no_delete")]
    pub delete: bool,
    /// Keep remote files whose local file was deleted (the default; turns off a --delete saved with --set).
    #[arg(long, overrides_with = "delete")]
    pub no_delete: bool,
    /// With --delete, refuse the run (before changing anything) when it would delete more than N objects or P% of the set's objects (a share never refuses 5 or fewer); saved with --set.
    #[arg(long, value_name = "N|P%", default_value = "50%", value_parser = parse_guard_limit)]
    pub max_delete: crate::plan::guard::Limit,
    /// Refuse the run (before sending anything) when it would replace the content of more than N or P% of the set's files (a mass encryption, a bad rewrite; a share never refuses 5 or fewer); 100% accepts any; saved with --set.
    #[arg(long, value_name = "N|P%", default_value = "50%", value_parser = parse_guard_limit)]
    pub max_change: crate::plan::guard::Limit,
    /// Let --delete run when SOURCE holds no files (refused by default: an unmounted disk looks empty). For this run only.
    #[arg(long)]
    pub allow_empty_source: bool,
    /// Let --delete run when SOURCE's root is on another device than at the set's last backup (refused by default: an unmounted disk leaves its mount point). For this run only.
    #[arg(long)]
    pub allow_device_change: bool,
    /// Print what would be done; change nothing locally or remotely.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Back up what symlinks point to instead of the links (loops are reported and skipped).
    #[arg(short = 'L', long, overrides_with = "no_follow_symlinks")]
    pub follow_symlinks: bool,
    /// Back up symlinks as links (the default; turns off a --follow-symlinks saved with --set).
    #[arg(long, overrides_with = "follow_symlinks")]
    pub no_follow_symlinks: bool,
    /// Hash every file, even those whose size, mtime, change time and inode are as recorded (for file systems whose change times can't be trusted); only changed content is sent.
    #[arg(long)]
    pub rehash: bool,
    /// How to keep what a run replaces or deletes, so older snapshots stay restorable: auto (copy it into PREFIX/.s3backup/content unless the bucket keeps a version of it), both (copy it even then), versions (rely on the bucket's versions), off (a pure mirror: only the newest snapshot is sure to restore).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_history)]
    pub history: crate::history::HistoryMode,
    /// Which paths to take.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Caches, marked directories, other file systems and large files to leave out.
    #[command(flatten)]
    pub leave_out: LeaveOutArgs,
    /// How new objects are stored.
    #[command(flatten)]
    pub write: S3WriteArgs,
    /// Object Lock of the objects written.
    #[command(flatten)]
    pub lock: crate::cli::lock::LockArgs,
    /// Limit the bytes sent and received to RATE per second (e.g. 2MiB, 500K), paced as they go, shared by all transfers.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, allow_hyphen_values = true)]
    pub max_bandwidth: Option<u64>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Estimate the run's cost from request prices: s3-standard (S3 Standard, us-east-1, USD; see README) or KIND=USD,... per 1000 requests (kinds: list, head, get, put, copy, part, delete, other; egress-gb per GB received), optionally after s3-standard.
    #[arg(long = "cost-per-1000", value_name = "SPEC", value_parser = parse_cost)]
    pub cost_per_1000: Option<crate::cost::CostSpec>,
    /// Also print progress events on stdout while running, one JSON object per line (implies --json).
    #[arg(long)]
    pub json_progress: bool,
    /// Most files and requests in flight at once: the requests in flight find their own level up to this (from 16, growing while throughput grows, halving on 503 SlowDown, 429 or timeouts).
    #[arg(short, long, default_value_t = JOBS, value_parser = clap::value_parser!(u16).range(1..=256), allow_negative_numbers = true)]
    pub jobs: u16,
    /// Files larger than this are sent in parts (e.g. 64MiB; 5MiB to 5GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_threshold, value_name = "SIZE", allow_hyphen_values = true)]
    pub multipart_threshold: u64,
    /// Size of each part of a multipart upload (5MiB to 5GiB; raised automatically past 10,000 parts).
    #[arg(long, default_value = "16MiB", value_parser = parse_part_size, value_name = "SIZE", allow_hyphen_values = true)]
    pub part_size: u64,
    /// Objects larger than this are copied server-side in parts of --part-size (renames, and keeping old content for older snapshots); S3 copies at most 5GiB in one request (5MiB to 5GiB).
    #[arg(long, default_value = "5GiB", value_parser = parse_copy_cutoff, value_name = "SIZE", allow_hyphen_values = true)]
    pub copy_cutoff: u64,
    /// Label the snapshot (repeatable; saved with --set), for listings and `snapshots forget --keep-tag`.
    #[arg(long = "tag", value_name = "TAG", value_parser = parse_tag)]
    pub tags: Vec<String>,
    /// After a successful run, forget (and with --prune, prune) by these rules; saved with --set.
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Run without the keep rules and --prune saved with the set.
    #[arg(long)]
    pub no_keep: bool,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
    /// How the run reports itself when nobody watches; saved with --set.
    #[command(flatten)]
    pub monitor: MonitorArgs,
    /// The options typed on this command line (filled by `cli::matches::parse`):
    /// they win over a named set's saved ones.
    #[arg(skip)]
    pub given: crate::cli::matches::Given,
}

/// How an unattended run (cron, a systemd timer) reports how it went: a
/// metrics file for Prometheus and a command for each outcome (see
/// `cli/monitor`). None of them acts on a dry run.
#[derive(Debug, Args, Clone, Default)]
pub struct MonitorArgs {
    /// At the end of the run, write its metrics to FILE in Prometheus text format, atomically (for node_exporter's textfile collector: FILE ending in .prom in its directory); an empty value drops a saved one.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, value_parser = clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from))]
    pub metrics_file: Option<PathBuf>,
    /// After a run that ends with exit 0, run CMD with the shell (sh -c; cmd /C on Windows), the outcome in S3BACKUP_* environment variables; an empty value drops a saved one.
    #[arg(long, value_name = "CMD")]
    pub on_success: Option<String>,
    /// After a run that ends with any other exit code (error, some files failed, interrupted), run CMD as --on-success does.
    #[arg(long, value_name = "CMD")]
    pub on_failure: Option<String>,
}

/// Connection settings for S3 targets; the rest comes from the standard AWS
/// environment variables and `~/.aws` files.
#[derive(Debug, Args, Clone, Default)]
pub struct S3Args {
    /// Named profile from ~/.aws/config and ~/.aws/credentials.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub profile: Option<String>,
    /// Region (default: from the profile or AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION", value_parser = parse_region)]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. http://localhost:9000 (also AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL", value_parser = parse_endpoint)]
    pub endpoint_url: Option<String>,
    /// Address buckets as ENDPOINT/bucket (automatic for IP and localhost endpoints).
    #[arg(long, overrides_with = "no_path_style")]
    pub path_style: bool,
    /// Do not force path-style addressing (the default; turns off a --path-style saved with --set).
    #[arg(long, overrides_with = "path_style")]
    pub no_path_style: bool,
    /// Seconds to wait for a connection to the endpoint (1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = parse_timeout, allow_negative_numbers = true)]
    pub connect_timeout: u64,
    /// Seconds from the start of sending a request (an upload's body included) until the server's answer begins; then the attempt is abandoned and retried (1 to 86400). Paced uploads (--max-bandwidth) get the time their bytes need on top; the bucket check, the first request, waits at most 15 s, 30 s in all with its retries.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = parse_timeout, allow_negative_numbers = true)]
    pub read_timeout: u64,
}

/// `s3backup snapshots diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Where the backup is.
    pub target: Target,
    /// The snapshot to compare from: an ID from 's3backup snapshots', a unique prefix of one, or 'latest'.
    #[arg(value_name = "A", value_parser = parse_snapshot_id)]
    pub a: String,
    /// The snapshot to compare to, named the same ways.
    #[arg(value_name = "B", value_parser = parse_snapshot_id)]
    pub b: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `s3backup snapshots ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Where the backup is.
    pub target: Target,
    /// The snapshot: an ID from 's3backup snapshots', a unique prefix of one, or 'latest'.
    #[arg(value_name = "ID", value_parser = parse_snapshot_id)]
    pub id: String,
    /// Only these files or directories (a directory with everything under it; `d/` names a directory only), relative to the backup root.
    #[arg(value_name = "PATH", value_parser = parse_restore_path)]
    pub paths: Vec<String>,
    /// JSON lines on stdout, one object per entry.
    #[arg(long)]
    pub json: bool,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `s3backup snapshots find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Where the backup is.
    pub target: Target,
    /// Patterns in the syntax of --exclude: without a '/' a name at any depth ('*.pdf'), with one the whole path ('docs/*.pdf'), ending in '/' directories only.
    #[arg(value_name = "PATTERN", required = true, value_parser = parse_find_pattern)]
    pub patterns: Vec<String>,
    /// Search only this snapshot (an ID, a unique prefix of one, or 'latest').
    #[arg(long, value_name = "ID", value_parser = parse_snapshot_id)]
    pub snapshot: Option<String>,
    /// JSON lines on stdout, one object per match.
    #[arg(long)]
    pub json: bool,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
