//! Changing who can open a file: `rewrap` (what `sops updatekeys` does: the same data
//! key wrapped for a new set of recipients, every value's ciphertext, `lastmodified` and
//! `mac` unchanged) and `rotate` (what `sops rotate` does: a new data key, so every value
//! gets new ciphertext).
//!
//! `rewrap` rewrites only the `age` list of the metadata: in YAML and JSON the rest of the
//! file is kept byte for byte (the new metadata text replaces the old in the input), so a
//! `git diff` shows only recipients.

use super::*;

/// The recipients a SOPS file's data key is wrapped for, in file order (no decryption).
pub fn file_recipients(input: &[u8], format: Format) -> Result<Vec<String>> {
    let (_, meta_value, _) = parse_encrypted(input, format)?;
    let meta = Metadata::from_value(&meta_value)?;
    Ok(meta.age.into_iter().map(|(r, _)| r).collect())
}

/// Key services in the file valuesfs cannot re-wrap for (pgp, kms, ...), and more than
/// one key group: re-wrapping would drop them, or give one group's key the whole data key.
fn refuse_unwrappable(meta_value: &Value, meta: &Metadata) -> Result<()> {
    if !meta.other_services.is_empty() {
        return Err(Error::UnsupportedKeyServices {
            services: meta.other_services.join(", "),
        });
    }
    if matches!(meta_value.get("key_groups"), Some(Value::Seq(g)) if g.len() > 1) {
        return Err(Error::Unsupported(
            "the file's data key is split over several key groups (Shamir secret sharing), \
             which valuesfs does not support"
                .into(),
        ));
    }
    Ok(())
}

