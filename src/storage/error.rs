//! The storage layer's one error type.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::record::RecordError;

/// Why a storage request failed. The protocols turn each into the legacy
/// empty reply or a text `ERR <kind> <message>`.
#[derive(Debug, Error)]
pub enum StoreError {
    /// No user has this name or id.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// Registration with a name that exists.
    #[error("username '{0}' is taken")]
    UsernameTaken(String),
    /// A user may not follow or unfollow themself.
    #[error("a user cannot follow themself")]
    SelfFollow,
    /// A value was refused.
    #[error(transparent)]
    Invalid(#[from] RecordError),
    /// A data file holds bytes that are not what its shape says.
    #[error("corrupt data in {file}: {detail}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The disk failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] io::Error),
}

impl StoreError {
    /// A short machine-readable word for the text protocol's `ERR` line.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NoSuchUser(_) => "not_found",
            StoreError::UsernameTaken(_) => "exists",
            StoreError::SelfFollow | StoreError::Invalid(_) => "invalid",
            StoreError::Corrupt { .. } | StoreError::Io(_) => "storage",
        }
    }
}
