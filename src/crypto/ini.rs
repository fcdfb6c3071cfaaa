//! The INI store, as sops reads and writes it through go-ini (`gopkg.in/ini.v1` with
//! non-unique sections, its defaults otherwise, and pretty output).
//!
//! Tree: one mapping of sections in file order, the implicit `DEFAULT` section (keys
//! before any header) always first. Each section maps keys to strings (every INI value is
//! a string); a section's comment is its first item, a key's comment the item right after
//! the key, as in sops's tree. Comments are stored without their leading `;`/`#` and
//! spaces (sops's `stripCommentChar`).

use super::value::{Key, Value};

/// An INI syntax error with its 1-based line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct IniError {
    pub line: usize,
    pub msg: String,
}

const DEFAULT: &str = "DEFAULT";

/// One key of a section: (key, value, comment).
type Entry = (String, String, String);

struct Section {
    name: String,
    comment: String,
    /// In first-seen order.
    keys: Vec<Entry>,
}

fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// go-ini's `cleanComment`: from the first `#` or `;` on.
fn clean_comment(s: &str) -> Option<&str> {
    s.find(['#', ';']).map(|i| &s[i..])
}

/// Parse INI text into sections, the way go-ini loads it.
pub fn parse(text: &str) -> Result<Value, IniError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Lines with their line break, as go-ini's `readUntil('\n')` gives them.
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut sections = vec![Section {
        name: DEFAULT.into(),
        comment: String::new(),
        keys: Vec::new(),
    }];
    let mut comment = String::new();
    let mut count = 1usize;
    let mut i = 0;
    while i < lines.len() {
        let no = i + 1;
        let err = |msg: String| IniError { line: no, msg };
        let line = lines[i].trim_start_matches(is_space);
        i += 1;
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            comment.push_str(line);
            continue;
        }
        if line.starts_with('[') {
            let close = line
                .rfind(']')
                .ok_or_else(|| err(format!("unclosed section: {}", line.trim_end())))?;
            let name = line[1..close].to_string();
            if name.is_empty() {
                return Err(err("empty section name".into()));
            }
            if let Some(c) = clean_comment(&line[close + 1..]) {
                comment.push_str(c);
            }
            sections.push(Section {
                name,
                comment: comment.trim().to_string(),
                keys: Vec::new(),
            });
            comment.clear();
            count = 1;
            continue;
        }
        let (mut name, offset) = key_name(line).map_err(err)?;
        if name == "-" {
            name = format!("#{count}");
            count += 1;
        }
        let value = read_value(&line[offset..], &lines, &mut i, &mut comment).map_err(err)?;
        let sec = sections.last_mut().expect("DEFAULT is always there");
        let c = comment.trim().to_string();
        comment.clear();
        // A repeated key keeps its place; the last value and comment win.
        match sec.keys.iter_mut().find(|(k, _, _)| *k == name) {
            Some(e) => {
                e.1 = value;
                e.2 = c;
            }
            None => sec.keys.push((name, value, c)),
        }
    }
    Ok(Value::Map(
        sections
            .into_iter()
            .map(|s| {
                let mut items = Vec::new();
                if !s.comment.is_empty() {
                    items.push((Key::Comment(strip_comment_char(&s.comment)), Value::Null));
                }
                for (k, v, c) in s.keys {
                    items.push((Key::Name(k), Value::Str(v)));
                    if !c.is_empty() {
                        items.push((Key::Comment(strip_comment_char(&c)), Value::Null));
                    }
                }
                (Key::Name(s.name), Value::Map(items))
            })
            .collect(),
    ))
}

/// sops's `stripCommentChar`: the leading `;`/`#` run and spaces of the first line.
fn strip_comment_char(c: &str) -> String {
    if c.starts_with(';') {
        c.trim_start_matches([';', ' ']).to_string()
    } else if c.starts_with('#') {
        c.trim_start_matches(['#', ' ']).to_string()
    } else {
        c.to_string()
    }
}

