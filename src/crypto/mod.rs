//! The SOPS codec: pure functions from bytes to bytes, no git and no FUSE.
//!
//! `decrypt` opens a file written by sops or by valuesfs; `Opened::reencrypt` writes a new
//! version of it with stable ciphertext; `encrypt` creates a new file for a creation rule.
//! The plaintext shown is exactly what was last encrypted (see docs/SEMANTICS.md).

pub mod cipher;
pub mod config;
pub mod error;
pub mod ini;
pub mod json;
pub mod keys;
pub mod merge;
pub mod patch;
pub mod sops;
pub mod team;
pub mod value;
pub mod yaml;

pub use config::SopsConfig;
pub use error::{Error, Result};
pub use keys::Keyring;
pub use sops::{
    decrypt, decrypt_styled, encrypt, is_sops, CreationParams, Format, Opened, Selector, Style,
};
