//! The mount: a FUSE view of the values repository (see `view` for the logic and its
//! invariants, `fuse` for the thin adapter, `mount` for the daemon around them).

pub mod control;
pub mod error;
pub mod fuse;
pub mod ignore;
pub mod leak;
pub mod mount;
pub mod view;

pub use error::{Error, Kind, Result};
pub use view::{Attr, FileKind, Fs, FsConfig, Hook, OpenReply, SetAttr};
