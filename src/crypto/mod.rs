//! SOPS codec
