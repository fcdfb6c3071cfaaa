//! valuesfs: a FUSE view of a git values repo with SOPS files shown decrypted.
//!
//! Layout: `crypto` is the pure SOPS codec (bytes in, bytes out); `repo` owns every git
//! repository (the master); `fs` is the filesystem on top of both; `slices` is the
//! versioned-fragment logic, plain functions over a snapshot.

pub mod crypto;
pub mod fs;
pub mod http;
pub mod metrics;
pub mod reconcile;
pub mod repo;
pub mod slices;
