//! The local file system side: walking SOURCE ([`scan`]), the filters
//! ([`filter`]), names and their byte rules ([`names`], [`safe_path`]),
//! content hashes ([`hash`]), reaching paths without following links
//! ([`confine`]), the tool's own files ([`own`]), and Windows path
//! spellings ([`winpath`]).

pub mod confine;
pub mod filter;
pub mod hash;
pub mod names;
pub mod own;
pub mod safe_path;
pub mod scan;
pub mod winpath;
