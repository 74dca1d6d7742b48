//! The additional checksums S3 keeps with an object (`backup
//! --checksum-algorithm`): CRC64NVME, CRC32C or SHA-256, computed in the
//! same read that hashes a file ([`super::hash`]) and sent as the
//! precomputed `x-amz-checksum-*` header of each PutObject and UploadPart,
//! so the store refuses a body that differs from the bytes read, and keeps
//! the value for `verify --checksums` to ask for later without a download.
//!
//! The SDK's own streaming checksums (aws-chunked bodies with trailers) are
//! never used: several S3-compatible servers reject them (see
//! `store/s3/mod.rs`). The hash functions are aws-smithy-checksums', the
//! SDK's own implementations (already in the build), used here only as
//! hashers: no SDK type leaves this module.
//!
//! Multipart uploads follow the S3 User Guide ("Checking object
//! integrity"): CRC64NVME and CRC32C as a full-object checksum (the value
//! does not depend on how the file was cut, the same as a single PUT
//! gives), SHA-256 as a composite one (the SHA-256 of the parts' digests,
//! printed `value-N`), the only type S3 allows for it.

use aws_smithy_checksums::ChecksumAlgorithm as Impl;
use aws_smithy_checksums::http::HttpChecksum;
use serde::{Deserialize, Serialize};

/// An additional checksum algorithm S3 supports and the tool can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// CRC-64/NVME (S3's default for new objects); multipart: full object.
    Crc64nvme,
    /// CRC-32C (Castagnoli); multipart: full object.
    Crc32c,
    /// SHA-256; multipart: composite (`value-N`).
    Sha256,
}

impl Algorithm {
    /// Every algorithm, in the order help text names them.
    pub const ALL: [Algorithm; 3] = [Algorithm::Crc64nvme, Algorithm::Crc32c, Algorithm::Sha256];

    /// The lowercase name the command line, the state file and the
    /// manifest use (`crc64nvme`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc64nvme => "crc64nvme",
            Algorithm::Crc32c => "crc32c",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// The algorithm named `name` (any letter case), if it is one.
    pub fn parse(name: &str) -> Option<Algorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Whether a multipart object gets a full-object checksum (the value a
    /// single PUT of the same bytes gets) rather than a composite one.
    pub fn full_object(self) -> bool {
        !matches!(self, Algorithm::Sha256)
    }

    fn hasher(self) -> Box<dyn HttpChecksum> {
        match self {
            Algorithm::Crc64nvme => Impl::Crc64Nvme.into_impl(),
            Algorithm::Crc32c => Impl::Crc32c.into_impl(),
            Algorithm::Sha256 => Impl::Sha256.into_impl(),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One digest: of a request body, or of a whole file. Small and `Copy` so
/// it rides in a [`crate::store::FileRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    /// Its algorithm.
    pub algorithm: Algorithm,
    bytes: [u8; 32],
    len: u8,
}

impl Sum {
    fn new(algorithm: Algorithm, raw: &[u8]) -> Sum {
        let mut bytes = [0u8; 32];
        let len = raw.len().min(32);
        bytes[..len].copy_from_slice(&raw[..len]);
        Sum {
            algorithm,
            bytes,
            len: len as u8,
        }
    }

    /// The digest of `data` in one go.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Sum {
        let mut h = algorithm.hasher();
        h.update(data);
        Sum::new(algorithm, &h.finalize())
    }

    /// The raw digest (4, 8 or 32 bytes).
    pub fn raw(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Base64, as the `x-amz-checksum-*` headers carry it.
    pub fn base64(&self) -> String {
        aws_smithy_types::base64::encode(self.raw())
    }
}

/// The checksums of the request bodies a file is sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySums {
    /// One per body, in order (one for a single request).
    pub parts: Vec<Sum>,
    /// The whole file's, for a full-object checksum of a file sent in
    /// parts (`None` for a single request, where it is `parts[0]`, and for
    /// a composite algorithm).
    pub whole: Option<Sum>,
}

impl BodySums {
    /// The full-object checksum a CompleteMultipartUpload names, if the
    /// algorithm has one.
    pub fn full_object(&self) -> Option<Sum> {
        self.whole
            .or_else(|| self.parts.first().copied().filter(|_| self.parts.len() == 1))
            .filter(|s| s.algorithm.full_object())
    }
}

/// Computes [`BodySums`] while the file is read: fed every byte in order,
/// told where each body ends.
pub(crate) struct Summer {
    algorithm: Algorithm,
    part: Box<dyn HttpChecksum>,
    whole: Option<Box<dyn HttpChecksum>>,
    parts: Vec<Sum>,
}

impl Summer {
    /// A summer for a file sent in one request (`in_parts` false) or in parts.
    pub(crate) fn new(algorithm: Algorithm, in_parts: bool) -> Summer {
        Summer {
            algorithm,
            part: algorithm.hasher(),
            whole: (in_parts && algorithm.full_object()).then(|| algorithm.hasher()),
            parts: Vec::new(),
        }
    }

    /// Bytes of the current body, in order.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.part.update(data);
        if let Some(w) = self.whole.as_mut() {
            w.update(data);
        }
    }

    /// The current body ends here.
    pub(crate) fn end_part(&mut self) {
        let done = std::mem::replace(&mut self.part, self.algorithm.hasher());
        self.parts.push(Sum::new(self.algorithm, &done.finalize()));
    }

    /// The sums; `end_part` must have been called for the last body.
    pub(crate) fn finish(self) -> BodySums {
        BodySums {
            parts: self.parts,
            whole: self.whole.map(|w| Sum::new(self.algorithm, &w.finalize())),
        }
    }
}

/// The checksum of everything `reader` yields, read 256 KiB at a time.
///
/// # Errors
/// The reader's I/O error.
pub fn sum_reader(algorithm: Algorithm, mut reader: impl std::io::Read) -> std::io::Result<Sum> {
    let mut h = algorithm.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Sum::new(algorithm, &h.finalize()))
}

