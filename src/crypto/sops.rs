//! Reading and writing SOPS files: the four stores, the MAC, stable re-encryption and the
//! lossless plaintext copy.
//!
//! Invariants:
//! - `decrypt` verifies every value and the MAC before returning anything; a failure
//!   returns an error and no partial plaintext.
//! - `Opened::reencrypt` reuses the data key, keeps the `sops` block's text byte for byte
//!   except `lastmodified`, `mac` and `valuesfs_source`, and keeps the ciphertext of every
//!   value whose position and plaintext are unchanged.
//! - Every file written is decrypted again before it is returned, and must give back
//!   exactly the plaintext bytes that were encrypted (`Error::Internal` otherwise).
//! - The `valuesfs_source` metadata field holds the exact plaintext bytes, encrypted with
//!   the data key and bound to this version's `lastmodified` and `mac`. sops ignores it;
//!   it is only written when sops's own formatting would not reproduce the bytes.

use regex_lite::Regex;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::cipher::{is_envelope, open, parse_envelope, seal, ValueKey};
use super::error::{Error, Result};
use super::ini;
use super::json;
use super::keys::{wrap_data_key, Keyring};
use super::value::{same_docs, Key, Value};
use std::collections::HashMap;

use super::yaml::{self, Limits};

mod comments;
mod preopen;
mod rekey;
pub use rekey::{file_recipients, rewrap, rotate};

/// The sops version string written into new files.
pub const SOPS_VERSION: &str = "3.11.0";
/// Metadata field carrying the exact plaintext bytes (encrypted).
pub const SOURCE_FIELD: &str = "valuesfs_source";
/// Largest input the codec accepts, by default.
pub const DEFAULT_MAX_SIZE: usize = 64 << 20;
/// From this size of the stored text copy on, it is opened on a thread of its own.
const PARALLEL_SOURCE_BYTES: usize = 256 << 10;

/// sops's `MACOnlyEncryptedInitialization`: sha256("sops").
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Which store a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl Format {
    /// The store sops picks from a file name.
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".json") {
            Format::Json
        } else if lower.ends_with(".env") {
            Format::Dotenv
        } else if lower.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Binary
        }
    }

    /// `--input-type`/`--output-type` names.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "yaml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "dotenv" => Some(Format::Dotenv),
            "ini" => Some(Format::Ini),
            "binary" => Some(Format::Binary),
            _ => None,
        }
    }
}

/// What decides which values are encrypted: at most one per file.
#[derive(Debug, Clone)]
pub enum Selector {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
    UnencryptedCommentRegex(Regex),
    EncryptedCommentRegex(Regex),
}

pub const SELECTOR_FIELDS: [&str; 6] = [
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
];

impl Selector {
    pub fn new(field: &str, value: &str) -> Result<Selector> {
        let re =
            || Regex::new(value).map_err(|e| Error::Config(format!("{field}: invalid regex: {e}")));
        Ok(match field {
            "unencrypted_suffix" => Selector::UnencryptedSuffix(value.to_string()),
            "encrypted_suffix" => Selector::EncryptedSuffix(value.to_string()),
            "unencrypted_regex" => Selector::UnencryptedRegex(re()?),
            "encrypted_regex" => Selector::EncryptedRegex(re()?),
            "unencrypted_comment_regex" => Selector::UnencryptedCommentRegex(re()?),
            "encrypted_comment_regex" => Selector::EncryptedCommentRegex(re()?),
            other => return Err(Error::Config(format!("unknown selector {other}"))),
        })
    }

    pub fn field(&self) -> &'static str {
        match self {
            Selector::UnencryptedSuffix(_) => "unencrypted_suffix",
            Selector::EncryptedSuffix(_) => "encrypted_suffix",
            Selector::UnencryptedRegex(_) => "unencrypted_regex",
            Selector::EncryptedRegex(_) => "encrypted_regex",
            Selector::UnencryptedCommentRegex(_) => "unencrypted_comment_regex",
            Selector::EncryptedCommentRegex(_) => "encrypted_comment_regex",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Selector::UnencryptedSuffix(s) | Selector::EncryptedSuffix(s) => s,
            Selector::UnencryptedRegex(r)
            | Selector::EncryptedRegex(r)
            | Selector::UnencryptedCommentRegex(r)
            | Selector::EncryptedCommentRegex(r) => r.as_str(),
        }
    }

    /// sops's `shouldBeEncrypted`.
    fn should_encrypt(&self, path: &[String], stack: &[Vec<String>], is_comment: bool) -> bool {
        match self {
            Selector::UnencryptedSuffix(s) => !path.iter().any(|p| p.ends_with(s.as_str())),
            Selector::EncryptedSuffix(s) => path.iter().any(|p| p.ends_with(s.as_str())),
            Selector::UnencryptedRegex(r) => !path.iter().any(|p| r.is_match(p)),
            Selector::EncryptedRegex(r) => path.iter().any(|p| r.is_match(p)),
            Selector::UnencryptedCommentRegex(r) => !stack.iter().flatten().any(|c| r.is_match(c)),
            Selector::EncryptedCommentRegex(r) => {
                let last = stack.len().saturating_sub(1);
                stack.iter().enumerate().any(|(i, cs)| {
                    cs.iter().enumerate().any(|(j, c)| {
                        // The matching comment line itself stays readable.
                        let itself = is_comment && i == last && j + 1 == cs.len();
                        !itself && r.is_match(c)
                    })
                })
            }
        }
    }
}

/// What a new file is encrypted for.
#[derive(Debug, Clone, Default)]
pub struct CreationParams {
    pub recipients: Vec<String>,
    pub selector: Option<Selector>,
    pub mac_only_encrypted: bool,
    /// How the file is printed (`.sops.yaml` `stores:`).
    pub style: Style,
}

/// How sops prints each store, from `.sops.yaml` `stores:` (`yaml.indent`,
/// `json.indent`, `json_binary.indent`). It applies to the encrypted file and to the
/// decrypted view alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Style {
    /// go-yaml's indent (sops: unset or 0 means 4; go-yaml takes 2 outside 2..=9).
    pub yaml_indent: usize,
    /// JSON indentation: `None` is a tab (sops's default), `Some(n)` n spaces.
    pub json_indent: Option<usize>,
    /// The same for the binary store's JSON envelope.
    pub json_binary_indent: Option<usize>,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            yaml_indent: yaml::DEFAULT_INDENT,
            json_indent: None,
            json_binary_indent: None,
        }
    }
}

impl Style {
    /// The JSON indentation of a store's files.
    fn json(&self, format: Format) -> Option<usize> {
        match format {
            Format::Binary => self.json_binary_indent,
            _ => self.json_indent,
        }
    }
}

/// The typed view of the `sops` metadata block.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// (recipient, armored encrypted data key), from `age` and from `key_groups`.
    pub age: Vec<(String, String)>,
    pub lastmodified: String,
    pub mac: String,
    pub selector: Option<Selector>,
    pub mac_only_encrypted: bool,
    pub version: String,
    /// Key services present that valuesfs cannot use (kept untouched).
    pub other_services: Vec<String>,
    pub source: Option<String>,
}

const OTHER_SERVICES: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

