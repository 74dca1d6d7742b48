//! Runs a command and reports its peak RSS, CPU time and wall time, the way
//! GNU time does: `wait4` on the child returns its `ru_maxrss`.
//!
//! benches/compare.py starts every measured command through this helper
//! rather than straight from Python. Linux sets a child's peak RSS at `exec`
//! to at least the RSS of the process it was forked from, so a command
//! started from the Python harness would report the harness's own memory
//! (tens to hundreds of MiB) whenever the tool needs less. Started from this
//! small process, the floor is this process's ~1-2 MiB.
//!
//! Usage: bench-rusage REPORT_FILE COMMAND [ARGS...]
//! Writes "maxrss_kib utime_s stime_s wall_s raw_wait_status" to REPORT_FILE
//! and exits with the command's exit code (128 + signal if it was killed).
//!
//! Built by benches/compare.py with `rustc -O`; std only, Linux only.

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, exit};
use std::time::Instant;

#[repr(C)]
#[derive(Default)]
struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: bench-rusage REPORT_FILE COMMAND [ARGS...]");
        exit(2);
    }
    let report = &args[0];
    let start = Instant::now();
    let child = match Command::new(&args[1]).args(&args[2..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench-rusage: cannot start {:?}: {e}", args[1]);
            exit(127);
        }
    };
    let pid = child.id() as i32;
    let mut status = 0i32;
    let mut ru = Rusage::default();
    loop {
        let r = unsafe { wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(4) {
            continue; // EINTR
        }
        eprintln!("bench-rusage: wait4: {err}");
        exit(125);
    }
    let wall = start.elapsed().as_secs_f64();
    let secs = |t: &Timeval| t.sec as f64 + t.usec as f64 / 1e6;
    let line = format!(
        "{} {:.6} {:.6} {:.6} {}\n",
        ru.maxrss,
        secs(&ru.utime),
        secs(&ru.stime),
        wall,
        status
    );
    if let Err(e) = std::fs::File::create(report).and_then(|mut f| f.write_all(line.as_bytes())) {
        eprintln!("bench-rusage: cannot write {report:?}: {e}");
        exit(125);
    }
    let code = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    };
    exit(code);
}
