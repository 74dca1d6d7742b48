//! Command-line types (clap derive) and nothing else: no logic lives here.
//! `app.rs` turns them into the options the engines take.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};

use crate::target::Target;

/// Shown under the top-level `--help` (and as sections of the man page):
/// what a first-time user types, how to get more or less output, and what
/// the exit codes mean. The codes are those of [`crate::cli::Exit`].
const TOP_HELP: &str = "\
Examples:
  s3backup backup ~/Documents s3://my-bucket/documents
  s3backup restore s3://my-bucket/documents ~/Restored
  s3backup snapshots s3://my-bucket/documents
  s3backup completions bash > ~/.local/share/bash-completion/completions/s3backup

Output:
  -v logs what is being done (info), -vv adds debug detail; -q prints only errors, no summary.
  RUST_LOG (e.g. RUST_LOG=s3backup=debug,aws=info) replaces the log filter of -v/-vv/-q.
  Colours and progress bars appear only on a terminal; colours never with NO_COLOR set.

Exit codes:
  0  ok: everything was done
  1  error: nothing, or not everything, could be done (bucket, credentials, source, state file;
     verify found missing or damaged files)
  2  usage error: the command line is wrong
  3  partial: some files failed, the others were done; run the same command again to retry them
     (verify: some files could not be read, none was found missing or damaged)
  130, 143  backup or restore stopped by Ctrl-C (SIGINT), SIGTERM: what was done is kept;
     run it again to finish (a second Ctrl-C stops at once)";

/// Shown under `s3backup backup --help`.
const BACKUP_EXAMPLES: &str = "\
Examples:
  s3backup backup ~/Documents mybucket::documents
  s3backup backup ~/Documents s3://mybucket/documents --delete
  s3backup backup ./photos /mnt/usb/backup          # a local directory store
  s3backup backup ~/src s3://b/src --endpoint-url http://localhost:9000 --dry-run

Exit codes:
  0 ok, 1 error, 2 usage error, 3 some files failed (the rest were done; run again to retry them),
  130/143 stopped by Ctrl-C/SIGTERM (what was sent is kept; run again to finish)";

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
    /// State database file [default: $XDG_STATE_HOME/s3backup/state.db].
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
    Backup(BackupArgs),
    /// Restore a backup (a snapshot, or a live listing of the bucket) into DEST.
    #[command(after_help = RESTORE_EXAMPLES)]
    Restore(RestoreArgs),
    /// List the snapshots (backup runs) stored under TARGET, or forget old ones.
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
    Shell,
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

/// Shown under `s3backup shell --help`.
const SHELL_EXAMPLES: &str = "\
Examples:
  s3backup shell
    s3backup> backup ~/Documents mybucket::documents
    s3backup> snapshots mybucket::documents
    s3backup> restore mybucket::documents ~/Restored
    s3backup> exit
  printf 'backup ~/Documents mybucket::documents\\nexit\\n' | s3backup shell";

/// Shown under `s3backup sets --help`.
const SETS_EXAMPLES: &str = "\
Examples:
  s3backup backup ~/Documents s3://mybucket/documents --set docs --exclude '*.tmp'
  s3backup backup --set docs
  s3backup sets
  s3backup sets --json";

/// Shown under `s3backup snapshots --help`.
const SNAPSHOTS_EXAMPLES: &str = "\
Examples:
  s3backup snapshots s3://mybucket/documents
  s3backup snapshots mybucket::documents --json
  s3backup snapshots forget s3://mybucket/documents --keep-last 30 --dry-run";

/// Shown under `s3backup verify --help`.
const VERIFY_EXAMPLES: &str = "\
Examples:
  s3backup verify s3://mybucket/documents
  s3backup verify s3://mybucket/documents --deep
  s3backup verify s3://mybucket/documents --snapshot 20261126T142230Z --json

Exit codes:
  0 every file intact, 1 missing or damaged files (or an error), 2 usage error,
  3 some files could not be read (network, throttling, access) and none was found damaged: run it again";

/// Shown under `s3backup state --help`.
const STATE_EXAMPLES: &str = "\
Examples:
  s3backup state sets
  s3backup state files --set 1 'docs/*.pdf'
  s3backup state runs --limit 5
  s3backup state rebuild ~/Documents s3://mybucket/documents";

/// Shown under `s3backup completions --help`: where each shell looks for them.
const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  s3backup completions bash > ~/.local/share/bash-completion/completions/s3backup
  s3backup completions zsh > ~/.zfunc/_s3backup     # with fpath+=(~/.zfunc) before compinit
  s3backup completions fish > ~/.config/fish/completions/s3backup.fish";