impl Metadata {
    fn from_value(v: &Value) -> Result<Metadata> {
        let Value::Map(_) = v else {
            return Err(Error::Malformed("`sops` is not a mapping".into()));
        };
        let text = |k: &str| -> Option<String> {
            match v.get(k)? {
                Value::Str(s) | Value::Time(s) => Some(s.clone()),
                _ => None,
            }
        };
        let mut age = Vec::new();
        let mut other = Vec::new();
        let mut collect = |group: &Value| -> Result<()> {
            if let Some(Value::Seq(entries)) = group.get("age") {
                for e in entries {
                    let r = e.get("recipient").and_then(Value::as_str).unwrap_or("");
                    let enc = e
                        .get("enc")
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::Malformed("age entry without `enc`".into()))?;
                    age.push((r.to_string(), enc.to_string()));
                }
            }
            for s in OTHER_SERVICES {
                if matches!(group.get(s), Some(Value::Seq(e)) if !e.is_empty())
                    && !other.iter().any(|o| o == s)
                {
                    other.push(s.to_string());
                }
            }
            Ok(())
        };
        collect(v)?;
        if let Some(Value::Seq(groups)) = v.get("key_groups") {
            for g in groups {
                collect(g)?;
            }
        }
        let mut selector = None;
        for f in SELECTOR_FIELDS {
            if let Some(val) = text(f).filter(|s| !s.is_empty()) {
                if selector.is_some() {
                    return Err(Error::Malformed(
                        "more than one selector in metadata".into(),
                    ));
                }
                selector =
                    Some(Selector::new(f, &val).map_err(|e| Error::Malformed(e.to_string()))?);
            }
        }
        let mac_only_encrypted = match v.get("mac_only_encrypted") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => s == "true",
            _ => false,
        };
        if let Some(Value::Int(t)) = v.get("shamir_threshold") {
            if *t > 1 {
                return Err(Error::Unsupported(
                    "Shamir secret sharing (shamir_threshold > 1) is not supported".into(),
                ));
            }
        }
        Ok(Metadata {
            age,
            lastmodified: text("lastmodified")
                .ok_or_else(|| Error::Malformed("metadata without lastmodified".into()))?,
            mac: text("mac").ok_or_else(|| Error::Malformed("metadata without mac".into()))?,
            selector,
            mac_only_encrypted,
            version: text("version").unwrap_or_default(),
            other_services: other,
            source: text(SOURCE_FIELD),
        })
    }

    fn selector_or_default(&self) -> Selector {
        self.selector
            .clone()
            .unwrap_or_else(|| Selector::UnencryptedSuffix("_unencrypted".into()))
    }
}

/// The text of the `sops` block as found in the file, kept for byte-exact rewrites.
#[derive(Debug, Clone)]
enum RawMeta {
    /// From the `sops:` line to the end of the block, ending in a newline.
    Yaml(String),
    /// The JSON value of the `"sops"` member.
    Json(String),
    /// dotenv's `sops_KEY=value` lines or INI's `[sops]` entries, in order, as
    /// (KEY, value with line breaks as `\n`).
    Flat(Vec<(String, String)>),
}

/// A decrypted SOPS file, with what is needed to re-encrypt it stably.
pub struct Opened {
    pub format: Format,
    /// The plaintext to show: the exact bytes last encrypted, or sops's rendering.
    pub plaintext: Zeroizing<Vec<u8>>,
    pub metadata: Metadata,
    key: Zeroizing<[u8; 32]>,
    raw: RawMeta,
    enc_docs: Vec<Value>,
    plain_docs: Vec<Value>,
    style: Style,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Opened({:?}, {} bytes)",
            self.format,
            self.plaintext.len()
        )
    }
}

impl Opened {
    /// The decrypted documents (comments included).
    pub fn documents(&self) -> &[Value] {
        &self.plain_docs
    }

    /// The style this file is printed in.
    pub fn style(&self) -> Style {
        self.style
    }

    /// The decrypted values of the leaves this file stores encrypted (strings, or the
    /// whole content of a binary file): what must not be copied into a file stored in
    /// clear. Comments and values left in clear are not included.
    pub fn encrypted_strings(&self) -> Vec<Zeroizing<Vec<u8>>> {
        let mut out = Vec::new();
        if self.format == Format::Binary {
            out.push(Zeroizing::new(self.plaintext.to_vec()));
            return out;
        }
        for (e, p) in self.enc_docs.iter().zip(&self.plain_docs) {
            encrypted_leaves(e, p, &mut out);
        }
        out
    }

    /// Encrypt new plaintext for this file: same data key, recipients and selector, stable
    /// ciphertext for unchanged values, metadata text kept.
    pub fn reencrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let ctx = Ctx {
            key: &self.key,
            vk: ValueKey::new(&self.key),
            selector: self.metadata.selector_or_default(),
            mac_only: self.metadata.mac_only_encrypted,
            style: self.style,
        };
        let base = Some((&self.plain_docs[..], &self.enc_docs[..]));
        // The text the user edited, read back: where the new text still reads the same,
        // the value is the one the file had (its type and ciphertext), even when that
        // text does not read back to it (`-0` printed for float -0, block scalar
        // hints, comment layouts: go-yaml's output is not always a fixed point).
        let shown = match self.format {
            Format::Yaml => parse_plain(&self.plaintext, self.format).ok(),
            _ => None,
        };
        build(
            self.format,
            plaintext,
            &ctx,
            base,
            shown.as_deref(),
            &MetaSource::Raw(&self.raw),
        )
    }
}

/// Walk an encrypted tree and its decryption side by side (same shape) and collect the
/// plaintext of encrypted string leaves.
fn encrypted_leaves(enc: &Value, plain: &Value, out: &mut Vec<Zeroizing<Vec<u8>>>) {
    match (enc, plain) {
        (Value::Map(e), Value::Map(p)) => {
            for ((_, ev), (_, pv)) in e.iter().zip(p) {
                encrypted_leaves(ev, pv, out);
            }
        }
        (Value::Seq(e), Value::Seq(p)) => {
            for (ev, pv) in e.iter().zip(p) {
                encrypted_leaves(ev, pv, out);
            }
        }
        (Value::Str(e), Value::Str(p)) if e.starts_with("ENC[") => {
            out.push(Zeroizing::new(p.as_bytes().to_vec()));
        }
        _ => {}
    }
}

/// Is this content a SOPS file of this format (has a `sops` metadata block)?
pub fn is_sops(input: &[u8], format: Format) -> bool {
    // Every store names its metadata `sops` (`sops:`, `"sops"`, `sops_version=`, `[sops]`):
    // without those bytes there is nothing to parse.
    input.windows(4).any(|w| w == b"sops") && parse_encrypted(input, format).is_ok()
}

/// The store a SOPS file is read with: the one its name gives when that store reads it
/// as a SOPS file, else the first that does (a SOPS file renamed to a name of another or
/// no store stays a SOPS file). None when no store sees a SOPS file.
pub fn sops_format(input: &[u8], by_name: Format) -> Option<Format> {
    std::iter::once(by_name)
        .chain(
            [
                Format::Binary,
                Format::Json,
                Format::Yaml,
                Format::Dotenv,
                Format::Ini,
            ]
            .into_iter()
            .filter(|f| *f != by_name),
        )
        .find(|f| is_sops(input, *f))
}

/// Decrypt a SOPS file with the identities in `keys`, printed in sops's default style.
pub fn decrypt(input: &[u8], format: Format, keys: &Keyring) -> Result<Opened> {
    decrypt_styled(input, format, keys, Style::default())
}

/// Decrypt a SOPS file; sops's rendering (when shown) and later re-encryptions use `style`.
pub fn decrypt_styled(
    input: &[u8],
    format: Format,
    keys: &Keyring,
    style: Style,
) -> Result<Opened> {
    if input.len() > DEFAULT_MAX_SIZE {
        return Err(Error::TooLarge {
            size: input.len(),
            limit: DEFAULT_MAX_SIZE,
        });
    }
    let (enc_docs, meta_value, raw) = parse_encrypted(input, format)?;
    let metadata = Metadata::from_value(&meta_value)?;
    if metadata.age.is_empty() {
        if metadata.other_services.is_empty() {
            return Err(Error::Malformed("no key recipients in metadata".into()));
        }
        return Err(Error::UnsupportedKeyServices {
            services: metadata.other_services.join(", "),
        });
    }
    let key = rekey::data_key(&metadata, keys)?;
    open_with_key(format, enc_docs, metadata, raw, key, style)
}

