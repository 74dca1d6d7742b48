//! What the engines report per item, shared by backup, restore and verify
//! so the binary prints and serialises failures one way (`docs/json.md`).

use serde::Serialize;

/// A file or directory that was not backed up or restored, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Relative path.
    pub path: String,
    /// What went wrong, as one line for the user.
    pub error: String,
}