/// The file's data key, from the first `age` entry an identity here opens. A key block
/// that cannot be read says so, unless another one opens: "no identity matches" would send
/// the user looking for a key they have.
pub(super) fn data_key(meta: &Metadata, keys: &Keyring) -> Result<Zeroizing<[u8; 32]>> {
    let mut broken = None;
    let key = meta
        .age
        .iter()
        .find_map(|(_, enc)| match keys.unwrap_data_key(enc) {
            Ok(k) => k,
            Err(e) => {
                broken.get_or_insert(e);
                None
            }
        });
    match (key, broken) {
        (Some(k), _) => Ok(k),
        (None, Some(e)) => Err(e),
        (None, None) => Err(Error::NoMatchingIdentity {
            recipients: meta
                .age
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The file with its data key wrapped for exactly `recipients` (in that order), as `sops
/// updatekeys` leaves it. Needs an identity that opens the file now.
pub fn rewrap(
    input: &[u8],
    format: Format,
    keys: &Keyring,
    recipients: &[String],
) -> Result<Vec<u8>> {
    if recipients.is_empty() {
        return Err(Error::NoRecipients);
    }
    let (enc_docs, meta_value, raw) = parse_encrypted(input, format)?;
    let meta = Metadata::from_value(&meta_value)?;
    refuse_unwrappable(&meta_value, &meta)?;
    let key = data_key(&meta, keys)?;
    let mut age = Vec::with_capacity(recipients.len());
    for r in recipients {
        age.push((r.trim().to_string(), wrap_data_key(&key, r)?));
    }
    let text = utf8(input)?;
    match raw {
        RawMeta::Yaml(block) => {
            let new_block = yaml_with_age(&block, &age);
            splice(text, &block, &new_block)
        }
        RawMeta::Json(value) => {
            let parsed = json::parse(&value, 128)?;
            let mut v = parsed.root;
            set_age(&mut v, age_value(&age));
            let mut new_value = String::new();
            json::emit_value(&mut new_value, &v, 1, json_unit(&value));
            splice(text, &value, &new_value)
        }
        RawMeta::Flat(pairs) => {
            let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len() + 2);
            let mut placed = false;
            let mut new_pairs = Vec::new();
            for (i, (r, e)) in age.iter().enumerate() {
                new_pairs.push((format!("age__list_{i}__map_enc"), e.replace('\n', "\\n")));
                new_pairs.push((format!("age__list_{i}__map_recipient"), r.clone()));
            }
            for (k, v) in pairs {
                if k.starts_with("age__list_") {
                    if !placed {
                        out.append(&mut new_pairs);
                        placed = true;
                    }
                    continue;
                }
                if k == "lastmodified" && !placed {
                    out.append(&mut new_pairs);
                    placed = true;
                }
                out.push((k, v));
            }
            out.append(&mut new_pairs);
            let out = assemble(
                format,
                &enc_docs,
                &MetaSource::Raw(&RawMeta::Flat(out)),
                &meta.lastmodified,
                &meta.mac,
                meta.source.as_deref(),
                Style::default(),
            )?;
            Ok(out.into_bytes())
        }
    }
}

/// A new data key for the file, every value re-encrypted under it, for the same
/// recipients, selector and `mac_only_encrypted`, as `sops rotate` does.
pub fn rotate(input: &[u8], format: Format, keys: &Keyring, style: Style) -> Result<Vec<u8>> {
    let (_, meta_value, _) = parse_encrypted(input, format)?;
    let meta = Metadata::from_value(&meta_value)?;
    refuse_unwrappable(&meta_value, &meta)?;
    let opened = decrypt_styled(input, format, keys, style)?;
    let params = CreationParams {
        recipients: meta.age.iter().map(|(r, _)| r.clone()).collect(),
        selector: meta.selector.clone(),
        mac_only_encrypted: meta.mac_only_encrypted,
        style: opened.style(),
    };
    encrypt(&opened.plaintext, format, &params)
}

/// `input` with the metadata text `old` replaced by `new` (every occurrence: a YAML
/// stream repeats the block in each document).
fn splice(text: &str, old: &str, new: &str) -> Result<Vec<u8>> {
    if !text.contains(old) {
        return Err(Error::Internal(
            "metadata text not found in the file".into(),
        ));
    }
    Ok(text.replace(old, new).into_bytes())
}

fn age_value(age: &[(String, String)]) -> Value {
    let n = |k: &str| Key::Name(k.to_string());
    Value::Seq(
        age.iter()
            .map(|(r, e)| {
                Value::Map(vec![
                    (n("recipient"), Value::Str(r.clone())),
                    (n("enc"), Value::Str(e.clone())),
                ])
            })
            .collect(),
    )
}

/// Replace (or add, first) the `age` member of a metadata mapping.
fn set_age(meta: &mut Value, age: Value) {
    if let Value::Map(items) = meta {
        match items
            .iter_mut()
            .find(|(k, _)| matches!(k, Key::Name(n) if n == "age"))
        {
            Some((_, v)) => *v = age,
            None => items.insert(0, (Key::Name("age".into()), age)),
        }
    }
}

/// The JSON indentation unit of a `"sops"` value's text: a tab unless its first nested
/// line is indented with spaces (`stores.json.indent`).
fn json_unit(value: &str) -> Option<usize> {
    let line = value.lines().nth(1)?;
    let lead = line.len() - line.trim_start_matches(' ').len();
    // The value sits at level 1: its members are at two units.
    (lead > 0 && !line.starts_with('\t')).then_some(lead / 2)
}

/// The YAML `sops:` block with its `age:` entry replaced (or added before
/// `lastmodified`), every other line kept.
fn yaml_with_age(block: &str, age: &[(String, String)]) -> String {
    let indent = block_indent(block);
    let pad = " ".repeat(indent);
    let new_age = yaml::emit_entry(
        "sops",
        &Value::Map(vec![(Key::Name("age".into()), age_value(age))]),
        indent,
    );
    let new_age = new_age.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
    let child = |l: &str, key: &str| {
        l.starts_with(&pad)
            && l[indent..].starts_with(key)
            && l[indent + key.len()..].starts_with(':')
    };
    let mut out = String::with_capacity(block.len() + new_age.len());
    let mut placed = false;
    let mut skipping = false;
    for line in block.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        if skipping {
            let deeper = l.len() > indent && l.starts_with(&pad) && l[indent..].starts_with(' ');
            let item = l.starts_with(&pad) && l[indent..].starts_with("- ");
            if l.trim().is_empty() || deeper || item {
                continue;
            }
            skipping = false;
        }
        if child(l, "age") {
            out.push_str(new_age);
            placed = true;
            skipping = true;
            continue;
        }
        if child(l, "lastmodified") && !placed {
            out.push_str(new_age);
            placed = true;
        }
        out.push_str(line);
    }
    if !placed {
        out.push_str(new_age);
    }
    out
}
