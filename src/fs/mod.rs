//! The local file system side: walking SOURCE ([`scan`]), the filters
//! ([`filter`]) and what else a backup leaves out ([`leave_out`]), names and their byte rules ([`names`], [`safe_path`]),
//! content hashes ([`hash`]) and the checksums S3 keeps ([`checksum`]), reaching paths without following links
//! ([`confine`]), the tool's own files ([`own`]), Windows path spellings
//! ([`winpath`]) and the names Windows cannot hold ([`winname`]), and
//! destinations that fold letter case ([`case`]), and sources on file
//! systems that refuse Windows names ([`fstype`]).

pub mod case;
pub mod checksum;
pub mod confine;
pub mod filter;
pub mod fstype;
pub mod hash;
pub mod leave_out;
pub mod names;
pub mod own;
pub mod safe_path;
pub mod scan;
pub mod selector;
pub mod twins;
pub mod winname;
pub mod winpath;