/// go-ini's `readKeyName`: the key and the offset just past its delimiter (`=` or `:`).
fn key_name(line: &str) -> Result<(String, usize), String> {
    let quote = if line.starts_with("\"\"\"") && line.len() > 6 {
        "\"\"\""
    } else if line.starts_with('"') {
        "\""
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    if !quote.is_empty() {
        let start = quote.len();
        let pos = line[start..]
            .find(quote)
            .ok_or_else(|| format!("missing closing key quote: {}", line.trim_end()))?
            + start;
        let rest = &line[pos + start..];
        let d = rest
            .find(['=', ':'])
            .ok_or_else(|| format!("key-value delimiter not found: {}", line.trim_end()))?;
        return Ok((line[start..pos].trim().to_string(), pos + start + d + 1));
    }
    match line.find(['=', ':']) {
        None => Err(format!(
            "key-value delimiter not found: {}",
            line.trim_end()
        )),
        Some(0) => Err(format!("empty key name: {}", line.trim_end())),
        Some(d) => Ok((line[..d].trim().to_string(), d + 1)),
    }
}

/// go-ini's `readValue` (with its helpers for quoted, multi-line and continued values).
/// `next` indexes the line after the current one and moves past lines it consumes.
fn read_value(
    raw: &str,
    lines: &[&str],
    next: &mut usize,
    comment: &mut String,
) -> Result<String, String> {
    let line = raw.trim_start_matches(is_space);
    if line.is_empty() {
        return Ok(String::new());
    }
    let quote = if line.len() > 3 && line.starts_with("\"\"\"") {
        "\"\"\""
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    if !quote.is_empty() {
        let start = quote.len();
        if let Some(pos) = line[start..].rfind(quote) {
            return Ok(line[start..start + pos].to_string());
        }
        // Multi-line: up to the line holding the closing quote.
        let mut val = line[start..].to_string();
        loop {
            let Some(l) = lines.get(*next) else {
                return Err(format!(
                    "missing closing key quote from {:?}",
                    line.trim_end()
                ));
            };
            *next += 1;
            if let Some(pos) = l.rfind(quote) {
                val.push_str(&l[..pos]);
                if let Some(c) = clean_comment(&l[pos..]) {
                    comment.push_str(c.trim());
                }
                return Ok(val);
            }
            val.push_str(l);
        }
    }
    let mut line = line.trim().to_string();
    if line.ends_with('\\') {
        // Continuation lines, joined without their breaks.
        line.pop();
        while let Some(l) = lines.get(*next) {
            *next += 1;
            let t = l.trim();
            if t.is_empty() {
                break;
            }
            line.push_str(t);
            if !line.ends_with('\\') {
                break;
            }
            line.pop();
        }
        return Ok(line);
    }
    if let Some(i) = line.find(['#', ';']) {
        comment.push_str(&line[i..]);
        line = line[..i].trim().to_string();
    }
    for q in ['\'', '"'] {
        if line.len() >= 2
            && line.starts_with(q)
            && line.ends_with(q)
            && !line[1..line.len() - 1].contains(q)
        {
            return Ok(line[1..line.len() - 1].to_string());
        }
    }
    Ok(line)
}

/// A scalar as the INI text of a value (sops's `ValToString`).
fn text_of(v: &Value) -> String {
    match v {
        Value::Str(s) | Value::Time(s) => s.clone(),
        Value::Null => String::new(),
        other => super::yaml::scalar_text(other),
    }
}

/// Comment lines as go-ini writes them (`trim` for key comments).
fn push_comment(out: &mut String, c: &str, trim: bool) {
    for line in c.split('\n') {
        match line.chars().next() {
            Some(ch @ ('#' | ';')) => {
                out.push(ch);
                out.push(' ');
                out.push_str(line[1..].trim());
            }
            _ => {
                out.push_str("; ");
                out.push_str(if trim { line.trim() } else { line });
            }
        }
        out.push('\n');
    }
}

/// Print sections the way sops does (go-ini's pretty output). `extra` is appended as
/// one more section (the `[sops]` metadata).
pub fn emit(root: &Value, extra: Option<(&str, &[(String, String)])>) -> String {
    let mut sections: Vec<(&str, String, Vec<Entry>)> = Vec::new();
    if let Value::Map(items) = root {
        for (k, v) in items {
            let Key::Name(name) = k else { continue };
            let mut comment = String::new();
            let mut keys: Vec<Entry> = Vec::new();
            if let Value::Map(entries) = v {
                for (i, (ek, ev)) in entries.iter().enumerate() {
                    match ek {
                        Key::Comment(c) if i == 0 => comment.clone_from(c),
                        Key::Comment(c) => {
                            if let Some(last) = keys.last_mut() {
                                last.2.clone_from(c);
                            }
                        }
                        Key::Name(n) => match keys.iter_mut().find(|(k, _, _)| k == n) {
                            Some(e) => e.1 = text_of(ev),
                            None => keys.push((n.clone(), text_of(ev), String::new())),
                        },
                    }
                }
            }
            sections.push((name.as_str(), comment, keys));
        }
    }
    if let Some((name, kv)) = extra {
        sections.push((
            name,
            String::new(),
            kv.iter()
                .map(|(k, v)| (k.clone(), v.clone(), String::new()))
                .collect(),
        ));
    }
    let mut out = String::new();
    let last = sections.len().saturating_sub(1);
    for (i, (name, comment, keys)) in sections.iter().enumerate() {
        if !comment.is_empty() {
            push_comment(&mut out, comment, false);
        }
        if i > 0 || !name.eq_ignore_ascii_case(DEFAULT) {
            out.push('[');
            out.push_str(name);
            out.push_str("]\n");
        } else if keys.is_empty() {
            continue;
        }
        let quoted = |k: &str| -> String {
            if k.contains('"') || k.contains(['=', ':']) {
                format!("`{k}`")
            } else if k.contains('`') {
                format!("\"\"\"{k}\"\"\"")
            } else {
                k.to_string()
            }
        };
        let width = keys
            .iter()
            .map(|(k, _, _)| quoted(k).len())
            .max()
            .unwrap_or(0);
        for (k, v, c) in keys {
            if !c.is_empty() {
                push_comment(&mut out, c, true);
            }
            let q = quoted(k);
            out.push_str(&q);
            out.extend(std::iter::repeat_n(' ', width - q.len()));
            out.push_str(" = ");
            if v.contains(['\n', '`']) {
                out.push_str(&format!("\"\"\"{v}\"\"\""));
            } else if v.contains(['#', ';']) {
                out.push_str(&format!("`{v}`"));
            } else if v.trim().len() != v.len() {
                out.push_str(&format!("\"{v}\""));
            } else {
                out.push_str(v);
            }
            out.push('\n');
        }
        if i != last {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(text: &str) -> String {
        emit(&parse(text).expect("parses"), None)
    }

    #[test]
    fn reads_and_prints_like_go_ini() {
        let input = "; top comment\n# hash comment\nglobal = g1\n\n[sec1]\n; key comment\nkey1 = value1\nkey2=value2 ; trailing\nempty =\neq = a=b=c\nsemi = \"x;y\"\n\n[sec2]\n  indented   =   spaced   \nnum = 1.0\n";
        assert_eq!(
            round(input),
            "; top comment\n# hash comment\nglobal = g1\n\n[sec1]\n; key comment\nkey1  = value1\n; trailing\nkey2  = value2\nempty = \neq    = a=b=c\n; y\"\nsemi  = \"x\n\n[sec2]\nindented = spaced\nnum      = 1.0\n"
        );
    }

    #[test]
    fn duplicates_comments_and_quotes() {
        assert_eq!(
            round("[s]\nk=1\nk=2\n[s]\nk=3\n"),
            "[s]\nk = 2\n\n[s]\nk = 3\n"
        );
        assert_eq!(
            round("[s] ; sec comment\nk=v"),
            "; sec comment\n[s]\nk = v\n"
        );
        assert_eq!(
            round("; a\n\n; b\nk=v\n; trailing-at-end\n"),
            "; a\n; b\nk = v\n"
        );
        assert_eq!(
            round("[s]\n#a\n#x\n;;y\nk=v\n"),
            "[s]\n; a\n# x\n; ;y\nk = v\n"
        );
        assert_eq!(
            round("[s]\na = `x;y`\nb = \"  sp  \"\nd = 'q'\n"),
            "[s]\na = `x;y`\nb = \"  sp  \"\nd = q\n"
        );
        assert_eq!(
            round("[s]\nf = \"\"\"l1\nl2\"\"\"\n"),
            "[s]\nf = \"\"\"l1\nl2\"\"\"\n"
        );
        assert_eq!(round("k = a \\\n  b\n"), "k = a b\n");
        assert_eq!(round("[s]\n\"q:k\" = 2\n"), "[s]\n`q:k` = 2\n");
    }

    #[test]
    fn errors_are_located() {
        assert_eq!(parse("[s]\nnovalue\n").expect_err("no delimiter").line, 2);
        assert!(parse("[s\n").is_err());
        assert!(parse("k = \"\"\"abc\n").is_err());
        assert!(parse("=v\n").is_err());
    }
}