/// Shown under `s3backup man --help`.
const MAN_EXAMPLES: &str = "\
Examples:
  s3backup man > s3backup.1 && man ./s3backup.1
  s3backup man --all ~/.local/share/man/man1      # s3backup.1, s3backup-backup.1, ...";

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

/// Shown under `s3backup restore --help`.
const RESTORE_EXAMPLES: &str = "\
Examples:
  s3backup restore mybucket::documents ~/Restored
  s3backup restore s3://mybucket/documents ~/Restored --snapshot 20261126T142230Z
  s3backup restore s3://mybucket/documents ~/Restored docs/report.pdf photos/
  s3backup restore s3://other-tools-bucket/data ./data --from-listing";

/// `s3backup restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where the backup is: bucket::prefix, s3://bucket/prefix, or a local directory store.
    pub target: Target,
    /// Directory to restore into (created if missing).
    #[arg(value_hint = ValueHint::DirPath)]
    pub dest: PathBuf,
    /// Only these files or directories (paths relative to the backup root).
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
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also print progress events on stdout while running, one JSON object per line (implies --json).
    #[arg(long)]
    pub json_progress: bool,
    /// Files and requests in flight at once.
    #[arg(short, long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256), allow_negative_numbers = true)]
    pub jobs: u16,
    /// Limit the bytes received to RATE per second (e.g. 2MiB, 500K), paced as they come, shared by all downloads.
    #[arg(long, value_name = "RATE", value_parser = parse_size, allow_hyphen_values = true)]
    pub max_bandwidth: Option<u64>,
    /// Which paths to bring back.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `--exclude`, `--include` and `--exclude-from`: which paths a backup
/// takes or a restore brings back (gitignore syntax; `--include` wins over
/// `--exclude`, both over `.s3backupignore` files).
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Leave out paths matching GLOB (gitignore syntax, matched against the path relative to the source: `*.tmp`, `/build`, `cache/`, `**/*.log`). Repeatable.
    #[arg(long, value_name = "GLOB", value_parser = parse_pattern)]
    pub exclude: Vec<String>,
    /// Take paths matching GLOB even if an --exclude or an ignore file leaves them out (`--exclude '*' --include '*.txt'`). Repeatable.
    #[arg(long, value_name = "GLOB", value_parser = parse_pattern)]
    pub include: Vec<String>,
    /// Read --exclude patterns from FILE, one per line ('#' comments). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
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
    #[arg(long, value_name = "ALGORITHM", value_parser = ["AES256", "aws:kms", "aws:kms:dsse"])]
    pub sse: Option<String>,
    /// KMS key (ID, ARN or alias) for --sse aws:kms (default: the account's S3 key).
    #[arg(long, value_name = "KEY", requires = "sse")]
    pub sse_kms_key_id: Option<String>,
    /// Canned ACL of new objects (default: none sent, so the bucket's owner settings apply).
    #[arg(long, value_name = "ACL", value_parser = [
        "private", "public-read", "public-read-write", "authenticated-read",
        "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
    ])]
    pub acl: Option<String>,
}

/// Checks that a filter pattern is valid gitignore syntax.
pub fn parse_pattern(text: &str) -> Result<String, String> {
    crate::fs::filter::Filters::new(&[text.to_string()], &[], &[])
        .map(|_| text.to_string())
        .map_err(|e| match e {
            crate::fs::filter::FilterError::Pattern { cause, .. } => {
                format!("'{text}' is not a valid pattern: {cause}")
            }
            other => other.to_string(),
        })
}

/// `s3backup snapshots`: list them, or `snapshots forget` old ones.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SnapshotsArgs {
    /// Remove old snapshots.
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
    /// Delete old snapshot manifests (never the newest readable one; the files they name stay).
    #[command(after_help = "\
Damaged snapshots (listed as such by 's3backup snapshots') do not count as
kept and are never removed by --keep-last/--keep-within: name one to remove it.

Examples:
  s3backup snapshots forget s3://mybucket/documents --keep-last 30
  s3backup snapshots forget s3://mybucket/documents --keep-within 90d --dry-run
  s3backup snapshots forget mybucket::documents --keep-last 10 --keep-within 1y --json
  s3backup snapshots forget mybucket::documents 20260301T120000Z")]
    Forget(ForgetArgs),
}

