//! The codec's typed errors. Messages never contain plaintext or key material.

use super::yaml::YamlError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no age identity matches this file's recipients ({recipients})")]
    NoMatchingIdentity { recipients: String },
    #[error("no age identity found: set SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or create {default_path}")]
    NoIdentities { default_path: String },
    #[error("this file can only be opened with key services valuesfs cannot use: {services}")]
    UnsupportedKeyServices { services: String },
    #[error("MAC mismatch: the file was modified without its key (tampered or corrupted)")]
    MacMismatch,
    #[error("value at {path:?} failed to authenticate (tampered, swapped or corrupted)")]
    Tampered { path: String },
    #[error("malformed SOPS envelope: {0}")]
    Malformed(String),
    #[error("not a SOPS file (no sops metadata)")]
    NotSops,
    #[error("invalid YAML: {0}")]
    Yaml(#[from] YamlError),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid dotenv: {0}")]
    Dotenv(String),
    #[error("invalid INI: {0}")]
    Ini(String),
    #[error("content is not valid UTF-8 text")]
    NotUtf8,
    #[error("invalid age key: {0}")]
    BadKey(String),
    #[error("invalid .sops.yaml: {0}")]
    Config(String),
    #[error("no recipients: pass --age or add a matching creation rule to .sops.yaml")]
    NoRecipients,
    #[error("{0}")]
    Unsupported(String),
    #[error("file too large: {size} bytes, the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;
