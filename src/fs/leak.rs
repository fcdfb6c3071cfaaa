//! The leak guard: decrypted values of the repository's SOPS files must not land in a file
//! that is stored in clear (`cp secrets.yaml notes.txt` in a mount is one command).
//!
//! The index learns secrets as the view decrypts SOPS files (no extra decryption), keyed
//! by blob, and finds any of them in new content with one Aho-Corasick pass, linear in the
//! content's size. What counts as a secret is [`secret_patterns`], documented in
//! docs/SEMANTICS.md. Patterns live in memory only; the matcher is rebuilt lazily after
//! the index grew.

use std::collections::{HashMap, HashSet};

use aho_corasick::AhoCorasick;
use zeroize::{Zeroize, Zeroizing};

use crate::repo::Oid;

/// Shortest value that counts as a secret.
pub const MIN_SECRET: usize = 6;
/// Values shorter than this must not look like a plain word (see [`secret_patterns`]).
const WORDY: usize = 16;

/// Decrypted values seen so far, and which SOPS file each came from.
#[derive(Default)]
pub struct SecretIndex {
    /// Pattern -> path of the SOPS file it was first learned from (zeroized on drop).
    patterns: HashMap<Vec<u8>, String>,
    learned: HashSet<Oid>,
    matcher: Option<(AhoCorasick, Vec<String>)>,
}

impl SecretIndex {
    /// Has this blob's content been indexed?
    pub fn knows(&self, blob: Oid) -> bool {
        self.learned.contains(&blob)
    }

    /// Index the encrypted values of one SOPS blob found at `path`.
    pub fn learn(&mut self, blob: Oid, path: &str, values: &[Zeroizing<Vec<u8>>]) {
        if !self.learned.insert(blob) {
            return;
        }
        for v in values {
            for p in secret_patterns(v) {
                if !self.patterns.contains_key(p.as_slice()) {
                    self.patterns.insert(p.to_vec(), path.to_string());
                    self.matcher = None;
                }
            }
        }
    }

    /// The SOPS file whose secret `content` carries, if any.
    pub fn find(&mut self, content: &[u8]) -> Option<String> {
        if self.patterns.is_empty() {
            return None;
        }
        if self.matcher.is_none() {
            let (pats, sources): (Vec<&[u8]>, Vec<String>) = self
                .patterns
                .iter()
                .map(|(p, s)| (p.as_slice(), s.clone()))
                .unzip();
            match AhoCorasick::new(pats) {
                Ok(ac) => self.matcher = Some((ac, sources)),
                Err(e) => {
                    // Cannot happen for byte patterns below the size limit; refuse to
                    // guess either way: treat the content as carrying a secret.
                    tracing::error!("leak guard: cannot build the matcher: {e}");
                    return Some("(leak guard unavailable)".into());
                }
            }
        }
        let (ac, sources) = self.matcher.as_ref().expect("built above");
        ac.find(content)
            .map(|m| sources[m.pattern().as_usize()].clone())
    }
}

impl Drop for SecretIndex {
    fn drop(&mut self) {
        for (mut p, _) in self.patterns.drain() {
            p.zeroize();
        }
    }
}