/// Encrypt a new file (no previous version) for `params`.
pub fn encrypt(plaintext: &[u8], format: Format, params: &CreationParams) -> Result<Vec<u8>> {
    if params.recipients.is_empty() {
        return Err(Error::NoRecipients);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), key.as_mut());
    let mut age = Vec::new();
    for r in &params.recipients {
        age.push((r.trim().to_string(), wrap_data_key(&key, r)?));
    }
    // A binary file is one `data` value: a selector could only leave it in the clear.
    let selector = match (&params.selector, format) {
        (Some(s), f) if f != Format::Binary => s.clone(),
        _ => Selector::UnencryptedSuffix("_unencrypted".into()),
    };
    let ctx = Ctx {
        key: &key,
        vk: ValueKey::new(&key),
        selector: selector.clone(),
        mac_only: params.mac_only_encrypted,
        style: params.style,
    };
    build(
        format,
        plaintext,
        &ctx,
        None,
        None,
        &MetaSource::New {
            age: &age,
            selector: &selector,
            mac_only: params.mac_only_encrypted,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Parsing files
// ---------------------------------------------------------------------------------------

fn utf8(input: &[u8]) -> Result<&str> {
    std::str::from_utf8(input).map_err(|_| Error::NotUtf8)
}

/// Parse plaintext into documents for a store.
pub fn parse_plain(input: &[u8], format: Format) -> Result<Vec<Value>> {
    match format {
        Format::Yaml => Ok(yaml::parse_mappings(utf8(input)?, Limits::default())?),
        Format::Json => Ok(vec![json::parse(utf8(input)?, 128)?.root]),
        Format::Dotenv => Ok(vec![parse_dotenv(utf8(input)?)?.0]),
        Format::Ini => Ok(vec![
            ini::parse(utf8(input)?).map_err(|e| Error::Ini(e.to_string()))?
        ]),
        Format::Binary => Err(Error::Internal("binary has no tree".into())),
    }
}

fn parse_dotenv(text: &str) -> Result<(Value, Vec<String>)> {
    let mut items = Vec::new();
    let mut sops_lines = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            items.push((Key::Comment(c.to_string()), Value::Null));
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| Error::Dotenv(format!("line {}: expected KEY=value", n + 1)))?;
        if k.starts_with("sops_") {
            sops_lines.push(line.to_string());
        }
        items.push((Key::Name(k.to_string()), Value::Str(v.replace("\\n", "\n"))));
    }
    Ok((Value::Map(items), sops_lines))
}

/// Split an encrypted file into its data documents, its metadata and the metadata's text.
fn parse_encrypted(input: &[u8], format: Format) -> Result<(Vec<Value>, Value, RawMeta)> {
    let text = utf8(input)?;
    match format {
        Format::Yaml => {
            let mut docs = yaml::parse_mappings(text, Limits::default())?;
            let meta = docs
                .first()
                .and_then(|d| d.get("sops"))
                .cloned()
                .ok_or(Error::NotSops)?;
            for d in docs.iter_mut() {
                remove_key(d, "sops");
            }
            let raw = yaml_sops_block(text).ok_or(Error::NotSops)?;
            // The block's text is kept for rewrites: it must say exactly what was parsed
            // (read as it ended in the file: a block scalar at the end of a file without
            // a final line break has none).
            let probe = match text.ends_with('\n') {
                true => raw.as_str(),
                false => raw.strip_suffix('\n').unwrap_or(&raw),
            };
            let reparsed = yaml::parse_mappings(probe, Limits::default())
                .ok()
                .and_then(|d| d.first().and_then(|d| d.get("sops")).cloned());
            if !reparsed.is_some_and(|r| r.same(&meta)) {
                return Err(Error::Malformed(
                    "the sops block is not a plain top-level `sops:` mapping".into(),
                ));
            }
            Ok((docs, meta, RawMeta::Yaml(raw)))
        }
        Format::Json | Format::Binary => {
            let parsed = json::parse(text, 128)?;
            let mut root = parsed.root;
            let meta = root.get("sops").cloned().ok_or(Error::NotSops)?;
            let (s, e) = parsed.sops_value_span.ok_or(Error::NotSops)?;
            remove_key(&mut root, "sops");
            if format == Format::Binary && !matches!(root.get("data"), Some(Value::Str(_))) {
                return Err(Error::Malformed(
                    "binary file without a `data` string".into(),
                ));
            }
            Ok((vec![root], meta, RawMeta::Json(text[s..e].to_string())))
        }
        Format::Dotenv => {
            let (mut root, sops_lines) = parse_dotenv(text)?;
            if sops_lines.is_empty() {
                return Err(Error::NotSops);
            }
            let mut flat = Vec::new();
            if let Value::Map(items) = &mut root {
                items.retain(|(k, v)| match k {
                    Key::Name(n) if n.starts_with("sops_") => {
                        flat.push((n["sops_".len()..].to_string(), v.clone()));
                        false
                    }
                    _ => true,
                });
            }
            let raw = sops_lines
                .iter()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k["sops_".len()..].to_string(), v.to_string()))
                .collect();
            Ok((vec![root], unflatten(&flat)?, RawMeta::Flat(raw)))
        }
        Format::Ini => {
            let mut root = ini::parse(text).map_err(|e| Error::Ini(e.to_string()))?;
            let mut raw = Vec::new();
            if let Value::Map(sections) = &mut root {
                sections.retain(|(k, v)| {
                    if !matches!(k, Key::Name(n) if n == "sops") {
                        return true;
                    }
                    if let Value::Map(entries) = v {
                        for (ek, ev) in entries {
                            if let (Key::Name(n), Value::Str(s)) = (ek, ev) {
                                raw.push((n.clone(), s.clone()));
                            }
                        }
                    }
                    false
                });
            }
            if raw.is_empty() {
                return Err(Error::NotSops);
            }
            let flat: Vec<(String, Value)> = raw
                .iter()
                .map(|(k, v)| (k.clone(), Value::Str(v.replace("\\n", "\n"))))
                .collect();
            Ok((vec![root], unflatten(&flat)?, RawMeta::Flat(raw)))
        }
    }
}

fn remove_key(doc: &mut Value, key: &str) {
    if let Value::Map(items) = doc {
        items.retain(|(k, _)| !matches!(k, Key::Name(n) if n == key));
    }
}

/// The `sops:` block of the first YAML document, as text.
fn yaml_sops_block(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut inside = false;
    // Comment lines at column 0 inside the block (sops leaves a comment of the data
    // there when it stood at the end of a list): part of it if the block goes on.
    let mut pending = String::new();
    for line in text.split_inclusive('\n') {
        if inside {
            let first = line.as_bytes().first().copied();
            if first == Some(b'#') {
                pending.push_str(line);
                continue;
            }
            let ends = !matches!(first, None | Some(b'\n' | b'\r' | b' ' | b'\t'));
            if ends {
                break;
            }
            out.push_str(&pending);
            pending.clear();
            out.push_str(line);
        } else if line.trim_end() == "sops:" {
            inside = true;
            out.push_str(line);
        } else if line.starts_with("---") && !out.is_empty() {
            break;
        }
    }
    if !inside {
        return None;
    }
    // Blank lines at the end belong to what follows.
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

/// Rebuild the metadata map from dotenv's flattened `sops_` keys.
fn unflatten(flat: &[(String, Value)]) -> Result<Value> {
    let mut top: Vec<(Key, Value)> = Vec::new();
    for (k, v) in flat {
        if let Some((service, rest)) = k.split_once("__list_") {
            let (idx, field) = rest
                .split_once("__map_")
                .ok_or_else(|| Error::Malformed(format!("bad flattened key sops_{k}")))?;
            let idx: usize = idx
                .parse()
                .map_err(|_| Error::Malformed(format!("bad flattened key sops_{k}")))?;
            if idx > 1000 {
                return Err(Error::Malformed("too many key entries".into()));
            }
            let pos = match top
                .iter()
                .position(|(kk, _)| kk == &Key::Name(service.into()))
            {
                Some(p) => p,
                None => {
                    top.push((Key::Name(service.into()), Value::Seq(Vec::new())));
                    top.len() - 1
                }
            };
            if let Value::Seq(list) = &mut top[pos].1 {
                while list.len() <= idx {
                    list.push(Value::Map(Vec::new()));
                }
                if let Value::Map(m) = &mut list[idx] {
                    m.push((Key::Name(field.into()), v.clone()));
                }
            }
        } else {
            let v = match (k.as_str(), v) {
                ("mac_only_encrypted", Value::Str(s)) => Value::Bool(s == "true"),
                ("shamir_threshold", Value::Str(s)) => Value::Int(
                    s.parse()
                        .map_err(|_| Error::Malformed("bad shamir_threshold".into()))?,
                ),
                _ => v.clone(),
            };
            top.push((Key::Name(k.clone()), v));
        }
    }
    Ok(Value::Map(top))
}

// ---------------------------------------------------------------------------------------
// Walking trees
// ---------------------------------------------------------------------------------------

struct Ctx<'a> {
    key: &'a [u8; 32],
    vk: ValueKey,
    selector: Selector,
    mac_only: bool,
    style: Style,
}

