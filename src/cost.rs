//! `--cost-per-1000 SPEC`: an estimate of what a run's requests and egress
//! cost, from a price per 1000 requests of each kind
//! ([`crate::store::RequestCounts`]) and a price per GB received.
//!
//! SPEC is `s3-standard` (the table below), or `KIND=USD,...` with kinds
//! `list`, `head`, `get`, `put`, `copy`, `part`, `delete`, `other` (USD per
//! 1000 requests) and `egress-gb` (USD per GiB of response bodies), which
//! may start with `s3-standard` to change some prices of the table
//! (`s3-standard,get=0.001`). A kind not named costs 0. Multipart requests
//! other than parts (create, complete, abort, list parts) are priced as
//! `put`: S3 bills them as PUT/POST/LIST requests.
//!
//! The built-in table is S3 Standard in us-east-1 (N. Virginia), USD, from
//! the Amazon S3 pricing page (<https://aws.amazon.com/s3/pricing/>) as of
//! 2025 ([`S3_STANDARD_AS_OF`]):
//!
//! | kind                        | USD                      |
//! |-----------------------------|--------------------------|
//! | PUT, COPY, POST, LIST       | 0.005 per 1000 requests  |
//! | GET, HEAD and all other     | 0.0004 per 1000 requests |
//! | DELETE                      | 0 (free)                 |
//! | data transfer out to the internet | 0.09 per GB (first 10 TB a month) |
//!
//! It is an estimate: it leaves out storage, the free tier, other
//! regions, tiers past 10 TB and transfer inside AWS (free to EC2 in the
//! same region), and prices change; check the page for your bill.

use std::fmt;
use std::str::FromStr;

use crate::store::RequestCounts;

/// When the built-in table was taken from the S3 pricing page.
pub const S3_STANDARD_AS_OF: &str = "2025";

/// Prices in USD: per 1000 requests of each kind, and per GiB received.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    /// ListObjectsV2 (and version listings).
    pub list: f64,
    /// HeadObject.
    pub head: f64,
    /// GetObject.
    pub get: f64,
    /// PutObject, and the multipart requests that are not parts.
    pub put: f64,
    /// CopyObject.
    pub copy: f64,
    /// UploadPart and UploadPartCopy.
    pub part: f64,
    /// DeleteObject(s).
    pub delete: f64,
    /// Any other request (bucket checks).
    pub other: f64,
    /// Per GiB of response bodies (data transfer out of S3).
    pub egress_gb: f64,
}

/// S3 Standard, us-east-1 (see the module doc for the source and date).
pub const S3_STANDARD: Prices = Prices {
    list: 0.005,
    head: 0.0004,
    get: 0.0004,
    put: 0.005,
    copy: 0.005,
    part: 0.005,
    delete: 0.0,
    other: 0.0004,
    egress_gb: 0.09,
};

/// Bytes in the GB of S3's price list (a GiB: AWS bills binary gigabytes).
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl Prices {
    /// The estimated cost of `r` in USD, rounded to a billionth of a dollar.
    #[must_use]
    pub fn estimate(&self, r: &RequestCounts) -> f64 {
        let per_request = r.list as f64 * self.list
            + r.head as f64 * self.head
            + r.get as f64 * self.get
            + (r.put + r.multipart_other) as f64 * self.put
            + r.copy as f64 * self.copy
            + r.multipart_parts as f64 * self.part
            + r.delete as f64 * self.delete
            + r.other as f64 * self.other;
        let usd = per_request / 1000.0 + r.bytes_received as f64 / GIB * self.egress_gb;
        (usd * 1e9).round() / 1e9
    }
}

/// A parsed `--cost-per-1000` SPEC, with its text (saved with a named set).
#[derive(Debug, Clone, PartialEq)]
pub struct CostSpec {
    text: String,
    /// The prices SPEC gives (boxed: the command line's types stay small).
    pub prices: Box<Prices>,
}

