//! `--on-success` through `cmd /C` and `--metrics-file` renamed over an
//! existing file, on Windows (issue 16; the behaviour is tested in full on
//! Linux in `tests/it/monitor.rs`).

use crate::harness::{run, sample, scratch, write_tree};

/// A hook sees the outcome in `%S3BACKUP_*%` variables, and a second run
/// replaces the metrics file the first wrote.
#[test]
fn hooks_run_with_cmd_and_the_metrics_file_is_replaced() {
    let home = scratch(&std::env::temp_dir());
    let src = home.path().join("src");
    write_tree(&src, &sample());
    let store = home.path().join("store");
    let state = home.path().join("state.db");
    let out = home.path().join("hook.txt");
    let metrics = home.path().join("s3backup.prom");
    let hook = format!(
        "echo %S3BACKUP_OUTCOME% %S3BACKUP_FILES_UPLOADED%> {}",
        out.display()
    );
    let args = |hook: &str| {
        [
            "--state".to_string(),
            state.display().to_string(),
            "backup".into(),
            src.display().to_string(),
            store.display().to_string(),
            "--metrics-file".into(),
            metrics.display().to_string(),
            "--on-success".into(),
            hook.to_string(),
        ]
    };
    run(home.path(), args(&hook)).expect(0);
    let said = std::fs::read_to_string(&out).expect("the hook wrote its file");
    assert_eq!(said.trim(), format!("success {}", sample().len()));
    let first = std::fs::read_to_string(&metrics).expect("the metrics file");
    assert!(
        first.contains("s3backup_last_run_success{command=\"backup\""),
        "{first}"
    );
    run(home.path(), args("exit 0")).expect(0);
    let second = std::fs::read_to_string(&metrics).expect("the metrics file");
    assert_ne!(first, second, "the second run replaced the file");
    assert!(second.contains("outcome=\"unchanged\"} 5"), "{second}");
    let left: Vec<_> = std::fs::read_dir(home.path())
        .expect("read the directory")
        .map(|e| e.expect("an entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