fn aad(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

fn new_hasher(mac_only: bool) -> Sha512 {
    let mut h = Sha512::new();
    if mac_only {
        h.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    h
}

struct Decrypter<'a> {
    ctx: &'a Ctx<'a>,
    mac: Sha512,
    /// The encrypted documents, to look for the place a moved comment was sealed for.
    docs: &'a [Value],
    /// Their collections' additional data, gathered at the first comment that needs it.
    places: Option<Vec<String>>,
    /// Does any document leave an entry in clear (see `holds_clear`)?
    clear_anywhere: Option<bool>,
    /// Envelopes of `docs` opened ahead, on two threads (large files only).
    pre: preopen::PreOpened<'a>,
}

impl Decrypter<'_> {
    /// sops leaves the comments of an unencrypted subtree in clear, and go-yaml may read
    /// one far from that subtree (after it, at an ancestor's level, or in a later
    /// sibling): a file with any entry left in clear may hold clear comments. In a file
    /// where everything is encrypted, a clear comment is refused.
    fn holds_clear(&mut self) -> bool {
        fn within(sel: &Selector, v: &Value, path: &mut Vec<String>) -> bool {
            match v {
                Value::Map(items) => items.iter().any(|(k, v)| match k {
                    Key::Name(n) if n == "sops" && path.is_empty() => false,
                    Key::Name(n) => {
                        path.push(n.clone());
                        let clear = !sel.should_encrypt(path, &[], false) || within(sel, v, path);
                        path.pop();
                        clear
                    }
                    Key::Comment(_) => false,
                }),
                Value::Seq(list) => list.iter().any(|i| within(sel, i, path)),
                _ => false,
            }
        }
        let (sel, docs) = (&self.ctx.selector, self.docs);
        *self
            .clear_anywhere
            .get_or_insert_with(|| docs.iter().any(|d| within(sel, d, &mut Vec::new())))
    }

    fn sealed_elsewhere(&mut self, env: &super::cipher::Envelope) -> bool {
        let places = self
            .places
            .get_or_insert_with(|| comments::collection_aads(self.docs));
        places.iter().any(|a| self.ctx.vk.open(env, a).is_some())
    }

    /// An encrypted value's type and plaintext, or why it cannot be had.
    fn open_value(&self, s: &str, path: &[String]) -> Result<(String, Vec<u8>)> {
        let env = parse_envelope(s).map_err(|e| {
            if is_envelope(s) {
                Error::Malformed(format!("value at {:?}: {e}", aad(path)))
            } else {
                Error::Malformed(format!(
                    "value at {:?} should be encrypted but is not",
                    aad(path)
                ))
            }
        })?;
        let bytes = self
            .ctx
            .vk
            .open(&env, &aad(path))
            .ok_or_else(|| Error::Tampered { path: aad(path) })?;
        Ok((env.kind, bytes))
    }

    fn comment(&mut self, c: &str, path: &[String], stack: &[Vec<String>]) -> Result<String> {
        if !self.ctx.selector.should_encrypt(path, stack, true) || c.is_empty() {
            return Ok(c.to_string());
        }
        if let Some((kind, plain)) = self.pre.take(c, path) {
            if kind == "comment" {
                return String::from_utf8(plain)
                    .map_err(|_| Error::Malformed("comment is not UTF-8".into()));
            }
        }
        // sops passes unauthenticated comments through; we refuse them.
        let env = parse_envelope(c).map_err(|_| Error::Tampered {
            path: format!("{}#comment", aad(path)),
        })?;
        if env.kind != "comment" {
            return Err(Error::Tampered {
                path: format!("{}#comment", aad(path)),
            });
        }
        let plain = match self.ctx.vk.open(&env, &aad(path)) {
            Some(p) => p,
            // sops seals a comment for the place it was written; its reader may attach
            // it to another node (see `comments`), fail to open it there and print it
            // as it is. So do we, once it opens for another place of this file: it was
            // written with this file's key, and comments are not in the MAC.
            None if self.sealed_elsewhere(&env) => return Ok(c.to_string()),
            None => {
                return Err(Error::Tampered {
                    path: format!("{}#comment", aad(path)),
                })
            }
        };
        String::from_utf8(plain).map_err(|_| Error::Malformed("comment is not UTF-8".into()))
    }

    fn value(
        &mut self,
        v: &Value,
        path: &mut Vec<String>,
        stack: &mut Vec<Vec<String>>,
    ) -> Result<Value> {
        match v {
            Value::Map(items) => {
                stack.push(Vec::new());
                let mut out: Vec<(Key, Value)> = Vec::with_capacity(items.len());
                for (k, val) in items {
                    match k {
                        Key::Comment(c) => {
                            let level = stack.len() - 1;
                            stack[level].push(c.clone());
                            let plain = if !is_envelope(c) && self.holds_clear() {
                                c.clone()
                            } else {
                                self.comment(c, path, stack)?
                            };
                            if let Some(last) = stack[level].last_mut() {
                                last.clone_from(&plain);
                            }
                            out.push((Key::Comment(plain), Value::Null));
                        }
                        Key::Name(n) => {
                            path.push(n.clone());
                            let d = self.value(val, path, stack)?;
                            path.pop();
                            out.push((k.clone(), d));
                            let level = stack.len() - 1;
                            stack[level].clear();
                        }
                    }
                }
                stack.pop();
                Ok(Value::Map(out))
            }
            Value::Seq(items) => {
                stack.push(Vec::new());
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Value::Comment(c) = item {
                        let level = stack.len() - 1;
                        stack[level].push(c.clone());
                        // sops decrypts an empty comment that stands in a list to an
                        // empty string: it becomes a list element.
                        if c.is_empty() && self.ctx.selector.should_encrypt(path, stack, true) {
                            out.push(Value::Str(String::new()));
                            continue;
                        }
                        let plain = if !is_envelope(c) && self.holds_clear() {
                            c.clone()
                        } else {
                            self.comment(c, path, stack)?
                        };
                        if let Some(last) = stack[level].last_mut() {
                            last.clone_from(&plain);
                        }
                        out.push(Value::Comment(plain));
                    } else {
                        out.push(self.value(item, path, stack)?);
                        let level = stack.len() - 1;
                        stack[level].clear();
                    }
                }
                stack.pop();
                Ok(Value::Seq(out))
            }
            Value::Null => Ok(Value::Null),
            leaf => {
                let encrypted = self.ctx.selector.should_encrypt(path, stack, false);
                let plain = if encrypted {
                    match leaf {
                        Value::Str(s) if s.is_empty() => Value::Str(String::new()),
                        Value::Str(s) => {
                            let (kind, bytes) = match self.pre.take(s, path) {
                                Some(opened) => opened,
                                None => self.open_value(s, path)?,
                            };
                            Value::from_leaf(&kind, &bytes).map_err(|e| {
                                Error::Malformed(format!("value at {:?}: {e}", aad(path)))
                            })?
                        }
                        _ => {
                            return Err(Error::Malformed(format!(
                                "value at {:?} should be encrypted but is not",
                                aad(path)
                            )))
                        }
                    }
                } else {
                    leaf.clone()
                };
                // sops stores an encrypted comment that stands in a sequence as a list
                // element `- ENC[...,type:comment]`; it is a comment again, never hashed.
                if !matches!(plain, Value::Comment(_)) && (!self.ctx.mac_only || encrypted) {
                    if let Some(b) = plain.leaf_bytes() {
                        self.mac.update(&b);
                    }
                }
                Ok(plain)
            }
        }
    }
}