/// A checksum an object has, as S3 prints it: base64, a composite one
/// with `-N` (N parts) after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The value, e.g. `"AAAAAAAAAAA="` or `"q1w2…=-3"`.
    pub value: String,
}

impl StoredChecksum {
    /// The form the state file keeps: `algorithm:value`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.algorithm, self.value)
    }

    /// Reads [`Self::to_text`]'s form; `None` for anything else.
    pub fn from_text(text: &str) -> Option<StoredChecksum> {
        let (name, value) = text.split_once(':')?;
        Some(StoredChecksum {
            algorithm: Algorithm::parse(name)?,
            value: value.to_string(),
        })
        .filter(|c| !c.value.is_empty())
    }

    /// Whether it is a composite checksum (of parts' checksums).
    pub fn composite(&self) -> bool {
        self.value
            .rsplit_once('-')
            .is_some_and(|(_, n)| n.parse::<u32>().is_ok())
    }
}

/// Reads an optional [`StoredChecksum`] leniently: one this build cannot
/// read (an algorithm added later, another shape) is `None`, so a newer
/// writer's manifest line is still read, just without its checksum.
///
/// # Errors
/// Only the deserializer's own errors (input that is not JSON).
pub fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<StoredChecksum>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

impl std::fmt::Display for StoredChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.algorithm, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // S3 User Guide and the SDK's own tests: the checksums of "Hello world".
        let data = b"Hello world";
        assert_eq!(Sum::of(Algorithm::Crc32c, data).base64(), "crUfeA==");
        assert_eq!(Sum::of(Algorithm::Crc64nvme, data).base64(), "OOJZ0D8xKts=");
        assert_eq!(
            Sum::of(Algorithm::Sha256, data).base64(),
            "ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw="
        );
    }

    #[test]
    fn parts_and_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut s = Summer::new(Algorithm::Crc64nvme, true);
        for chunk in data.chunks(300) {
            s.update(chunk);
            s.end_part();
        }
        let sums = s.finish();
        assert_eq!(sums.parts.len(), 4);
        assert_eq!(sums.parts[1], Sum::of(Algorithm::Crc64nvme, &data[300..600]));
        assert_eq!(sums.full_object(), Some(Sum::of(Algorithm::Crc64nvme, &data)));
        let mut s = Summer::new(Algorithm::Sha256, true);
        s.update(&data);
        s.end_part();
        assert_eq!(s.finish().full_object(), None, "SHA-256 is composite only");
    }

    #[test]
    fn text_round_trips() {
        let c = StoredChecksum {
            algorithm: Algorithm::Sha256,
            value: "abc=-3".into(),
        };
        assert_eq!(StoredChecksum::from_text(&c.to_text()), Some(c.clone()));
        assert!(c.composite());
        assert_eq!(StoredChecksum::from_text("md5:x"), None);
        assert_eq!(StoredChecksum::from_text("crc32c:"), None);
        assert_eq!(Algorithm::parse("CRC64NVME"), Some(Algorithm::Crc64nvme));
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(default, deserialize_with = "lenient")]
            checksum: Option<StoredChecksum>,
        }
        let read = |t: &str| serde_json::from_str::<Line>(t).unwrap().checksum;
        assert_eq!(read(r#"{"checksum":{"algorithm":"xxhash3","value":"x"}}"#), None);
        assert_eq!(read(r#"{}"#), None);
        assert_eq!(
            read(r#"{"checksum":{"algorithm":"crc32c","value":"crUfeA=="}}"#),
            StoredChecksum::from_text("crc32c:crUfeA==")
        );
    }
}
