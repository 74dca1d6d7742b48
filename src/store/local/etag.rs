//! When two of the local store's ETags (`{size:x}-{mtime_ns:x}`, see
//! [`super::stat::Stat::etag`]) name the same content.
//!
//! The ETag is made of a stat, and a stat's mtime keeps only what the disk
//! keeps: ext4 nanoseconds, NTFS (and Windows' file times) 100 ns, exFAT
//! 10 ms (1 s through some FUSE drivers), FAT and many NAS shares 1 or 2 s.
//! A store copied with `cp -a` to a USB disk, or read from Windows, lists
//! every file with an mtime cut to that disk's step, so the ETag a snapshot
//! recorded no longer equals the listed one although the bytes are the
//! same. Two ETags therefore agree when the sizes are equal and the mtimes
//! are equal once the finer one is cut (rounded towards minus infinity) to
//! the coarser one's step. The step is read off the value: the largest of
//! 2 s and the powers of ten from 1 ns to 1 s that divides it (an mtime cut
//! to 10 ms is a multiple of 10 ms). A file rewritten with the same size
//! within one step of a coarse disk is not told apart (as on that disk
//! itself); `verify --deep` still compares the bytes' blake3.
//!
//! ETags of any other shape are compared exactly.

/// The coarsest step an mtime is taken to be cut to, in nanoseconds (FAT's 2 s).
const COARSEST_NS: i128 = 2_000_000_000;

/// Whether the ETag `held` (listed or read now) and `recorded` name the
/// same content: equal, or both local-store ETags with equal sizes and
/// mtimes that agree at the coarser one's step.
pub(super) fn agree(held: &str, recorded: &str) -> bool {
    if held == recorded {
        return true;
    }
    match (parse(held), parse(recorded)) {
        (Some((size_a, a)), Some((size_b, b))) if size_a == size_b => {
            let step = step_of(a).max(step_of(b));
            a.div_euclid(step) == b.div_euclid(step)
        }
        _ => false,
    }
}

/// Size and mtime (ns) of an ETag in the local store's shape: two lowercase
/// hex numbers, the mtime as `i128` in two's complement (as `{:x}` writes a
/// negative one).
fn parse(etag: &str) -> Option<(u64, i128)> {
    let (size, mtime) = etag.split_once('-')?;
    let hex = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(size) || !hex(mtime) {
        return None;
    }
    let size = u64::from_str_radix(size, 16).ok()?;
    let mtime = u128::from_str_radix(mtime, 16).ok()? as i128;
    Some((size, mtime))
}

/// The step an mtime (ns) was cut to, as far as its value shows: 2 s, or
/// the largest power of ten up to 1 s that divides it.
fn step_of(mtime_ns: i128) -> i128 {
    if mtime_ns.rem_euclid(COARSEST_NS) == 0 {
        return COARSEST_NS;
    }
    let mut step = 1_000_000_000;
    while step > 1 && mtime_ns.rem_euclid(step) != 0 {
        step /= 10;
    }
    step
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ETag as the local store writes it.
    fn etag(size: u64, mtime_ns: i64) -> String {
        format!("{size:x}-{:x}", i128::from(mtime_ns))
    }

    /// An ext4 mtime: nanoseconds that no coarser step divides.
    const FINE: i64 = 1_796_008_410_544_901_895;

    #[test]
    fn an_mtime_cut_to_a_coarser_step_agrees_either_way_round() {
        for (step, what) in [
            (100, "100 ns (NTFS, Windows)"),
            (10_000_000, "10 ms (exFAT)"),
            (1_000_000_000, "1 s"),
            (2_000_000_000, "2 s (FAT)"),
        ] {
            let cut = FINE.div_euclid(step) * step;
            assert_ne!(cut, FINE);
            assert!(agree(&etag(7, cut), &etag(7, FINE)), "{what}: coarse held");
            assert!(agree(&etag(7, FINE), &etag(7, cut)), "{what}: coarse recorded");
        }
    }

    #[test]
    fn a_negative_mtime_is_cut_towards_minus_infinity() {
        let fine = -1_500_000_001_i64;
        assert!(agree(&etag(3, -2_000_000_000), &etag(3, fine)));
        assert!(!agree(&etag(3, -1_000_000_000), &etag(3, fine)));
    }

    #[test]
    fn another_size_or_an_mtime_a_step_off_differs() {
        let cut_10ms = FINE.div_euclid(10_000_000) * 10_000_000;
        assert!(!agree(&etag(8, cut_10ms), &etag(7, FINE)), "size");
        assert!(
            !agree(&etag(7, cut_10ms + 10_000_000), &etag(7, FINE)),
            "next 10 ms"
        );
        assert!(
            !agree(&etag(7, cut_10ms - 10_000_000), &etag(7, FINE)),
            "previous 10 ms"
        );
        let cut_100ns = FINE.div_euclid(100) * 100;
        assert!(!agree(&etag(7, cut_100ns + 100), &etag(7, FINE)), "next 100 ns");
        let cut_2s = FINE.div_euclid(2_000_000_000) * 2_000_000_000;
        assert!(
            !agree(&etag(7, cut_2s + 2_000_000_000), &etag(7, FINE)),
            "next 2 s"
        );
        assert!(
            !agree(&etag(7, FINE + 1), &etag(7, FINE)),
            "two fine mtimes 1 ns apart"
        );
    }

    #[test]
    fn etags_of_another_shape_are_compared_exactly() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        assert!(agree(md5, md5));
        assert!(!agree(md5, "9e107d9d372bb6826bd81d3542a419d7"));
        // A multipart ETag is `hex-N`: compared as text, never as size and mtime.
        assert!(!agree(&format!("{md5}-20"), &format!("{md5}-2")));
        assert!(!agree("ABC-10", "abc-10"));
        assert!(!agree("", &etag(7, FINE)));
    }
}