/// `s3backup snapshots forget`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("keep").required(true).multiple(true).args(["keep_last", "keep_within", "ids"])))]
pub struct ForgetArgs {
    /// Where the backup is.
    pub target: Target,
    /// Snapshots to remove by ID (or unique prefix), damaged or not; never the newest readable one.
    #[arg(value_name = "ID", value_parser = parse_snapshot_id)]
    pub ids: Vec<String>,
    /// Keep the newest N snapshots.
    #[arg(long, value_name = "N", value_parser = parse_keep_last, allow_negative_numbers = true)]
    pub keep_last: Option<usize>,
    /// Keep snapshots younger than this (e.g. 30d, 12h, 1y).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub keep_within: Option<std::time::Duration>,
    /// Print what would be removed; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
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
    /// Also download every file and check its blake3.
    #[arg(long)]
    pub deep: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Requests in flight at once.
    #[arg(short, long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256), allow_negative_numbers = true)]
    pub jobs: u16,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
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
    /// Files recorded as backed up, optionally of one set and matching a glob (e.g. 'docs/*.pdf').
    #[command(after_help = "\
Examples:
  s3backup state files
  s3backup state files --set 1 'docs/*.pdf'
  s3backup state files --set 2 --json")]
    Files {
        /// Only this set (an ID from 'state sets').
        #[arg(long, value_name = "ID", value_parser = parse_set_id, allow_negative_numbers = true)]
        set: Option<i64>,
        /// Glob on the relative path ('*' also matches '/'; '[abc]' a class, '\[' is no escape: use '[[]').
        #[arg(value_parser = parse_state_glob)]
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
        /// Only this set.
        #[arg(long, value_name = "ID", value_parser = parse_set_id, allow_negative_numbers = true)]
        set: Option<i64>,
        /// JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run history, newest first.
    #[command(after_help = "\
Examples:
  s3backup state runs
  s3backup state runs --set 1 --limit 5
  s3backup state runs --json")]
    Runs {
        /// Only this set.
        #[arg(long, value_name = "ID", value_parser = parse_set_id, allow_negative_numbers = true)]
        set: Option<i64>,
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
        #[arg(value_hint = ValueHint::DirPath)]
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
    #[arg(required_unless_present = "set", value_hint = ValueHint::DirPath)]
    pub source: Option<PathBuf>,
    /// Where to: bucket::prefix, s3://bucket/prefix, or a local directory (file:///path, /path, ./path, ~/path).
    #[arg(required_unless_present = "set")]
    pub target: Option<Target>,
    /// Name this set and remember its options (with SOURCE and TARGET), or run the set saved under NAME (without them).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub set: Option<String>,
    /// Delete remote files whose local file was deleted (default: keep them).
    #[arg(long)]
    pub delete: bool,
    /// Print what would be done; change nothing locally or remotely.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Back up what symlinks point to instead of the links (loops are reported and skipped).
    #[arg(short = 'L', long)]
    pub follow_symlinks: bool,
    /// Hash every file, even those whose size, mtime, change time and inode are as recorded (for file systems whose change times can't be trusted); only changed content is sent.
    #[arg(long)]
    pub rehash: bool,
    /// Which paths to take.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// How new objects are stored.
    #[command(flatten)]
    pub write: S3WriteArgs,
    /// Limit the bytes sent and received to RATE per second (e.g. 2MiB, 500K), paced as they go, shared by all transfers.
    #[arg(long, value_name = "RATE", value_parser = parse_size, allow_hyphen_values = true)]
    pub max_bandwidth: Option<u64>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also print progress events on stdout while running, one JSON object per line (implies --json).
    #[arg(long)]
    pub json_progress: bool,
    /// Files and requests in flight at once.
    #[arg(short, long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256), allow_negative_numbers = true)]
    pub jobs: u16,
    /// Files larger than this are sent in parts (e.g. 64MiB; 5MiB to 5GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_threshold, value_name = "SIZE", allow_hyphen_values = true)]
    pub multipart_threshold: u64,
    /// Size of each part of a multipart upload (5MiB to 5GiB; raised automatically past 10,000 parts).
    #[arg(long, default_value = "16MiB", value_parser = parse_part_size, value_name = "SIZE", allow_hyphen_values = true)]
    pub part_size: u64,
    /// S3 connection settings.
    #[command(flatten)]
    pub s3: S3Args,
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
    #[arg(long)]
    pub path_style: bool,
    /// Seconds to wait for a connection to the endpoint (1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = parse_timeout, allow_negative_numbers = true)]
    pub connect_timeout: u64,
    /// Seconds from the start of sending a request (an upload's body included) until the server's answer begins; then the attempt is abandoned and retried (1 to 86400). Paced uploads (--max-bandwidth) get the time their bytes need on top; the bucket check, the first request, waits at most 15 s, 30 s in all with its retries.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = parse_timeout, allow_negative_numbers = true)]
    pub read_timeout: u64,
}

/// Parses sizes like `5MiB`, `8M`, `1G`, `1048576` (K, M, G, T are powers
/// of 1024), in bytes. A negative one (`-5`, which clap is told to pass on
/// rather than take for a flag) is refused as such.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.starts_with('-') && t[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "'{text}' is negative: give a size such as 64MiB, 500K or 1048576"
        ));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 5MiB, 64M, 1G, 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit (use K, M, G or T, e.g. 64MiB)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Checks an `--endpoint-url` before any request: an http(s) URL with a
