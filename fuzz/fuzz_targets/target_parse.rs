//! Fuzzes the target parser (`bucket::prefix`, `s3://…`, local forms).
//!
//! The target comes from the command line or the environment, so any text
//! can reach it. Whatever it is given, parsing must not panic, and anything
//! it accepts must survive Display → parse unchanged: the displayed form is
//! what identifies a backup set in the state database, so a target that
//! re-parsed differently would silently become another set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3backup::target::Target;

fuzz_target!(|text: &str| {
    let Ok(target) = text.parse::<Target>() else {
        return;
    };
    let shown = target.to_string();
    let again = shown
        .parse::<Target>()
        .unwrap_or_else(|e| panic!("{text:?} parsed to {target:?}, whose display {shown:?} fails: {e}"));
    assert_eq!(again, target, "{text:?} → {shown:?} re-parses differently");
    assert_eq!(again.to_string(), shown, "display is not stable");
    if let Target::S3 { prefix, .. } = &target {
        assert_eq!(target.prefix(), prefix);
        assert!(!prefix.starts_with('/') && !prefix.ends_with('/'), "{prefix:?}");
    }
    // The state database's name for the set must not panic either.
    let _ = target.canonical();
});
