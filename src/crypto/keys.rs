//! age identities and recipients, found the way sops 3.11 finds them.
//!
//! Identities: ssh keys first (`SOPS_AGE_SSH_PRIVATE_KEY_FILE`, then `~/.ssh/id_ed25519`
//! and `~/.ssh/id_rsa`), then age keys from `SOPS_AGE_KEY` (inline), `SOPS_AGE_KEY_FILE`,
//! the output of `SOPS_AGE_KEY_CMD`, and `$XDG_CONFIG_HOME/sops/age/keys.txt` (or
//! `~/.config/sops/age/keys.txt`); all that are found are used together. Recipients are
//! `age1...` keys or ssh public keys (`ssh-ed25519 ...`, `ssh-rsa ...`).
//!
//! Nothing here prompts: a passphrase-protected ssh key named explicitly is an error, and
//! a default one is skipped with a warning, so the daemon never waits on a terminal.
//! Secret keys are held by the `age` crate, which zeroizes them on drop.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zeroize::Zeroizing;

use super::error::{Error, Result};

/// The identities this process can decrypt with.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<age::x25519::Identity>,
    /// Unencrypted ssh keys only (see the module doc).
    ssh: Vec<age::ssh::Identity>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring({} age identities, {} ssh)",
            self.identities.len(),
            self.ssh.len()
        )
    }
}

/// How long `SOPS_AGE_KEY_CMD` may run before it is killed.
const KEY_CMD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The user's home directory, as Go's `os.UserHomeDir` finds it.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// An ssh private key file as an age identity. `explicit`: named by the user, so a key
/// that cannot be used is an error; a default location's is skipped (`Ok(None)`).
pub fn ssh_identity(path: &Path, explicit: bool) -> Result<Option<age::ssh::Identity>> {
    let bad = |why: String| Error::BadKey(format!("{}: {why}", path.display()));
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| bad(e.to_string()))?);
    let id = match age::ssh::Identity::from_buffer(&text[..], Some(path.display().to_string())) {
        Ok(id) => id,
        Err(e) if explicit => return Err(bad(format!("not an ssh private key: {e}"))),
        Err(e) => {
            // A key in ~/.ssh that age cannot read must not stop the age keys from working.
            tracing::warn!(
                "skipping {}: not an ssh private key age reads: {e}",
                path.display()
            );
            return Ok(None);
        }
    };
    let refused = match &id {
        age::ssh::Identity::Unencrypted(_) => return Ok(Some(id)),
        age::ssh::Identity::Encrypted(_) => {
            "the ssh key is passphrase-protected, and valuesfs never prompts \
             (use an unprotected copy readable only by you, or an age key)"
        }
        age::ssh::Identity::Unsupported(_) => "this kind of ssh key is not supported by age",
    };
    if explicit {
        return Err(bad(refused.to_string()));
    }
    tracing::warn!("skipping {}: {refused}", path.display());
    Ok(None)
}