/// host and, if given, a numeric port. The SDK would otherwise report a
/// malformed one only as a failed connection.
pub fn parse_endpoint(text: &str) -> Result<String, String> {
    const EXAMPLE: &str = "e.g. http://localhost:9000 or https://s3.example.com";
    let lower = text.to_ascii_lowercase();
    let scheme_len = if lower.starts_with("http://") {
        7
    } else if lower.starts_with("https://") {
        8
    } else {
        return Err(format!("'{text}' is not an http:// or https:// URL ({EXAMPLE})"));
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "'{text}' contains a space or control character ({EXAMPLE})"
        ));
    }
    let authority = text[scheme_len..].split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => (addr, rest.strip_prefix(':')),
            None => ("", None),
        },
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err(format!("'{text}' has no host name ({EXAMPLE})"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("'{text}' has an invalid port '{port}' ({EXAMPLE})"));
    }
    Ok(text.to_string())
}

/// Checks a `--region` name: letters, digits, '-', '_' and '.', as region
/// names of S3 and S3-compatible servers are.
pub fn parse_region(text: &str) -> Result<String, String> {
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "'{text}' is not a region name (letters, digits and '-', e.g. us-east-1, eu-west-3)"
        ));
    }
    Ok(text.to_string())
}

/// `--multipart-threshold`: a size within S3's part limits (5MiB to 5GiB),
/// since no object above 5GiB can be sent whole and parts below 5MiB are
/// refused. The engine used to raise or lower other values without a word.
fn parse_threshold(text: &str) -> Result<u64, String> {
    let n = parse_size(text)?;
    if !(crate::store::MIN_PART_SIZE..=crate::store::MAX_SINGLE_OBJECT).contains(&n) {
        return Err(format!(
            "multipart threshold '{text}' is outside 5MiB to 5GiB (S3's smallest part and largest single upload)"
        ));
    }
    Ok(n)
}

/// A whole number, 0 or more, for the options that count or time things.
/// Negative ones (which clap passes on for these options instead of taking
/// them for flags) are named as such rather than as "unexpected argument".
fn parse_whole(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix('-')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("'{text}' is negative"));
    }
    t.parse::<u64>()
        .map_err(|e| format!("'{text}' is not a whole number ({e})"))
}

/// The longest `--connect-timeout` and `--read-timeout`: a day. Nothing
/// useful waits longer, and sums of timeouts then cannot overflow.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// `--connect-timeout` and `--read-timeout`, in seconds: 1 to
/// [`MAX_TIMEOUT_SECS`]. 0 used to be replaced by the default without a word.
pub fn parse_timeout(text: &str) -> Result<u64, String> {
    match parse_whole(text)? {
        0 => Err("a timeout of 0 seconds would never let a request finish: give 1 or more".into()),
        n if n > MAX_TIMEOUT_SECS => Err(format!(
            "'{text}' seconds is more than a day ({MAX_TIMEOUT_SECS})"
        )),
        n => Ok(n),
    }
}

/// `forget --keep-last N`: 0 or more (0 keeps only the newest, which is never removed).
fn parse_keep_last(text: &str) -> Result<usize, String> {
    let n = parse_whole(text)?;
    usize::try_from(n).map_err(|_| format!("'{text}' is too large"))
}

/// `forget --keep-within`: a duration as humantime reads it (`30d`, `12h`,
/// `1y`); a negative one is named as such.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if text.trim().starts_with('-') {
        return Err(format!(
            "'{text}' is negative: give a duration such as 30d, 12h or 1y"
        ));
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// `state … --set ID`: a set ID from 'state sets', which are 1 or more.
fn parse_set_id(text: &str) -> Result<i64, String> {
    match parse_whole(text)? {
        0 => Err("set IDs start at 1 (see 's3backup state sets')".into()),
        n => i64::try_from(n).map_err(|_| format!("'{text}' is too large")),
    }
}

