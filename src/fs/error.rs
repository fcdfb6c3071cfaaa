//! The one error type at the FUSE boundary and its exhaustive errno mapping.

/// What went wrong, as the filesystem reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    /// Operation not permitted (hard links, device nodes, chown to others, `.git`).
    Perm,
    /// Permission denied: content the leak guard refused (a decrypted secret in a file
    /// stored in clear).
    Access,
    /// Read-only view (history, conflicts, files we cannot decrypt).
    ReadOnly,
    Invalid,
    NameTooLong,
    BadHandle,
    /// xattrs: sed and cp expect exactly ENOTSUP.
    NotSupported,
    /// Content refused (bad SOPS content, conflict) or the repository failed.
    Io,
    TooBig,
    /// A write that named a version the file no longer has (HTTP `If-Match`).
    Stale,
}

/// A filesystem error: a kind (which decides the errno) and a message for the log.
/// Messages never contain file contents.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The errno for this error. Every kind has exactly one.
    pub fn errno(&self) -> i32 {
        match self.kind {
            Kind::NotFound => libc::ENOENT,
            Kind::Exists => libc::EEXIST,
            Kind::NotDir => libc::ENOTDIR,
            Kind::IsDir => libc::EISDIR,
            Kind::NotEmpty => libc::ENOTEMPTY,
            Kind::Perm => libc::EPERM,
            Kind::Access => libc::EACCES,
            Kind::ReadOnly => libc::EROFS,
            Kind::Invalid => libc::EINVAL,
            Kind::NameTooLong => libc::ENAMETOOLONG,
            Kind::BadHandle => libc::EBADF,
            Kind::NotSupported => libc::ENOTSUP,
            Kind::Io => libc::EIO,
            Kind::TooBig => libc::EFBIG,
            Kind::Stale => libc::ESTALE,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn not_found(what: &str) -> Error {
    Error::new(Kind::NotFound, format!("{what}: not found"))
}

impl From<crate::repo::Error> for Error {
    fn from(e: crate::repo::Error) -> Error {
        Error::new(Kind::Io, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_and_links_map_to_what_tools_expect() {
        assert_eq!(Error::new(Kind::NotSupported, "").errno(), libc::ENOTSUP);
        assert_eq!(Error::new(Kind::Perm, "").errno(), libc::EPERM);
        assert_eq!(Error::new(Kind::Io, "").errno(), libc::EIO);
    }
}