/// The byte strings that identify one decrypted value as a secret:
///
/// - the value with surrounding whitespace trimmed, if it is at least [`MIN_SECRET`]
///   bytes, does not read as a number, boolean or null, and, when shorter than 16 bytes,
///   is not a plain word (it holds a digit, both upper and lower case letters, or a
///   character other than ASCII letters and `.-_/:@`): `localhost` or `postgres` stored
///   encrypted are not secrets to the guard, `hunter22` and `s3cr3t-t0ken` are;
/// - its escaped forms when they differ (JSON and YAML double-quoted escapes), since a
///   copy of the decrypted file shows them escaped;
/// - of a multi-line value (a key, a certificate), also every line of at least 16 bytes
///   that is not a PEM armour line (`-----BEGIN ...`), so a partial copy is caught.
pub fn secret_patterns(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    let trimmed = value.trim_ascii();
    if !counts(trimmed) {
        return out;
    }
    out.push(Zeroizing::new(trimmed.to_vec()));
    if let Ok(s) = std::str::from_utf8(trimmed) {
        let json = serde_json::to_string(s).unwrap_or_default();
        let yaml = crate::crypto::yaml::scalar_str(s);
        for esc in [json, yaml] {
            let inner = esc
                .strip_prefix('"')
                .and_then(|e| e.strip_suffix('"'))
                .unwrap_or(&esc);
            if inner.as_bytes() != trimmed && inner.len() >= MIN_SECRET {
                out.push(Zeroizing::new(inner.as_bytes().to_vec()));
            }
        }
    }
    if trimmed.contains(&b'\n') {
        for line in trimmed.split(|b| *b == b'\n') {
            let line = line.trim_ascii();
            if line.len() >= WORDY && !line.starts_with(b"-----") && line != trimmed {
                out.push(Zeroizing::new(line.to_vec()));
            }
        }
    }
    out
}

fn counts(v: &[u8]) -> bool {
    if v.len() < MIN_SECRET {
        return false;
    }
    if let Ok(s) = std::str::from_utf8(v) {
        let lower = s.to_ascii_lowercase();
        if matches!(lower.as_str(), "true" | "false" | "null" | "~")
            || s.parse::<f64>().is_ok()
            || s.bytes()
                .all(|b| b.is_ascii_digit() || b"+-.,_:eE".contains(&b))
        {
            return false;
        }
    }
    if v.len() >= WORDY {
        return true;
    }
    let digit = v.iter().any(u8::is_ascii_digit);
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    let other = v
        .iter()
        .any(|b| !b.is_ascii_alphanumeric() && !b".-_/:@".contains(b));
    digit || (upper && lower) || other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).expect("20 bytes")
    }

    fn z(s: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(s.as_bytes().to_vec())
    }

    #[test]
    fn what_counts_as_a_secret() {
        for s in [
            "hunter22",
            "s3cr3t-t0ken",
            "CorrectHorse",
            "p@ss w0rd",
            "a long plain phrase here",
        ] {
            assert!(!secret_patterns(s.as_bytes()).is_empty(), "{s}");
        }
        for s in [
            "hunter",
            "localhost",
            "postgres",
            "db.example.com",
            "123456",
            "1.5e10",
            "false",
            "  ab  ",
            "2024-01-01",
        ] {
            assert!(secret_patterns(s.as_bytes()).is_empty(), "{s}");
        }
    }

    #[test]
    fn finds_learned_values_and_their_escaped_forms() {
        let mut ix = SecretIndex::default();
        assert_eq!(ix.find(b"anything"), None);
        ix.learn(
            oid(1),
            "secrets/api.yaml",
            &[z("hunter22"), z("tab\there1")],
        );
        assert!(ix.knows(oid(1)));
        assert_eq!(
            ix.find(b"password: hunter22\n").as_deref(),
            Some("secrets/api.yaml")
        );
        assert_eq!(
            ix.find(b"x: \"tab\\there1\"").as_deref(),
            Some("secrets/api.yaml")
        );
        assert_eq!(ix.find(b"password: hunter2\n"), None);
        // Learning grows the matcher.
        ix.learn(oid(2), "b.env", &[z("Zz9-later")]);
        assert_eq!(ix.find(b"Zz9-later").as_deref(), Some("b.env"));
    }

    #[test]
    fn a_line_of_a_key_is_enough() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";
        let mut ix = SecretIndex::default();
        ix.learn(oid(3), "tls.yaml", &[z(key)]);
        assert!(ix
            .find(b"copied: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
            .is_some());
        assert!(ix.find(b"-----BEGIN PRIVATE KEY-----").is_none());
    }
}