/// `state runs --limit N`: 1 or more (0 would print nothing and say nothing).
fn parse_limit(text: &str) -> Result<u32, String> {
    match parse_whole(text)? {
        0 => Err("a limit of 0 would show no runs: give 1 or more".into()),
        n => u32::try_from(n).map_err(|_| format!("'{text}' is too large")),
    }
}

/// A `--set` or `--profile` name: not empty or blank (an empty profile
/// name would quietly mean none, an empty set name a set no one can name).
pub fn parse_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty name".into());
    }
    Ok(text.to_string())
}

/// A snapshot ID as typed: not empty. An empty one is a prefix of every
/// ID, so it would be reported as "ambiguous" (or, with one snapshot,
/// quietly pick it).
pub fn parse_snapshot_id(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "empty snapshot name: give an ID from 's3backup snapshots', a unique prefix of one, or 'latest'"
                .into(),
        );
    }
    Ok(text.to_string())
}

/// The PATTERN of `state files`: an SQLite `GLOB` (`*`, `?`, `[...]`,
/// `[^...]`; see <https://sqlite.org/lang_expr.html#like>). SQLite reads a
/// `[` without its `]` as a class that never matches, so such a pattern
/// would list nothing and say nothing; it is refused, as is an empty one.
pub fn parse_state_glob(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty pattern: give a glob such as 'docs/*.pdf'".into());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '[' {
            i += 1;
            continue;
        }
        // A ']' right after '[' or '[^' is a member of the class, not its end.
        let mut j = i + 1;
        if chars.get(j) == Some(&'^') {
            j += 1;
        }
        j += 1;
        match chars
            .get(j..)
            .and_then(|rest| rest.iter().position(|&c| c == ']'))
        {
            Some(at) => i = j + at + 1,
            None => {
                return Err(format!(
                    "'{text}' has a '[' that is never closed (a literal '[' is written '[[]')"
                ));
            }
        }
    }
    Ok(text.to_string())
}

fn parse_part_size(text: &str) -> Result<u64, String> {
    let n = parse_size(text)?;
    if !(crate::store::MIN_PART_SIZE..=crate::store::MAX_PART_SIZE).contains(&n) {
        return Err(format!(
            "part size '{text}' is outside S3's limits of 5MiB to 5GiB"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_part_size("1MiB").is_err());
    }

    #[test]
    fn checks_endpoints_and_regions() {
        for ok in [
            "http://localhost:9000",
            "https://s3.example.com",
            "http://127.0.0.1:9000/",
            "http://[::1]:9000",
            "HTTPS://host",
        ] {
            assert_eq!(parse_endpoint(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "not a url",
            "127.0.0.1:9000",
            "ftp://host",
            "http://",
            "http://:9000",
            "http://host:port",
            "http://host:99999",
            "http://ho st",
        ] {
            assert!(parse_endpoint(bad).unwrap_err().contains(bad), "{bad}");
        }
        assert!(parse_region("us-east-1").is_ok());
        assert!(parse_region("garage").is_ok());
        for bad in ["", "eu west 1", "us-east-1\n"] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_names_and_patterns_are_checked() {
        assert!(parse_size("-5").unwrap_err().contains("negative"));
        assert!(parse_size("--json").unwrap_err().contains("not a size"));
        assert!(parse_threshold("0").is_err());
        assert!(parse_threshold("6GiB").is_err());
        assert_eq!(parse_threshold("5MiB"), Ok(5 << 20));
        assert!(parse_timeout("0").unwrap_err().contains("0 seconds"));
        assert!(parse_timeout("-3").unwrap_err().contains("negative"));
        assert!(parse_timeout("86401").unwrap_err().contains("more than a day"));
        assert_eq!(parse_timeout("86400"), Ok(86_400));
        assert_eq!(parse_keep_last("0"), Ok(0));
        assert!(parse_keep_last("-1").unwrap_err().contains("negative"));
        assert!(parse_duration("-1d").unwrap_err().contains("negative"));
        assert!(parse_set_id("0").is_err() && parse_set_id("-2").is_err());
        assert!(parse_limit("0").is_err());
        assert!(parse_snapshot_id("").unwrap_err().contains("empty snapshot name"));
        assert!(parse_name(" ").is_err());
        for ok in ["docs/*.pdf", "[]]x", "[^]]", "a[[]b", "[a-z]?"] {
            assert_eq!(parse_state_glob(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "a[", "[]", "[^]", "x[ab"] {
            assert!(parse_state_glob(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
