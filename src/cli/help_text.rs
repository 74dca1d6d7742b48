//! The texts shown under `--help` (and as sections of the man pages):
//! examples of each command and what the exit codes mean. Kept apart from
//! the clap types of [`crate::cli::args`] so that those read as a list of
//! options.

/// Shown under the top-level `--help` (and as sections of the man page):
/// what a first-time user types, how to get more or less output, and what
/// the exit codes mean. The codes are those of [`crate::cli::Exit`].
pub(super) const TOP_HELP: &str = "\
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
pub(super) const BACKUP_EXAMPLES: &str = "\
Examples:
  s3backup backup ~/Documents mybucket::documents
  s3backup backup ~/Documents s3://mybucket/documents --delete
  s3backup backup ./photos /mnt/usb/backup          # a local directory store
  s3backup backup ~/src s3://b/src --endpoint-url http://localhost:9000 --dry-run
  s3backup backup ~/Documents mybucket::documents --set docs --tag nightly --keep-daily 7 --keep-weekly 4 --prune
  s3backup backup --set docs --metrics-file /var/lib/node_exporter/textfile/docs.prom --on-failure 'echo \"$S3BACKUP_ERROR\" | mail -s backup me'

Exit codes:
  0 ok, 1 error, 2 usage error, 3 some files failed (the rest were done; run again to retry them),
  130/143 stopped by Ctrl-C/SIGTERM (what was sent is kept; run again to finish)";

/// Shown under `s3backup shell --help`.
pub(super) const SHELL_EXAMPLES: &str = "\
Examples:
  s3backup shell
    s3backup> backup ~/Documents mybucket::documents
    s3backup> snapshots mybucket::documents
    s3backup> restore mybucket::documents ~/Restored
    s3backup> exit
  printf 'backup ~/Documents mybucket::documents\\nexit\\n' | s3backup shell
  s3backup shell --endpoint-url http://localhost:9000 --profile minio   # for every command";

/// Shown under `s3backup sets --help`.
pub(super) const SETS_EXAMPLES: &str = "\
Examples:
  s3backup backup ~/Documents s3://mybucket/documents --set docs --exclude '*.tmp'
  s3backup backup --set docs
  s3backup sets
  s3backup sets --json";

/// Shown under `s3backup snapshots --help`.
pub(super) const SNAPSHOTS_EXAMPLES: &str = "\
Examples:
  s3backup snapshots s3://mybucket/documents
  s3backup snapshots mybucket::documents --json
  s3backup snapshots forget s3://mybucket/documents --keep-last 30 --dry-run
  s3backup snapshots forget s3://mybucket/documents --keep-daily 7 --keep-monthly 12 --prune
  s3backup snapshots prune s3://mybucket/documents --dry-run
  s3backup snapshots diff s3://mybucket/documents 20261126T142230Z latest
  s3backup snapshots ls s3://mybucket/documents latest docs/
  s3backup snapshots find s3://mybucket/documents '*.pdf'";

/// Shown under `s3backup snapshots diff --help`.
pub(super) const DIFF_EXAMPLES: &str = "\
Examples:
  s3backup snapshots diff s3://mybucket/documents 20261126T142230Z latest
  s3backup snapshots diff mybucket::documents 0190a1b2 0190c3d4 --json

A path in both snapshots is modified (other content), metadata (same content,
other mode or mtime) or type_changed (file, directory, symlink). A file removed
whose content (blake3) one added holds is renamed (never an empty file); several
with one content pair by file name first, then in path order.

Exit codes:
  0 ok, 1 error (a snapshot unknown, damaged or cut short; manifest lines that
  could not be read, each named on stderr: the diff lacks them), 2 usage error";

/// Shown under `s3backup snapshots ls --help`.
pub(super) const LS_EXAMPLES: &str = "\
Examples:
  s3backup snapshots ls s3://mybucket/documents latest
  s3backup snapshots ls s3://mybucket/documents 20261126T142230Z docs/ notes.txt
  s3backup snapshots ls mybucket::documents latest --json

Exit codes:
  0 ok, 1 error (a snapshot unknown or damaged, a PATH it does not hold, manifest
  lines that could not be read), 2 usage error";

/// Shown under `s3backup snapshots find --help`.
pub(super) const FIND_EXAMPLES: &str = "\
Examples:
  s3backup snapshots find s3://mybucket/documents '*.pdf'
  s3backup snapshots find s3://mybucket/documents 'docs/report*.txt' notes.txt --json
  s3backup snapshots find mybucket::documents '*.jpg' --snapshot latest

Exit codes:
  0 ok (also when nothing matches), 1 error (a damaged snapshot named by --snapshot;
  without it, matches are still printed but some snapshot could not be searched
  whole), 2 usage error (an invalid pattern)";

/// Shown under `s3backup verify --help`.
pub(super) const VERIFY_EXAMPLES: &str = "\
Examples:
  s3backup verify s3://mybucket/documents
  s3backup verify s3://mybucket/documents --deep
  s3backup verify s3://mybucket/documents --snapshot 20261126T142230Z --json
  s3backup verify s3://mybucket/documents --deep --metrics-file /var/lib/node_exporter/textfile/verify.prom

Exit codes:
  0 every file intact, 1 missing or damaged files (or an error), 2 usage error,
  3 some files could not be read (network, throttling, access) and none was found damaged: run it again";

/// Shown under `s3backup state --help`.
pub(super) const STATE_EXAMPLES: &str = "\
Examples:
  s3backup state sets
  s3backup state files --set 1 'docs/*.pdf'
  s3backup state runs --limit 5
  s3backup state rebuild ~/Documents s3://mybucket/documents";

/// Shown under `s3backup completions --help`: where each shell looks for them.
pub(super) const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  s3backup completions bash > ~/.local/share/bash-completion/completions/s3backup
  s3backup completions zsh > ~/.zfunc/_s3backup     # with fpath+=(~/.zfunc) before compinit
  s3backup completions fish > ~/.config/fish/completions/s3backup.fish";

/// Shown under `s3backup man --help`.
pub(super) const MAN_EXAMPLES: &str = "\
Examples:
  s3backup man > s3backup.1 && man ./s3backup.1
  s3backup man --all ~/.local/share/man/man1      # s3backup.1, s3backup-backup.1, ...";

/// Shown under `s3backup restore --help`.
pub(super) const RESTORE_EXAMPLES: &str = "\
Examples:
  s3backup restore mybucket::documents ~/Restored
  s3backup restore s3://mybucket/documents ~/Restored --snapshot 20261126T142230Z
  s3backup restore s3://mybucket/documents ~/Restored docs/report.pdf photos/
  s3backup restore s3://other-tools-bucket/data ./data --from-listing";
