//! age identities and recipients, found the way sops finds them.
//!
//! Identities come from `SOPS_AGE_KEY` (inline), `SOPS_AGE_KEY_FILE`, then
//! `$XDG_CONFIG_HOME/sops/age/keys.txt` (or `~/.config/sops/age/keys.txt`). Secret keys
//! are held by the `age` crate, which zeroizes them on drop.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zeroize::Zeroizing;

use super::error::{Error, Result};

/// The identities this process can decrypt with.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} identities)", self.identities.len())
    }
}

/// Where sops looks for the key file when no variable is set.
pub fn default_key_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    base.join("sops").join("age").join("keys.txt")
}

impl Keyring {
    /// Parse identity text (`AGE-SECRET-KEY-1...` lines; `#` comments and blanks skipped).
    pub fn parse(text: &str) -> Result<Keyring> {
        let mut identities = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            for part in line.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let id = age::x25519::Identity::from_str(part)
                    .map_err(|_| Error::BadKey("not an AGE-SECRET-KEY-1 identity".into()))?;
                identities.push(id);
            }
        }
        Ok(Keyring { identities })
    }

    /// Read an identity file. `strict` refuses files readable by group or others.
    pub fn from_file(path: &Path, strict: bool) -> Result<Keyring> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::BadKey(format!("{}: {e}", path.display())))?;
        if strict && meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::BadKey(format!(
                "{}: identity file is readable by group or others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        let mut text = Zeroizing::new(String::new());
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| Error::BadKey(format!("{}: {e}", path.display())))?;
        Keyring::parse(&text)
    }

    /// Identities from the environment, as sops looks them up. Errors if none are found.
    pub fn from_env() -> Result<Keyring> {
        let mut ring = Keyring::default();
        if let Ok(inline) = std::env::var("SOPS_AGE_KEY") {
            let inline = Zeroizing::new(inline);
            ring.identities.extend(Keyring::parse(&inline)?.identities);
        }
        if let Some(path) = std::env::var_os("SOPS_AGE_KEY_FILE").filter(|v| !v.is_empty()) {
            ring.identities
                .extend(Keyring::from_file(Path::new(&path), false)?.identities);
        }
        let default = default_key_path();
        if default.exists() {
            ring.identities
                .extend(Keyring::from_file(&default, false)?.identities);
        }
        if ring.identities.is_empty() {
            return Err(Error::NoIdentities {
                default_path: default.display().to_string(),
            });
        }
        Ok(ring)
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The public recipients of these identities.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// Decrypt an armored age file (a sops `enc:` field) into the data key.
    pub fn unwrap_data_key(&self, armored: &str) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let bad = |e: &dyn std::fmt::Display| Error::Malformed(format!("age key block: {e}"));
        let reader = age::armor::ArmoredReader::new(armored.as_bytes());
        let decryptor = age::Decryptor::new(reader).map_err(|e| bad(&e))?;
        let mut stream =
            match decryptor.decrypt(self.identities.iter().map(|i| i as &dyn age::Identity)) {
                Ok(s) => s,
                // None of ours: the file is fine, the key is elsewhere.
                Err(age::DecryptError::NoMatchingKeys) => return Ok(None),
                Err(e) => return Err(bad(&e)),
            };
        let mut out = Zeroizing::new(Vec::new());
        stream.read_to_end(&mut out).map_err(|e| bad(&e))?;
        let key: [u8; 32] = out
            .as_slice()
            .try_into()
            .map_err(|_| bad(&"the data key is not 32 bytes"))?;
        Ok(Some(Zeroizing::new(key)))
    }
}

/// Parse a recipient string (`age1...`).
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(s.trim())
        .map_err(|e| Error::BadKey(format!("invalid age recipient {:?}: {e}", s.trim())))
}

/// Encrypt the data key to one recipient, ASCII-armored as sops stores it.
pub fn wrap_data_key(key: &[u8; 32], recipient: &str) -> Result<String> {
    let r = parse_recipient(recipient)?;
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        .map_err(|e| Error::Internal(format!("age: {e}")))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)?;
    let mut w = enc.wrap_output(armor)?;
    w.write_all(key)?;
    w.finish()?.finish()?;
    String::from_utf8(out).map_err(|_| Error::Internal("age armor is not UTF-8".into()))
}

/// Encrypt arbitrary bytes to recipients as a binary age file (used for drafts at rest).
pub fn encrypt_to(recipients: &[String], plain: &[u8]) -> Result<Vec<u8>> {
    let parsed: Vec<age::x25519::Recipient> = recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<_>>()?;
    if parsed.is_empty() {
        return Err(Error::NoRecipients);
    }
    let enc = age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| Error::Internal(format!("age: {e}")))?;
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out)?;
    w.write_all(plain)?;
    w.finish()?;
    Ok(out)
}

impl Keyring {
    /// Decrypt a binary age file with these identities.
    pub fn decrypt_file(&self, data: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let decryptor = age::Decryptor::new(data).ok()?;
        let mut stream = decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .ok()?;
        let mut out = Zeroizing::new(Vec::new());
        stream.read_to_end(&mut out).ok()?;
        Some(out)
    }
}
