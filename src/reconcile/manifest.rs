//! Manifests from files: every `*.yaml|yml|json` below a folder (dot-folders skipped, so
//! a mount's `.valuesfs/` is never read), several documents per file, SOPS files
//! decrypted in memory. Each document becomes the JSON object sent to the API server.
//!
//! Invariants: decrypted bytes stay in memory (`Zeroizing` where they are bytes); an
//! error names the file and the document index and stops the whole load.

use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value as Json};
use zeroize::Zeroizing;

use super::Error;
use crate::crypto::value::{Key, Value};
use crate::crypto::{self, Format, Keyring};

/// One object to apply.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// File (relative to the folder) and document index (0-based), for messages.
    pub file: String,
    pub doc: usize,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub object: Json,
}

impl Manifest {
    /// `group` of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// `file#doc` as error messages name it.
    pub fn at(&self) -> String {
        format!("{}#{}", self.file, self.doc)
    }
}

fn bad(file: &str, doc: usize, msg: impl std::fmt::Display) -> Error {
    Error::Manifest(format!("{file}#{doc}: {msg}"))
}

/// The files to read below `root`, sorted by path.
fn files(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| Error::Manifest(format!("{}: {e}", dir.display())))?;
        for e in rd {
            let e = e.map_err(|e| Error::Manifest(format!("{}: {e}", dir.display())))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let ft = e
                .file_type()
                .map_err(|err| Error::Manifest(format!("{}: {err}", e.path().display())))?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x)) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every manifest below `root`, in file order.
pub fn load(root: &Path, keys: &Keyring) -> Result<Vec<Manifest>, Error> {
    let mut out = Vec::new();
    for path in files(root)? {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let bytes = Zeroizing::new(
            std::fs::read(&path).map_err(|e| Error::Manifest(format!("{rel}: {e}")))?,
        );
        out.extend(parse_file(&rel, &bytes, keys)?);
    }
    Ok(out)
}

/// The manifests of one file's bytes (`name` decides the store).
pub fn parse_file(name: &str, bytes: &[u8], keys: &Keyring) -> Result<Vec<Manifest>, Error> {
    let by_name = Format::from_path(name);
    let docs = match crypto::sops::sops_format(bytes, by_name) {
        Some(format) => crypto::decrypt(bytes, format, keys)
            .map_err(|e| bad(name, 0, format!("cannot decrypt: {e}")))?
            .documents()
            .to_vec(),
        None if bytes.iter().all(u8::is_ascii_whitespace) => Vec::new(),
        // Plain YAML is read as kubectl reads it (YAML 1.1); a decrypted SOPS file is
        // what `sops -d` prints, whose strings go-yaml v3 quotes where 1.1 would differ.
        None if by_name == Format::Yaml => {
            let text = std::str::from_utf8(bytes).map_err(|_| bad(name, 0, "not UTF-8"))?;
            crypto::yaml::parse_kubectl(text, crypto::yaml::Limits::default())
                .map_err(|e| bad(name, 0, format!("invalid YAML: {e}")))?
        }
        None => crypto::sops::parse_plain(bytes, by_name).map_err(|e| bad(name, 0, e))?,
    };
    let mut out = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let json = to_json(d).map_err(|e| bad(name, i, e))?;
        match &json {
            Json::Null => continue,
            Json::Object(m) if m.is_empty() => continue,
            Json::Object(_) => {}
            _ => return Err(bad(name, i, "a manifest must be a mapping")),
        }
        // `kind: List` (what `kubectl get -o yaml` prints) holds its objects in `items`.
        if json
            .get("kind")
            .and_then(Json::as_str)
            .is_some_and(|k| k.ends_with("List"))
        {
            if let Some(Json::Array(items)) = json.get("items") {
                for item in items {
                    out.push(manifest(name, i, item.clone())?);
                }
                continue;
            }
        }
        out.push(manifest(name, i, json)?);
    }
    Ok(out)
}

pub(super) fn manifest(file: &str, doc: usize, object: Json) -> Result<Manifest, Error> {
    let field = |v: Option<&Json>, what: &str| -> Result<String, Error> {
        match v {
            Some(Json::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(file, doc, format!("{what} is missing or not a string"))),
        }
    };
    let api_version = field(object.get("apiVersion"), "apiVersion")?;
    let kind = field(object.get("kind"), "kind")?;
    let meta = object.get("metadata");
    let name = field(meta.and_then(|m| m.get("name")), "metadata.name")?;
    let namespace = match meta.and_then(|m| m.get("namespace")) {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad(file, doc, "metadata.namespace is not a string")),
    };
    Ok(Manifest {
        file: file.to_string(),
        doc,
        api_version,
        kind,
        name,
        namespace,
        object,
    })
}

/// The codec's tree as JSON. Comments are dropped; timestamps stay their text.
pub fn to_json(v: &Value) -> Result<Json, String> {
    Ok(match v {
        Value::Null | Value::Comment(_) => Json::Null,
        Value::Str(s) | Value::Time(s) => Json::String(s.clone()),
        Value::Int(i) => Json::Number((*i).into()),
        // Integral floats are written as integers, as Go's encoding/json (kubectl) does.
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Json::Number((*f as i64).into()),
        Value::Float(f) => Json::Number(
            Number::from_f64(*f).ok_or_else(|| format!("json: unsupported value: {f}"))?,
        ),
        Value::Bool(b) => Json::Bool(*b),
        Value::Map(items) => {
            let mut m = Map::new();
            for (k, val) in items {
                if let Key::Name(n) = k {
                    m.insert(n.clone(), to_json(val)?);
                }
            }
            Json::Object(m)
        }
        Value::Seq(items) => Json::Array(
            items
                .iter()
                .filter(|i| !matches!(i, Value::Comment(_)))
                .map(to_json)
                .collect::<Result<_, _>>()?,
        ),
    })
}