struct Encrypter<'a> {
    ctx: &'a Ctx<'a>,
    mac: Sha512,
    /// Ciphertexts of the file being rewritten by (AAD, type, plaintext), in document
    /// order: a plaintext met again under the same AAD keeps a ciphertext it had (so a
    /// moved value keeps its line, as with sops's IV stash). Unlike sops, each old
    /// ciphertext is given out once: equal secrets never share a ciphertext, which would
    /// show they are equal.
    stash: HashMap<(String, String, Vec<u8>), std::collections::VecDeque<String>>,
    /// Ciphertexts already written into the new file.
    used: std::collections::HashSet<String>,
    /// Each comment envelope written, with the additional data it was sealed under.
    sealed: HashMap<String, String>,
}

impl Encrypter<'_> {
    /// An old ciphertext for this stash key that the new file does not hold yet.
    fn take(&mut self, key: &(String, String, Vec<u8>)) -> Option<String> {
        let q = self.stash.get_mut(key)?;
        while let Some(e) = q.pop_front() {
            if !self.used.contains(&e) {
                return Some(e);
            }
        }
        None
    }

    /// Keep `e` unless the new file already has it.
    fn keep(&mut self, e: &str) -> bool {
        self.used.insert(e.to_string())
    }
}

/// A value's key in the stash: Go map keys, so `-0` and `0` are one float and NaN none.
fn stash_key(leaf: &Value, path: &[String]) -> Option<(String, String, Vec<u8>)> {
    let bytes = match leaf {
        Value::Float(f) if f.is_nan() => return None,
        Value::Float(f) if *f == 0.0 => b"0".to_vec(),
        other => other.leaf_bytes()?,
    };
    Some((aad(path), leaf.type_tag()?.to_string(), bytes))
}

/// Fill `out` with the ciphertexts of a decrypted tree (`plain`) and its file (`enc`).
fn collect_stash(
    plain: &Value,
    enc: &Value,
    path: &mut Vec<String>,
    out: &mut HashMap<(String, String, Vec<u8>), std::collections::VecDeque<String>>,
) {
    fn put(
        out: &mut HashMap<(String, String, Vec<u8>), std::collections::VecDeque<String>>,
        kind: &str,
        bytes: Vec<u8>,
        e: &str,
        path: &[String],
    ) {
        if is_envelope(e) {
            out.entry((aad(path), kind.to_string(), bytes))
                .or_default()
                .push_back(e.to_string());
        }
    }
    match (plain, enc) {
        (Value::Map(p), Value::Map(e)) if p.len() == e.len() => {
            for ((pk, pv), (ek, ev)) in p.iter().zip(e) {
                match (pk, ek) {
                    (Key::Comment(pc), Key::Comment(ec)) => {
                        put(out, "comment", pc.as_bytes().to_vec(), ec, path)
                    }
                    (Key::Name(n), Key::Name(_)) => {
                        path.push(n.clone());
                        collect_stash(pv, ev, path, out);
                        path.pop();
                    }
                    _ => {}
                }
            }
        }
        (Value::Seq(p), Value::Seq(e)) if p.len() == e.len() => {
            for (pv, ev) in p.iter().zip(e) {
                match (pv, ev) {
                    (Value::Comment(pc), Value::Comment(ec) | Value::Str(ec)) => {
                        put(out, "comment", pc.as_bytes().to_vec(), ec, path)
                    }
                    _ => collect_stash(pv, ev, path, out),
                }
            }
        }
        (Value::Map(_) | Value::Seq(_), _) => {}
        (leaf, Value::Str(e)) => {
            if let Some(k) = stash_key(leaf, path).filter(|_| is_envelope(e)) {
                out.entry(k).or_default().push_back(e.clone());
            }
        }
        _ => {}
    }
}

/// Same plaintext at the same position? Numbers compare by text (int 5 == float 5).
fn same_leaf(a: &Value, b: &Value) -> bool {
    let numeric = |v: &Value| matches!(v, Value::Int(_) | Value::Float(_));
    (a.type_tag() == b.type_tag() || numeric(a) && numeric(b))
        && a.leaf_bytes().is_some()
        && a.leaf_bytes() == b.leaf_bytes()
}

impl Encrypter<'_> {
    fn comment(
        &mut self,
        c: &str,
        base: Option<(&str, &str)>,
        path: &[String],
        stack: &[Vec<String>],
    ) -> String {
        if !self.ctx.selector.should_encrypt(path, stack, true) || c.is_empty() {
            return c.to_string();
        }
        // Its own position first, then an equal one moved here.
        if let Some((bp, be)) = base {
            if bp == c && is_envelope(be) && self.keep(be) {
                self.sealed.insert(be.to_string(), aad(path));
                return be.to_string();
            }
        }
        let key = (aad(path), "comment".to_string(), c.as_bytes().to_vec());
        let e = match self.take(&key) {
            Some(e) => {
                self.keep(&e);
                e
            }
            None => self.ctx.vk.seal(c.as_bytes(), &aad(path), "comment"),
        };
        self.sealed.insert(e.clone(), aad(path));
        e
    }

    fn value(
        &mut self,
        v: &Value,
        base: Option<(&Value, &Value)>,
        path: &mut Vec<String>,
        stack: &mut Vec<Vec<String>>,
    ) -> Value {
        match v {
            Value::Map(items) => {
                let (bp, be) = match base {
                    Some((Value::Map(p), Value::Map(e))) if p.len() == e.len() => (&p[..], &e[..]),
                    _ => (&[][..], &[][..]),
                };
                let base_comments: Vec<(&str, &str)> = bp
                    .iter()
                    .zip(be)
                    .filter_map(|((pk, _), (ek, _))| match (pk, ek) {
                        (Key::Comment(p), Key::Comment(e)) => Some((p.as_str(), e.as_str())),
                        _ => None,
                    })
                    .collect();
                stack.push(Vec::new());
                let mut out = Vec::with_capacity(items.len());
                let mut ci = 0;
                for (k, val) in items {
                    match k {
                        Key::Comment(c) => {
                            let level = stack.len() - 1;
                            stack[level].push(c.clone());
                            let e = self.comment(c, base_comments.get(ci).copied(), path, stack);
                            ci += 1;
                            out.push((Key::Comment(e), Value::Null));
                        }
                        Key::Name(n) => {
                            // The k-th entry named `n` pairs with the k-th one in the base
                            // (dotenv and INI files may repeat a key).
                            let nth = items[..out.len()]
                                .iter()
                                .filter(|(pk, _)| matches!(pk, Key::Name(x) if x == n))
                                .count();
                            let b = bp
                                .iter()
                                .zip(be)
                                .filter_map(|((pk, pv), (_, ev))| match pk {
                                    Key::Name(bn) if bn == n => Some((pv, ev)),
                                    _ => None,
                                })
                                .nth(nth);
                            path.push(n.clone());
                            let e = self.value(val, b, path, stack);
                            path.pop();
                            out.push((k.clone(), e));
                            let level = stack.len() - 1;
                            stack[level].clear();
                        }
                    }
                }
                stack.pop();
                Value::Map(out)
            }
            Value::Seq(items) => {
                let (bp, be) = match base {
                    Some((Value::Seq(p), Value::Seq(e))) if p.len() == e.len() => (&p[..], &e[..]),
                    _ => (&[][..], &[][..]),
                };
                stack.push(Vec::new());
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let b = bp.get(i).zip(be.get(i));
                    if let Value::Comment(c) = item {
                        let level = stack.len() - 1;
                        stack[level].push(c.clone());
                        let bc = match b {
                            Some((Value::Comment(p), Value::Comment(e) | Value::Str(e))) => {
                                Some((p.as_str(), e.as_str()))
                            }
                            _ => None,
                        };
                        let e = self.comment(c, bc, path, stack);
                        // As sops writes it: an encrypted comment in a sequence is a list
                        // element (`- ENC[...,type:comment]`), a plain one a comment line,
                        // and an empty one it would encrypt the element `- ""`.
                        let empty =
                            c.is_empty() && self.ctx.selector.should_encrypt(path, stack, true);
                        out.push(if is_envelope(&e) || empty {
                            Value::Str(e)
                        } else {
                            Value::Comment(e)
                        });
                    } else {
                        out.push(self.value(item, b, path, stack));
                        let level = stack.len() - 1;
                        stack[level].clear();
                    }
                }
                stack.pop();
                Value::Seq(out)
            }
            Value::Null => Value::Null,
            leaf => {
                let encrypted = self.ctx.selector.should_encrypt(path, stack, false);
                if !self.ctx.mac_only || encrypted {
                    if let Some(b) = leaf.leaf_bytes() {
                        self.mac.update(&b);
                    }
                }
                if !encrypted || matches!(leaf, Value::Str(s) if s.is_empty()) {
                    return leaf.clone();
                }
                let bytes = leaf.leaf_bytes().unwrap_or_default();
                let tag = leaf.type_tag().unwrap_or("str");
                // An int the file stored as a float (JSON numbers are floats to sops).
                let as_float = match leaf {
                    Value::Int(i) => stash_key(&Value::Float(*i as f64), path),
                    _ => None,
                };
                // Its own position first, then an equal value moved here.
                if let Some((bp, Value::Str(be))) = base {
                    if same_leaf(bp, leaf) && is_envelope(be) && self.keep(be) {
                        return Value::Str(be.clone());
                    }
                }
                let found = stash_key(leaf, path)
                    .and_then(|k| self.take(&k))
                    .or_else(|| as_float.and_then(|k| self.take(&k)));
                if let Some(e) = found {
                    // An equal value keeps its ciphertext; an equal one with other bytes
                    // (`-0` for `0`) is encrypted afresh.
                    let same = parse_envelope(&e)
                        .ok()
                        .and_then(|env| self.ctx.vk.open(&env, &aad(path)))
                        .is_some_and(|p| p == bytes);
                    if same {
                        self.keep(&e);
                        return Value::Str(e);
                    }
                    return Value::Str(self.ctx.vk.seal(&bytes, &aad(path), tag));
                }
                Value::Str(self.ctx.vk.seal(&bytes, &aad(path), tag))
            }
        }
    }
}

