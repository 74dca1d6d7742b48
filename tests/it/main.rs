//! The one integration-test binary of s3backup (one binary keeps link time
//! down). `server` is an in-process S3 server and `common` runs the real
//! `s3backup` binary with a clean environment; the other modules are tests:
//! `server_selftest` checks the server itself, `backup` and `backup_local`
//! check `s3backup backup` against S3 and against a local directory store,
//! `restore` and `restore_local` check `s3backup restore` and `snapshots`
//! the same two ways (`restore_dry_run`: what `restore --dry-run` lists,
//! that it changes nothing, and that the restore then does just that),
//! and `versioned` checks restores of older snapshots on
//! a versioned bucket (moto's S3 server; skipped when it is not installed),
//! `visible` that names holding control characters print escaped,
//! `inspect` checks `state`, `snapshots forget`, `verify` and `state rebuild`,
//! `security` checks file permissions, secrets in output and locking,
//! `confine_restore` that a restore changes nothing outside DEST (no link
//! in DEST followed), modes of created directories, special bits, and the
//! removal of a killed restore's temporary files,
//! `edge` and `edge_fs` check file-system edge cases (the latter files that
//! change, vanish or cannot be read mid-run, and resumed uploads), `bad_input` checks that wrong
//! invocations and environments fail with one clear error line, and `crash`
//! kills backups with SIGKILL at random points and checks that a re-run
//! leaves the bucket, the state file and a restore intact.
//! `confine_store` checks that the local store never writes, deletes or
//! reads through a link inside it, and that the next backup removes what a
//! killed one left in its temporary area (not what a running one writes).
//! `faults` runs backups and restores through `proxy`, a fault-injecting
//! HTTP proxy in front of the server, and checks retries, clean failures
//! and timeouts. `signals` stops backups and restores with SIGINT and
//! SIGTERM mid-run and checks that they stop cleanly (exit 130/143). `filters` checks `--exclude`, `--include`, `--exclude-from`
//! and `.s3backupignore` on backup and restore.
//! `integrity` checks that what a backup records is what the store holds
//! (same-size rewrites with mtimes put back, bytes changed between hash and
//! upload, bodies damaged on the way, stale rows after failed uploads).
//! `damaged` checks that a damaged manifest (or a stray object named like
//! one) does not take the other snapshots down, in listings, `forget`,
//! restores, `verify` and state rebuilds.
//! `sets` checks named backup sets, `progress_out` the progress output,
//! `closed_pipe` that every printing command ends quietly on a closed stdout,
//! `shell` the interactive shell with piped input. `props` holds property tests (proptest) of the path/key mapping,
//! `safe_path` and the target parser.
//! `bandwidth` times `--max-bandwidth` runs (backup, restore, multipart,
//! S3 and local store). `rclone` checks that s3backup and the real rclone binary read each
//! other's `mtime` metadata (skipped when rclone is not installed).
//! `ownfiles` checks that s3backup's own files (state, locks, history) and a
//! local store are never backed up into themselves, that one state file
//! reached through a symlink takes one lock, and state-directory errors.
//! `help` checks shell completions, the man page, the examples in every
//! `--help` and that piped output has no colours.
//! `case_dest` checks restores onto a case-folding DEST (an exFAT image),
//! `exfat_source` backups of a tree restored onto one (its keys kept);
//! `etag_copy` a local store copied onto one (coarser mtimes): verified,
//! backed up into and restored from as it was;
//! `case_fold` which keys DEST's own table folds, a DEST file spelled
//! otherwise, and dry runs onto such a DEST.
//! `typechange` checks backups of paths whose type changed (symlink, file
//! and directory swapped at one path) on the local store, S3 and moto.
//! `accounting` checks the request counts of runs against the server's log.
//! `browse` checks `snapshots diff`, `ls` and `find` over three backups
//! with edits, a rename, deletions and type and mode changes between them.
//! `monitor` checks `--metrics-file` and the `--on-success`/`--on-failure`
//! hooks of backup and verify.
//! `exclude` checks `--exclude-caches`, `--exclude-if-present`,
//! `--one-file-system` and `--exclude-larger-than`; `verify_sample`
//! checks `verify --deep --sample` (the slice each run reads, remembered).
//! `guard` checks the delete guard and the change tripwire (issue 16):
//! refused runs change nothing; limits, allow flags, dry runs, `--json`.
//! `garage_cluster` runs backups, restores and deep verifies against a
//! three-node Garage cluster (`garage`, its harness), nodes killed mid-run.
//! `store_rules` checks rules that differ between stores (issue 17): ETags
//! that are not MD5s, stores that ignore conditions, listings without
//! ETags, keys a store refuses and `Retry-After`, through the proxy's
//! rewrites (`rewrite`) or on moto.

// The suite drives the binary with Unix signals, modes, fds and symlinks;
// the Windows build has its own suite (tests/windows).
#![cfg(unix)]

mod common;
mod garage;
mod proxy;
mod prune_crash;
mod rewrite;
mod server;

mod accounting;
mod backup;
mod backup_local;
mod bad_input;
mod bandwidth;
mod browse;
mod case_dest;
mod case_fold;
mod checksums;
mod closed_pipe;
mod confine_restore;
mod confine_store;
mod crash;
mod damaged;
mod edge;
mod edge_fs;
mod engine;
mod etag_copy;
mod exclude;
mod exfat_source;
mod faults;
mod filters;
mod flow;
mod garage_cluster;
mod guard;
mod help;
mod history_keep;
mod history_restore;
mod inspect;
mod integrity;
mod monitor;
mod object_lock;
mod ownfiles;
mod progress_out;
mod props;
mod rclone;
mod readonly_state;
mod restore;
mod restore_dry_run;
mod restore_local;
mod retention;
mod security;
mod server_selftest;
mod sets;
mod shell;
mod signals;
mod store_fold;
mod store_rules;
mod typechange;
mod verify_sample;
mod versioned;
mod visible;
