//! The YAML writer: documents printed the way sops prints them (go-yaml v3's block
//! emitter with sops's settings: `SetIndent(n)`, no compact sequence indent), scalars
//! quoted exactly when go-yaml would quote them.

use super::{is_blank, resolve_plain};
use crate::crypto::value::{format_float_g, Key, Value};

/// sops's default YAML indentation (`stores.yaml.indent` unset or 0).
pub const DEFAULT_INDENT: usize = 4;

/// Print documents the way sops prints them (indent 4).
pub fn emit(docs: &[Value]) -> String {
    emit_indented(docs, DEFAULT_INDENT)
}

/// Print documents the way sops prints them with `stores.yaml.indent: step`.
pub fn emit_indented(docs: &[Value], step: usize) -> String {
    let mut out = String::new();
    // Comments alone before the first `---` are not a document: mark it explicitly.
    if docs.len() > 1
        && matches!(&docs[0], Value::Map(items)
            if !items.is_empty() && items.iter().all(|(k, _)| matches!(k, Key::Comment(_))))
    {
        out.push_str("---\n");
    }
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&emit_doc_body(d, step));
        if matches!(d, Value::Map(items) if items.is_empty()) {
            out.push_str("{}\n");
        }
    }
    out
}

/// One document's entries (no `{}` for an empty mapping: the caller may append more).
pub fn emit_doc_body(d: &Value, step: usize) -> String {
    super::emitter::emit_document(d, step, false)
}

/// One document of an encrypted file, without the `sops:` entry sops adds last (its
/// comments and blank lines before that entry are part of the body).
pub fn emit_doc_before_meta(d: &Value, step: usize) -> String {
    super::emitter::emit_document(d, step, true)
}

/// A mapping entry `key:` plus its value, with the key at column 0.
pub fn emit_entry(key: &str, v: &Value, step: usize) -> String {
    super::emitter::emit_document(
        &Value::Map(vec![(Key::Name(key.to_string()), v.clone())]),
        step,
        false,
    )
}

/// A mapping key as go-yaml prints it: sops turns a `<<` key back into a merge key,
/// which go-yaml marks with its tag.
pub(super) fn key_text(name: &str) -> String {
    if name == "<<" {
        return "!!merge <<".to_string();
    }
    scalar_str(name)
}

/// Can this multi-line string be printed as a literal block (as go-yaml would)?
/// A space before any line break (go-yaml's `space_break`, LS and PS being breaks too)
/// or at the end rules it out.
pub(super) fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.chars().any(|c| !printable(c) && c != '\n' && c != '\t')
        && !s
            .split(['\n', '\u{2028}', '\u{2029}'])
            .any(|l| l.ends_with(' '))
}

pub(super) fn is_special(c: char) -> bool {
    let u = c as u32;
    !(u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || u == 0x85
        || (0xA0..=0xD7FF).contains(&u)
        || (0xE000..=0xFFFD).contains(&u) && u != 0xFEFF
        || (0x10000..=0x10FFFF).contains(&u))
}

/// Characters go-yaml's emitter prints as they are (its `is_printable`): narrower than
/// what its reader accepts (`is_special`): no U+0085 and nothing beyond the BMP, which it
/// escapes (`"\U0001F41E"`).
fn printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || (0xE000..=0xFFFD).contains(&u) && u != 0xFEFF
}

/// A scalar's text as go-yaml prints it.
pub fn scalar_text(v: &Value) -> String {
    scalar_text_at(v, 0)
}

/// A scalar's text as go-yaml prints it where its block indentation is `indent`
/// (continuation lines of a single-quoted string are padded to it).
pub(super) fn scalar_text_at(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Str(s) => scalar_str_at(s, indent),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf" } else { "-.inf" }.into()
            } else {
                format_float_g(*f)
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Time(t) => t.clone(),
        Value::Comment(c) => format!("#{c}"),
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
    }
}

/// A string scalar: plain when it reads back as the same string, else quoted.
pub fn scalar_str(s: &str) -> String {
    scalar_str_at(s, 0)
}

fn scalar_str_at(s: &str, indent: usize) -> String {
    if s.chars().any(|c| !printable(c) || c == '\n') {
        return double_quote(s);
    }
    if s.contains(['\u{2028}', '\u{2029}']) {
        return unicode_breaks(s, indent);
    }
    let resolves_to_string = matches!(resolve_plain(s), Value::Str(_)) && !is_old_yaml_special(s);
    if !resolves_to_string {
        return double_quote(s);
    }
    if plain_allowed(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// A string holding U+2028/U+2029, which go-yaml's emitter counts as line breaks: plain
/// style is out, single quotes when no break touches a space, else double quotes. In
/// single quotes it writes the break as is and pads the next line to `indent`, as sops
/// prints it (a YAML 1.2 reader then sees the padding as content: go-yaml's own quirk).
fn unicode_breaks(s: &str, indent: usize) -> String {
    let is_break = |c: char| matches!(c, '\u{2028}' | '\u{2029}');
    let chars: Vec<char> = s.chars().collect();
    let touches_space = chars
        .windows(2)
        .any(|w| is_break(w[0]) && w[1] == ' ' || w[0] == ' ' && is_break(w[1]));
    if touches_space {
        return double_quote(s);
    }
    let mut out = String::with_capacity(s.len() + 2 + indent);
    out.push('\'');
    let mut after_break = false;
    for c in chars {
        if is_break(c) {
            after_break = true;
        } else if after_break {
            out.extend(std::iter::repeat_n(' ', indent));
            after_break = false;
        }
        if c == '\'' {
            out.push_str("''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// YAML 1.1 booleans and base-60 floats that go-yaml quotes to stay readable by 1.1 parsers.
fn is_old_yaml_special(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) || is_base60(s)
}

/// YAML 1.1 base-60 floats (`1:30`), which go-yaml quotes for older parsers: its own
/// pattern, where every part after the first is `[0-5]?[0-9]` (so `80:80` is not one).
fn is_base60(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    let first = s.bytes().next();
    if !matches!(first, Some(b'+' | b'-' | b'0'..=b'9')) || !s.contains(':') {
        return false;
    }
    RE.get_or_init(|| {
        regex_lite::Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
            .expect("a valid constant pattern")
    })
    .is_match(s)
}

fn plain_allowed(s: &str) -> bool {
    if s.is_empty() || s.starts_with(' ') || s.ends_with(' ') || s.starts_with('\t') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let b = s.as_bytes();
    let first = b[0];
    if matches!(
        first,
        b'#' | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    ) {
        return false;
    }
    if matches!(first, b'-' | b'?' | b':') && (b.len() == 1 || is_blank(b[1])) {
        return false;
    }
    for i in 0..b.len() {
        if b[i] == b':' && (i + 1 == b.len() || is_blank(b[i + 1])) {
            return false;
        }
        if b[i] == b'#' && i > 0 && is_blank(b[i - 1]) {
            return false;
        }
    }
    true
}

fn double_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    // go-yaml's BOM test looks at the value's first bytes whatever the position, so a
    // value that starts with a BOM has every character escaped.
    let all = s.starts_with('\u{FEFF}');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            '\u{A0}' if all => out.push_str("\\_"),
            c if all || !printable(c) => {
                let u = c as u32;
                if u <= 0xFF {
                    out.push_str(&format!("\\x{u:02X}"));
                } else if u <= 0xFFFF {
                    out.push_str(&format!("\\u{u:04X}"));
                } else {
                    out.push_str(&format!("\\U{u:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