/// Run `SOPS_AGE_KEY_CMD` (split as a shell would, not run by one), with no stdin and a
/// time limit; its standard output holds identities.
fn key_cmd_output(cmd: &str) -> Result<Zeroizing<String>> {
    use std::process::{Command, Stdio};
    let bad = |why: String| Error::BadKey(format!("SOPS_AGE_KEY_CMD {cmd:?}: {why}"));
    let args = shlex::split(cmd)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("cannot be split into words".into()))?;
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| bad(e.to_string()))?;
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let reader = std::thread::spawn(move || {
        let mut out = Zeroizing::new(String::new());
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let deadline = std::time::Instant::now() + KEY_CMD_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| bad(e.to_string()))? {
            Some(s) => break s,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(bad(format!(
                    "still running after {KEY_CMD_TIMEOUT:?}; killed"
                )));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    };
    if !status.success() {
        return Err(bad(format!("exited with {status}")));
    }
    reader
        .join()
        .map_err(|_| bad("reading its output failed".into()))?
        .map_err(|e| bad(format!("its output is not UTF-8 text: {e}")))
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
        Ok(Keyring {
            identities,
            ssh: Vec::new(),
        })
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
        if text.trim_start().starts_with("-----BEGIN") {
            // An ssh private key (`mount --identity ~/.ssh/id_ed25519`).
            let mut ring = Keyring::default();
            ring.ssh.extend(ssh_identity(path, true)?);
            return Ok(ring);
        }
        Keyring::parse(&text)
    }

    /// Identities from the environment, as sops looks them up. Errors if none are found.
    pub fn from_env() -> Result<Keyring> {
        let mut ring = Keyring::default();
        if let Some(p) = std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").filter(|v| !v.is_empty())
        {
            ring.ssh.extend(ssh_identity(Path::new(&p), true)?);
        }
        if let Some(h) = home() {
            for name in ["id_ed25519", "id_rsa"] {
                let p = h.join(".ssh").join(name);
                if p.is_file() {
                    ring.ssh.extend(ssh_identity(&p, false)?);
                }
            }
        }
        if let Ok(inline) = std::env::var("SOPS_AGE_KEY") {
            let inline = Zeroizing::new(inline);
            ring.identities.extend(Keyring::parse(&inline)?.identities);
        }
        if let Some(path) = std::env::var_os("SOPS_AGE_KEY_FILE").filter(|v| !v.is_empty()) {
            ring.identities
                .extend(Keyring::from_file(Path::new(&path), false)?.identities);
        }
        if let Some(cmd) = std::env::var("SOPS_AGE_KEY_CMD")
            .ok()
            .filter(|c| !c.trim().is_empty())
        {
            let out = key_cmd_output(&cmd)?;
            ring.identities.extend(Keyring::parse(&out)?.identities);
        }
        let default = default_key_path();
        if default.exists() {
            ring.identities
                .extend(Keyring::from_file(&default, false)?.identities);
        }
        if ring.is_empty() {
            return Err(Error::NoIdentities {
                default_path: default.display().to_string(),
            });
        }
        Ok(ring)
    }

    /// Add the identities of another keyring.
    pub fn extend(&mut self, other: Keyring) {
        self.identities.extend(other.identities);
        self.ssh.extend(other.ssh);
    }

    /// Every identity, as age takes them.
    fn all(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|i| i as &dyn age::Identity)
            .chain(self.ssh.iter().map(|i| i as &dyn age::Identity))
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.ssh.is_empty()
    }

    /// The public recipients of these identities' age keys (ssh keys are left out: age
    /// does not give an ssh identity's public key back).
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
        let mut stream = match decryptor.decrypt(self.all()) {
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

/// Parse a recipient string as sops does: `age1...` (an X25519 key; a plugin's, with a
/// second `1`, is refused), or an ssh public key (`ssh-ed25519 ...`, `ssh-rsa ...`).
pub fn parse_recipient(s: &str) -> Result<Box<dyn age::Recipient + Send>> {
    let s = s.trim();
    let bad = |why: String| Error::BadKey(format!("invalid recipient {s:?}: {why}"));
    if s.starts_with("age1") && s.matches('1').count() > 1 {
        return Err(bad("age plugin recipients are not supported".into()));
    }
    if s.starts_with("age1") {
        let r = age::x25519::Recipient::from_str(s).map_err(|e| bad(e.to_string()))?;
        return Ok(Box::new(r));
    }
    if s.starts_with("ssh-") {
        let r = age::ssh::Recipient::from_str(s).map_err(|e| bad(format!("{e:?}")))?;
        return Ok(Box::new(r));
    }
    Err(bad(
        "not an age key (age1...) or an ssh public key (ssh-ed25519, ssh-rsa)".into(),
    ))
}

/// Encrypt the data key to one recipient, ASCII-armored as sops stores it.
pub fn wrap_data_key(key: &[u8; 32], recipient: &str) -> Result<String> {
    let r = parse_recipient(recipient)?;
    let enc = age::Encryptor::with_recipients(std::iter::once(&*r as &dyn age::Recipient))
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
    let parsed: Vec<Box<dyn age::Recipient + Send>> = recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<_>>()?;
    if parsed.is_empty() {
        return Err(Error::NoRecipients);
    }
    let enc = age::Encryptor::with_recipients(parsed.iter().map(|r| &**r as &dyn age::Recipient))
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
        let mut stream = decryptor.decrypt(self.all()).ok()?;
        let mut out = Zeroizing::new(Vec::new());
        stream.read_to_end(&mut out).ok()?;
        Some(out)
    }
}