/// What is wrong with a `--cost-per-1000` SPEC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// Nothing given.
    #[error(
        "give s3-standard or KIND=USD,... (kinds: list, head, get, put, copy, part, delete, other, egress-gb)"
    )]
    Empty,
    /// An item that is not `KIND=USD` (or `s3-standard` first).
    #[error("'{0}' is not KIND=USD (s3-standard may only come first)")]
    NotAPrice(String),
    /// An unknown kind.
    #[error("'{0}': unknown kind (kinds: list, head, get, put, copy, part, delete, other, egress-gb)")]
    UnknownKind(String),
    /// A price that is not a finite number of at least 0.
    #[error("'{0}': the price must be a number of USD of at least 0 (e.g. put=0.005)")]
    BadPrice(String),
    /// A kind named twice.
    #[error("'{0}': that kind is already priced")]
    Twice(String),
}

impl FromStr for CostSpec {
    type Err = CostError;

    fn from_str(text: &str) -> Result<Self, CostError> {
        let mut items = text.split(',').map(str::trim).peekable();
        let mut prices = Prices::default();
        if items.peek() == Some(&"s3-standard") {
            items.next();
            prices = S3_STANDARD;
        } else if text.trim().is_empty() {
            return Err(CostError::Empty);
        }
        let mut named: Vec<&str> = Vec::new();
        for item in items {
            let Some((kind, usd)) = item.split_once('=') else {
                return Err(CostError::NotAPrice(item.to_string()));
            };
            let kind = kind.trim();
            let slot = match kind {
                "list" => &mut prices.list,
                "head" => &mut prices.head,
                "get" => &mut prices.get,
                "put" => &mut prices.put,
                "copy" => &mut prices.copy,
                "part" => &mut prices.part,
                "delete" => &mut prices.delete,
                "other" => &mut prices.other,
                "egress-gb" => &mut prices.egress_gb,
                _ => return Err(CostError::UnknownKind(item.to_string())),
            };
            if named.contains(&kind) {
                return Err(CostError::Twice(item.to_string()));
            }
            named.push(kind);
            *slot = usd
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p >= 0.0)
                .ok_or_else(|| CostError::BadPrice(item.to_string()))?;
        }
        Ok(CostSpec {
            text: text.trim().to_string(),
            prices: Box::new(prices),
        })
    }
}

impl fmt::Display for CostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_items_are_named() {
        let s: CostSpec = "s3-standard,get=0.001".parse().unwrap();
        assert_eq!(
            (s.prices.get, s.prices.put, s.prices.egress_gb),
            (0.001, 0.005, 0.09)
        );
        let s: CostSpec = "put=1, egress-gb=2".parse().unwrap();
        assert_eq!((s.prices.put, s.prices.get, s.prices.egress_gb), (1.0, 0.0, 2.0));
        assert_eq!("".parse::<CostSpec>(), Err(CostError::Empty));
        assert_eq!(
            "put=1,gets=2".parse::<CostSpec>(),
            Err(CostError::UnknownKind("gets=2".into()))
        );
        assert_eq!(
            "put=-1".parse::<CostSpec>(),
            Err(CostError::BadPrice("put=-1".into()))
        );
        assert_eq!(
            "put=x".parse::<CostSpec>(),
            Err(CostError::BadPrice("put=x".into()))
        );
        assert_eq!(
            "put=1,put=2".parse::<CostSpec>(),
            Err(CostError::Twice("put=2".into()))
        );
        assert_eq!(
            "put=1,s3-standard".parse::<CostSpec>(),
            Err(CostError::NotAPrice("s3-standard".into()))
        );
    }

    #[test]
    fn the_estimate_adds_requests_and_egress() {
        let r = RequestCounts {
            put: 1000,
            multipart_other: 1000,
            get: 2000,
            delete: 5,
            bytes_received: 1024 * 1024 * 1024,
            ..RequestCounts::default()
        };
        // 2000 × 0.005/1000 + 2000 × 0.0004/1000 + 1 GiB × 0.09
        assert_eq!(S3_STANDARD.estimate(&r), 0.1008);
    }
}