fn mac_hex(h: Sha512) -> String {
    h.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

/// Decrypt trees with a known data key and verify the MAC; pick the plaintext to show.
fn open_with_key(
    format: Format,
    enc_docs: Vec<Value>,
    metadata: Metadata,
    raw: RawMeta,
    key: Zeroizing<[u8; 32]>,
    style: Style,
) -> Result<Opened> {
    let ctx = Ctx {
        key: &key,
        vk: ValueKey::new(&key),
        selector: metadata.selector_or_default(),
        mac_only: metadata.mac_only_encrypted,
        style,
    };
    let mut dec = Decrypter {
        ctx: &ctx,
        mac: new_hasher(ctx.mac_only),
        docs: &enc_docs,
        places: None,
        clear_anywhere: None,
        pre: if format == Format::Binary {
            preopen::PreOpened::none()
        } else {
            preopen::PreOpened::open(&enc_docs, &ctx.vk)
        },
    };
    // The copy of the text, once opened (`Some(None)`: there is none, or it did not open).
    let mut source: Option<Option<Vec<u8>>> = None;
    let (plain_docs, binary) = if format == Format::Binary {
        let data = enc_docs[0]
            .get("data")
            .and_then(Value::as_str)
            .unwrap_or("");
        let env = parse_envelope(data).map_err(|e| Error::Malformed(format!("data: {e}")))?;
        let bytes = open(&key, &env, "data:").ok_or(Error::Tampered {
            path: "data:".into(),
        })?;
        if ctx
            .selector
            .should_encrypt(&["data".to_string()], &[], false)
            || !ctx.mac_only
        {
            dec.mac.update(&bytes);
        }
        (Vec::new(), Some(bytes))
    } else {
        let walk = |dec: &mut Decrypter| -> Result<Vec<Value>> {
            let mut docs = Vec::with_capacity(enc_docs.len());
            for d in &enc_docs {
                docs.push(dec.value(d, &mut Vec::new(), &mut Vec::new())?);
            }
            Ok(docs)
        };
        // A large copy of the text is opened beside the walk: it needs nothing from it,
        // and is used only once the MAC is checked.
        let docs = if metadata
            .source
            .as_ref()
            .is_some_and(|s| s.len() >= PARALLEL_SOURCE_BYTES)
        {
            std::thread::scope(|sc| {
                let other = std::thread::Builder::new()
                    .name("valuesfs-source".into())
                    .spawn_scoped(sc, || open_source(&metadata, &key));
                let docs = walk(&mut dec);
                source = other.ok().and_then(|h| h.join().ok());
                docs
            })?
        } else {
            walk(&mut dec)?
        };
        (docs, None)
    };
    let computed = mac_hex(dec.mac);
    let mac_env =
        parse_envelope(&metadata.mac).map_err(|e| Error::Malformed(format!("mac: {e}")))?;
    let stored = open(&key, &mac_env, &metadata.lastmodified).ok_or(Error::MacMismatch)?;
    if stored != computed.as_bytes() {
        return Err(Error::MacMismatch);
    }
    let plaintext = match binary {
        Some(b) => b,
        None => {
            // The copy is bound to this version's authenticated `mac` envelope (fresh
            // random IV at every write), so it cannot be stale or replayed from another
            // version; `build` checked that it describes exactly this data when it was made.
            let source = match source {
                Some(opened) => opened,
                None => open_source(&metadata, &key),
            };
            match source {
                Some(b) => b,
                None => render_styled(format, &plain_docs, style).into_bytes(),
            }
        }
    };
    Ok(Opened {
        format,
        plaintext: Zeroizing::new(plaintext),
        metadata,
        key,
        raw,
        enc_docs,
        plain_docs,
        style,
    })
}

/// The stored copy of the text, if the file has one that opens.
fn open_source(metadata: &Metadata, key: &[u8; 32]) -> Option<Vec<u8>> {
    let env = parse_envelope(metadata.source.as_deref()?).ok()?;
    open(
        key,
        &env,
        &source_aad(&metadata.lastmodified, &metadata.mac),
    )
}

fn source_aad(lastmodified: &str, mac: &str) -> String {
    format!("{SOURCE_FIELD}:{lastmodified}:{mac}")
}

/// sops's rendering of decrypted documents (what `sops -d` prints), default style.
pub fn render_plain(format: Format, docs: &[Value]) -> String {
    render_styled(format, docs, Style::default())
}

/// sops's rendering of decrypted documents under `stores:` settings.
pub fn render_styled(format: Format, docs: &[Value], style: Style) -> String {
    match format {
        Format::Yaml => yaml::emit_indented(docs, style.yaml_indent),
        Format::Json => {
            let mut s = json::emit(&docs[0], None, style.json_indent);
            s.push('\n');
            s
        }
        Format::Dotenv => render_dotenv(&docs[0], &[]),
        Format::Ini => ini::emit(&docs[0], None),
        Format::Binary => String::new(),
    }
}

fn render_dotenv(root: &Value, tail: &[String]) -> String {
    let mut out = String::new();
    if let Value::Map(items) = root {
        for (k, v) in items {
            match k {
                Key::Comment(c) => {
                    out.push('#');
                    out.push_str(c);
                }
                Key::Name(n) => {
                    out.push_str(n);
                    out.push('=');
                    let text = match v {
                        Value::Str(s) => s.clone(),
                        other => yaml::scalar_text(other),
                    };
                    out.push_str(&text.replace('\n', "\\n"));
                }
            }
            out.push('\n');
        }
    }
    for l in tail {
        out.push_str(l);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Writing files
// ---------------------------------------------------------------------------------------

enum MetaSource<'a> {
    Raw(&'a RawMeta),
    New {
        age: &'a [(String, String)],
        selector: &'a Selector,
        mac_only: bool,
    },
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Encrypt `plaintext`, assemble the file, and check it decrypts back to the same bytes.
fn build(
    format: Format,
    plaintext: &[u8],
    ctx: &Ctx,
    base: Option<(&[Value], &[Value])>,
    shown: Option<&[Value]>,
    meta: &MetaSource,
) -> Result<Vec<u8>> {
    if plaintext.len() > DEFAULT_MAX_SIZE {
        return Err(Error::TooLarge {
            size: plaintext.len(),
            limit: DEFAULT_MAX_SIZE,
        });
    }
    let mut stash = HashMap::new();
    for (p, e) in base.into_iter().flat_map(|(p, e)| p.iter().zip(e)) {
        collect_stash(p, e, &mut Vec::new(), &mut stash);
    }
    let mut enc = Encrypter {
        ctx,
        mac: new_hasher(ctx.mac_only),
        stash,
        used: Default::default(),
        sealed: HashMap::new(),
    };
    let mut laid_out: Option<Vec<Value>> = None;
    let enc_docs = if format == Format::Binary {
        if ctx
            .selector
            .should_encrypt(&["data".to_string()], &[], false)
            || !ctx.mac_only
        {
            enc.mac.update(plaintext);
        }
        // Binary data is one value: re-sealed whole on every change.
        vec![Value::Map(vec![(
            Key::Name("data".into()),
            Value::Str(seal(ctx.key, plaintext, "data:", "str")),
        )])]
    } else {
        let mut docs = parse_plain(plaintext, format)?;
        let edit = match (base, shown) {
            (Some((old, _)), Some(shown)) if old.len() == shown.len() => Some((old, shown)),
            _ => None,
        };
        if let Some((old, shown)) = edit {
            for ((d, o), r) in docs.iter_mut().zip(old).zip(shown) {
                *d = merge_edit(d, r, o);
            }
        } else if let (Format::Yaml, Some((old, _))) = (format, base) {
            // Where only values changed, comments stay where the file's tree had them
            // (as with `sops set`): reading sops's text back may attach them elsewhere.
            for (d, o) in docs.iter_mut().zip(old) {
                if let Some(kept) = yaml::keep_comment_layout(d, o) {
                    *d = kept;
                }
            }
        }
        let mut out = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let b = base.and_then(|(p, e)| p.get(i).zip(e.get(i)));
            out.push(enc.value(d, b, &mut Vec::new(), &mut Vec::new()));
        }
        laid_out = Some(docs);
        out
    };
    let lastmodified = now_rfc3339();
    let mac = seal(ctx.key, mac_hex(enc.mac).as_bytes(), &lastmodified, "str");
    let enc_docs = match format {
        Format::Yaml => {
            let probe = assemble(
                format,
                &enc_docs,
                meta,
                &lastmodified,
                &mac,
                None,
                ctx.style,
            )?;
            comments::reseal_where_read(&ctx.vk, &probe, &enc.sealed)?.unwrap_or(enc_docs)
        }
        _ => enc_docs,
    };
    // Only carry the source copy when sops's rendering would not give the bytes back.
    let plain_docs = match format {
        Format::Binary => None,
        _ => Some(parse_plain(plaintext, format)?),
    };
    // The tree as encrypted (comments where the file had them) is what sops prints.
    let needs_source = match laid_out.as_ref().or(plain_docs.as_ref()) {
        Some(d) => render_styled(format, d, ctx.style).as_bytes() != plaintext,
        None => false,
    };
    for with_source in [needs_source, true] {
        let source = with_source.then(|| {
            seal(
                ctx.key,
                plaintext,
                &source_aad(&lastmodified, &mac),
                "bytes",
            )
        });
        let file = assemble(
            format,
            &enc_docs,
            meta,
            &lastmodified,
            &mac,
            source.as_deref(),
            ctx.style,
        )?;
        // Read what we wrote, with the same key: it must give back exactly `plaintext`.
        let (docs, mv, raw) = parse_encrypted(file.as_bytes(), format)?;
        let md = Metadata::from_value(&mv)?;
        let check = open_with_key(format, docs, md, raw, Zeroizing::new(*ctx.key), ctx.style)?;
        // Same bytes back, and the authenticated data is what the plaintext says.
        // Comments are compared for presence only: sops's reader may attach a comment it
        // wrote to another node than the one it came from (never to another AAD here, or
        // the check above fails), as it does for its own files.
        // An empty comment in a list comes back as an empty string, as with sops: empty
        // list strings are left out of the comparison (they are not in the MAC either).
        let strip = |d: &[Value]| d.iter().map(data_view).collect::<Vec<_>>();
        let same_data = laid_out
            .as_ref()
            .or(plain_docs.as_ref())
            .is_none_or(|d| same_docs(&strip(d), &strip(&check.plain_docs)));
        if check.plaintext.as_slice() == plaintext && same_data {
            return Ok(file.into_bytes());
        }
        if format == Format::Binary {
            break;
        }
    }
    Err(Error::Internal(
        "encrypted file does not decrypt back to its plaintext".into(),
    ))
}

/// The tree to write for an edit: the data of `new` where the user changed it, of `base`
/// where not ([`keep_unedited`], on the trees without comments, so list positions are
/// data positions); the comments where the file had them when the user left the
/// comments alone (the same list, in order, as the text shown), else where the user put
/// them. sops prints some comments elsewhere than its tree holds them, so comparing with
/// the base would take every such comment for an edit.
fn merge_edit(new: &Value, shown: &Value, base: &Value) -> Value {
    let data = keep_unedited(
        &new.without_comments(),
        &shown.without_comments(),
        &base.without_comments(),
    );
    let untouched = yaml::comment_list(new) == yaml::comment_list(shown);
    let layout = if untouched {
        yaml::transplant(base, &data)
    } else {
        None
    };
    layout
        .or_else(|| yaml::transplant(new, &data))
        .unwrap_or_else(|| new.clone())
}

/// `new` with every part that reads the same as `shown` (the text last shown, read back)
/// replaced by that part of `base` (the file's tree): only what the user changed counts
/// as changed. Entries pair by key name, list items by position (same lengths only).
fn keep_unedited(new: &Value, shown: &Value, base: &Value) -> Value {
    if new == shown {
        return base.clone();
    }
    match (new, shown, base) {
        (Value::Map(n), Value::Map(r), Value::Map(b)) => {
            let find = |items: &[(Key, Value)], name: &str| {
                items
                    .iter()
                    .find(|(k, _)| matches!(k, Key::Name(x) if x == name))
                    .map(|(_, v)| v.clone())
            };
            Value::Map(
                n.iter()
                    .map(|(k, nv)| match k {
                        Key::Name(name) => match (find(r, name), find(b, name)) {
                            (Some(rv), Some(bv)) => (k.clone(), keep_unedited(nv, &rv, &bv)),
                            _ => (k.clone(), nv.clone()),
                        },
                        Key::Comment(_) => (k.clone(), nv.clone()),
                    })
                    .collect(),
            )
        }
        (Value::Seq(n), Value::Seq(r), Value::Seq(b))
            if n.len() == r.len() && r.len() == b.len() =>
        {
            Value::Seq(
                n.iter()
                    .zip(r)
                    .zip(b)
                    .map(|((nv, rv), bv)| keep_unedited(nv, rv, bv))
                    .collect(),
            )
        }
        _ => new.clone(),
    }
}

/// A document's data as the self-check compares it: no comments, no empty strings in
/// lists (see `build`).
fn data_view(v: &Value) -> Value {
    match v {
        Value::Map(items) => Value::Map(
            items
                .iter()
                .filter(|(k, _)| matches!(k, Key::Name(_)))
                .map(|(k, v)| (k.clone(), data_view(v)))
                .collect(),
        ),
        Value::Seq(items) => Value::Seq(
            items
                .iter()
                .filter(|v| {
                    !matches!(v, Value::Comment(_)) && !matches!(v, Value::Str(s) if s.is_empty())
                })
                .map(data_view)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn assemble(
    format: Format,
    enc_docs: &[Value],
    meta: &MetaSource,
    lastmodified: &str,
    mac: &str,
    source: Option<&str>,
    style: Style,
) -> Result<String> {
    match format {
        Format::Yaml => {
            let block = match meta {
                MetaSource::Raw(RawMeta::Yaml(raw)) => {
                    patch_yaml_block(raw, lastmodified, mac, source)
                }
                MetaSource::Raw(_) => return Err(meta_mismatch()),
                MetaSource::New {
                    age,
                    selector,
                    mac_only,
                } => yaml::emit_entry(
                    "sops",
                    &new_meta_value(age, selector, *mac_only, lastmodified, mac, source),
                    style.yaml_indent,
                ),
            };
            let mut out = String::new();
            for (i, d) in enc_docs.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&yaml::emit_doc_before_meta(d, style.yaml_indent));
                out.push_str(&block);
            }
            Ok(out)
        }
        Format::Json | Format::Binary => {
            let tail = match meta {
                MetaSource::Raw(RawMeta::Json(raw)) => {
                    patch_json_block(raw, lastmodified, mac, source)?
                }
                MetaSource::Raw(_) => return Err(meta_mismatch()),
                MetaSource::New {
                    age,
                    selector,
                    mac_only,
                } => {
                    let mut s = String::new();
                    json::emit_value(
                        &mut s,
                        &new_meta_value(age, selector, *mac_only, lastmodified, mac, source),
                        1,
                        style.json(format),
                    );
                    s
                }
            };
            let mut out = json::emit(&enc_docs[0], Some(&tail), style.json(format));
            out.push('\n');
            Ok(out)
        }
        Format::Dotenv => {
            let lines: Vec<String> = flat_meta(meta, lastmodified, mac, source)?
                .into_iter()
                .map(|(k, v)| format!("sops_{k}={v}"))
                .collect();
            Ok(render_dotenv(&enc_docs[0], &lines))
        }
        Format::Ini => {
            let pairs = flat_meta(meta, lastmodified, mac, source)?;
            Ok(ini::emit(&enc_docs[0], Some(("sops", &pairs))))
        }
    }
}

/// The metadata as the flat `KEY=value` pairs of dotenv and INI (line breaks as `\n`):
/// an existing file's pairs in their order with `lastmodified`, `mac` and the source copy
/// replaced; a new file's sorted (as sops 3.13 writes them; 3.11's order is random).
fn flat_meta(
    meta: &MetaSource,
    lastmodified: &str,
    mac: &str,
    source: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    match meta {
        MetaSource::Raw(RawMeta::Flat(pairs)) => {
            for (k, v) in pairs {
                match k.as_str() {
                    "lastmodified" => out.push((k.clone(), lastmodified.to_string())),
                    "mac" => {
                        out.push((k.clone(), mac.to_string()));
                        if let Some(s) = source {
                            out.push((SOURCE_FIELD.to_string(), s.to_string()));
                        }
                    }
                    f if f == SOURCE_FIELD => {}
                    _ => out.push((k.clone(), v.clone())),
                }
            }
        }
        MetaSource::Raw(_) => return Err(meta_mismatch()),
        MetaSource::New {
            age,
            selector,
            mac_only,
        } => {
            for (i, (r, e)) in age.iter().enumerate() {
                out.push((format!("age__list_{i}__map_enc"), e.replace('\n', "\\n")));
                out.push((format!("age__list_{i}__map_recipient"), r.clone()));
            }
            out.push(("lastmodified".into(), lastmodified.to_string()));
            out.push(("mac".into(), mac.to_string()));
            if *mac_only {
                out.push(("mac_only_encrypted".into(), "true".into()));
            }
            out.push((selector.field().into(), selector.value().into()));
            if let Some(s) = source {
                out.push((SOURCE_FIELD.into(), s.to_string()));
            }
            out.push(("version".into(), SOPS_VERSION.into()));
            out.sort();
        }
    }
    Ok(out)
}

/// Raw metadata of one store handed to another store's writer: a bug, never input.
fn meta_mismatch() -> Error {
    Error::Internal("metadata store mismatch".into())
}

fn new_meta_value(
    age: &[(String, String)],
    selector: &Selector,
    mac_only: bool,
    lastmodified: &str,
    mac: &str,
    source: Option<&str>,
) -> Value {
    let s = |v: &str| Value::Str(v.to_string());
    let n = |k: &str| Key::Name(k.to_string());
    let mut items = vec![
        (
            n("age"),
            Value::Seq(
                age.iter()
                    .map(|(r, e)| Value::Map(vec![(n("recipient"), s(r)), (n("enc"), s(e))]))
                    .collect(),
            ),
        ),
        (n("lastmodified"), s(lastmodified)),
        (n("mac"), s(mac)),
    ];
    if let Some(src) = source {
        items.push((n(SOURCE_FIELD), s(src)));
    }
    items.push((n(selector.field()), s(selector.value())));
    if mac_only {
        items.push((n("mac_only_encrypted"), Value::Bool(true)));
    }
    items.push((n("version"), s(SOPS_VERSION)));
    Value::Map(items)
}

/// The indentation of a YAML `sops:` block's entries (its first non-blank child line).
fn block_indent(raw: &str) -> usize {
    // Comment lines do not count: sops may leave a comment of the data at column 0 inside
    // its block (one after a flow collection ending an `_unencrypted` list).
    raw.lines()
        .skip(1)
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.len() - l.trim_start().len())
        .unwrap_or(4)
}

/// Replace `lastmodified`, `mac` and the source copy in a YAML `sops:` block's text.
fn patch_yaml_block(raw: &str, lastmodified: &str, mac: &str, source: Option<&str>) -> String {
    let indent = block_indent(raw);
    let pad = " ".repeat(indent);
    let child = |l: &str, key: &str| {
        l.len() > indent
            && l.starts_with(&pad)
            && !l[indent..].starts_with(' ')
            && l[indent..].starts_with(key)
            && l[indent + key.len()..].starts_with(':')
    };
    let mut out = String::with_capacity(raw.len() + 256);
    let mut skipping = false;
    for line in raw.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        if skipping {
            // Continuation lines of a replaced multi-line value.
            if l.len() > indent && l.starts_with(&pad) && l[indent..].starts_with(' ') {
                continue;
            }
            skipping = false;
        }
        if child(l, "lastmodified") {
            out.push_str(&format!("{pad}lastmodified: \"{lastmodified}\"\n"));
            skipping = true;
        } else if child(l, "mac") {
            out.push_str(&format!("{pad}mac: {mac}\n"));
            if let Some(s) = source {
                out.push_str(&format!("{pad}{SOURCE_FIELD}: {s}\n"));
            }
            skipping = true;
        } else if child(l, SOURCE_FIELD) {
            skipping = true;
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Replace `lastmodified`, `mac` and the source copy in a JSON `"sops"` value's text.
fn patch_json_block(
    raw: &str,
    lastmodified: &str,
    mac: &str,
    source: Option<&str>,
) -> Result<String> {
    let lm = Regex::new(r#""lastmodified"(\s*):(\s*)"[^"]*""#).expect("static regex");
    let mc = Regex::new(r#"(\n?[ \t]*)"mac"(\s*):(\s*)"[^"]*""#).expect("static regex");
    let src = Regex::new(&format!(r#",\s*"{SOURCE_FIELD}"\s*:\s*"[^"]*""#)).expect("static regex");
    let cleaned = src.replace_all(raw, "");
    if !lm.is_match(&cleaned) || !mc.is_match(&cleaned) {
        return Err(Error::Malformed(
            "sops block without lastmodified or mac".into(),
        ));
    }
    let step = lm.replacen(&cleaned, 1, |c: &regex_lite::Captures| {
        format!("\"lastmodified\"{}:{}\"{lastmodified}\"", &c[1], &c[2])
    });
    let out = mc.replacen(&step, 1, |c: &regex_lite::Captures| {
        let mut s = format!("{}\"mac\"{}:{}\"{mac}\"", &c[1], &c[2], &c[3]);
        if let Some(sv) = source {
            s.push_str(&format!(
                ",{}\"{SOURCE_FIELD}\"{}:{}\"{sv}\"",
                &c[1], &c[2], &c[3]
            ));
        }
        s
    });
    Ok(out.into_owned())
}
