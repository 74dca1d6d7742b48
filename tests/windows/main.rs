//! The Windows test suite (issue 14): the real `s3backup.exe` on Windows
//! paths, against the in-process S3 server (`tests/it/server.rs`, shared
//! with the Linux suite) and the local directory store.
//!
//! CI runs it under wine (`.ci/windows.sh`), which also maps the two extra
//! places the cases need: drive `E:` and the network share
//! `\\localhost\share`, both empty directories for this run. Elsewhere,
//! `S3BACKUP_WIN_DRIVE` (e.g. `D:`) and `S3BACKUP_WIN_SHARE` (e.g.
//! `\\nas\scratch`) name others; `S3BACKUP_IT_BIN` another binary to test.
//!
//! `drives` holds drive spellings of SOURCE and DEST (`C:rel` and a
//! bare `E:` refused) and a whole drive (`F:`, `S3BACKUP_WIN_DRIVE2`)
//! backed up into a store on itself; `harness` runs the binary and builds and compares trees; `paths` holds
//! the cases: the seed's two command forms, drive, `/`-drive, UNC and
//! verbatim store paths, paths longer than 260 characters, `/` in keys,
//! no `\\?\` in messages, and the state file's default place; `names`
//! the keys Windows cannot hold as they are (forbidden names, case twins),
//! put into moto (`moto`, run on the Linux side of wine) as a Linux
//! backup would have stored them; `readonly` read-only store objects
//! deleted and replaced, and read-only temporary files swept from DEST;
//! `store_names` the same keys held in a local store on `E:` under stand-ins;
//! `store_prune` the directories `--delete` empties there, removed;
//! `retention` a prune there judging content by its stored time;
//! `linux_store` a local store a Linux backup wrote (nanosecond mtimes),
//! verified, backed up into and restored from on Windows (100 ns times);
//! `monitor` a hook run through `cmd /C` and a metrics file replaced.
#![cfg(windows)]

#[path = "../it/server.rs"]
#[allow(dead_code, unused_imports)]
mod server;

mod drives;
mod harness;
mod linux_store;
mod meta;
mod monitor;
mod moto;
mod names;
mod paths;
mod readonly;
mod retention;
mod store_names;
mod store_prune;
