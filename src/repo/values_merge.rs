//! Structural merge of values files, plugged into the master as its [`SemanticMerge`]:
//! SOPS files (decrypted in memory, never written anywhere) and plain YAML and JSON.
//!
//! The trees are merged first ([`merge_documents`]: key by key, list items by identity);
//! that decides what the result holds, or that it is a conflict naming the path. The
//! merged text is then built from the sides' own bytes, never re-rendered when a splice
//! can be placed: git's line merge, else every change of both sides spliced into the
//! base at its place (zero-context hunks, so adjacent lines and two insertions at one
//! point both land, ours first). A candidate counts only if it parses to the merged tree.
//! Only when both sides are printed exactly as sops prints their trees may the merged
//! tree be printed instead; otherwise it is a conflict, never a silently reformatted
//! file. A SOPS result is encrypted against the head's version (`ours`), so untouched
//! values keep their ciphertext. Plain files that do not parse (templates) are left to
//! git's text merge.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::merge::{ConflictDetail, SemanticMerge};
use crate::crypto::merge::{merge_documents, MergeRules};
use crate::crypto::sops::{parse_plain, render_styled};
use crate::crypto::value::Value;
use crate::crypto::{decrypt, is_sops, Format, Keyring, Style};

/// Merges SOPS files with the identities it holds, and plain YAML and JSON files.
pub struct ValuesMerge {
    keys: Arc<Keyring>,
}

impl ValuesMerge {
    pub fn new(keys: Arc<Keyring>) -> Self {
        ValuesMerge { keys }
    }
}

/// Three-way line merge of in-memory buffers; `None` when hunks overlap.
fn merge_lines(base: &[u8], ours: &[u8], theirs: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    use libgit2_sys as raw;
    raw::init();
    // SAFETY: the inputs point into slices that outlive the call; the result is read,
    // copied, wiped and freed before returning.
    unsafe {
        let mut inputs: [raw::git_merge_file_input; 3] = std::mem::zeroed();
        for (input, buf) in inputs.iter_mut().zip([base, ours, theirs]) {
            if raw::git_merge_file_input_init(input, 1) != 0 {
                return None;
            }
            input.ptr = buf.as_ptr().cast();
            input.size = buf.len();
        }
        let mut out: raw::git_merge_file_result = std::mem::zeroed();
        let rc = raw::git_merge_file(
            &mut out,
            &inputs[0],
            &inputs[1],
            &inputs[2],
            std::ptr::null(),
        );
        if rc != 0 {
            return None;
        }
        let result = if out.automergeable != 0 && !out.ptr.is_null() {
            Some(Zeroizing::new(
                std::slice::from_raw_parts(out.ptr.cast::<u8>(), out.len).to_vec(),
            ))
        } else {
            None
        };
        if !out.ptr.is_null() {
            std::ptr::write_bytes(out.ptr.cast_mut(), 0, out.len);
        }
        raw::git_merge_file_result_free(&mut out);
        result
    }
}

/// One change of a side: base lines `start..end` replaced by `lines` of that side.
struct Hunk<'a> {
    start: usize,
    end: usize,
    lines: &'a [&'a [u8]],
    ours: bool,
}

fn lines(text: &[u8]) -> Vec<&[u8]> {
    text.split_inclusive(|&b| b == b'\n').collect()
}

/// How a hunk is read: as one change, or line for line with what is left over (lines
/// added or removed) after (`Tail`) or before (`Head`) them. The diff cannot tell, so
/// each reading is a candidate, kept only if it parses to the merged tree.
#[derive(Clone, Copy)]
enum Split {
    None,
    Tail,
    Head,
    /// New lines inserted before the old ones, which are deleted: lets insertions of
    /// both sides at that point interleave.
    Insert,
    /// Old and new lines paired by their keys (indentation and text up to the `:`): a
    /// paired line is changed in place, the others are insertions and deletions there.
    Keys,
}

/// What identifies a line across versions: its indentation and key.
fn line_key(l: &[u8]) -> &[u8] {
    match l.windows(2).position(|w| w == b": ") {
        Some(i) => &l[..i + 1],
        None => l.strip_suffix(b"\n").unwrap_or(l),
    }
}

/// Longest common subsequence of keys: the pairs (old index, new index).
fn pair_by_key(old: &[&[u8]], new: &[&[u8]]) -> Option<Vec<(usize, usize)>> {
    let (n, m) = (old.len(), new.len());
    if n * m > 40_000 {
        return None;
    }
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if line_key(old[i]) == line_key(new[j]) {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if line_key(old[i]) == line_key(new[j]) {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if t[i + 1][j] >= t[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    Some(out)
}

/// The changes from `base` to `side` with no context lines (so adjacent changes of the
/// two sides do not touch).
fn hunks<'a>(
    base: &[u8],
    base_lines: &[&[u8]],
    side: &'a [u8],
    side_lines: &'a [&'a [u8]],
    ours: bool,
    split: Split,
) -> Option<Vec<Hunk<'a>>> {
    let mut opts = git2::DiffOptions::new();
    opts.context_lines(0).interhunk_lines(0);
    let patch = git2::Patch::from_buffers(base, None, side, None, Some(&mut opts)).ok()?;
    if patch.delta().flags().is_binary() {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..patch.num_hunks() {
        let (h, _) = patch.hunk(i).ok()?;
        let (os, ol) = (h.old_start() as usize, h.old_lines() as usize);
        let (ns, nl) = (h.new_start() as usize, h.new_lines() as usize);
        // An insertion's old_start is the line it goes after (1-based).
        let start = if ol == 0 { os } else { os - 1 };
        let new = if nl == 0 {
            &side_lines[0..0]
        } else {
            side_lines.get(ns - 1..ns - 1 + nl)?
        };
        let end = start + ol;
        let one = |out: &mut Vec<Hunk<'a>>, start: usize, end: usize, lines: &'a [&'a [u8]]| {
            out.push(Hunk {
                start,
                end,
                lines,
                ours,
            })
        };
        // Line for line where both have lines; what is left over is an insertion (or a
        // deletion) after them (`Tail`) or before them (`Head`).
        let pair = nl.min(ol);
        match split {
            Split::None => one(&mut out, start, end, new),
            Split::Insert if ol > 0 && nl > 0 => {
                one(&mut out, start, start, new);
                one(&mut out, start, end, &new[0..0]);
            }
            Split::Insert => one(&mut out, start, end, new),
            Split::Keys => {
                let old = base_lines.get(start..end)?;
                let pairs = pair_by_key(old, new)?;
                let (mut oi, mut ni) = (0, 0);
                for (po, pn) in pairs.into_iter().chain([(ol, nl)]) {
                    // Unpaired: new lines before the pair go in, old ones go out.
                    if pn > ni {
                        one(&mut out, start + oi, start + oi, &new[ni..pn]);
                    }
                    for k in oi..po {
                        one(&mut out, start + k, start + k + 1, &new[0..0]);
                    }
                    if po < ol {
                        one(&mut out, start + po, start + po + 1, &new[pn..pn + 1]);
                    }
                    (oi, ni) = (po + 1, pn + 1);
                }
            }
            Split::Tail => {
                for k in 0..pair {
                    one(&mut out, start + k, start + k + 1, &new[k..k + 1]);
                }
                if nl > ol || ol > nl {
                    one(&mut out, start + pair, end, &new[pair..]);
                }
            }
            Split::Head => {
                let (skip_old, skip_new) = (ol - pair, nl - pair);
                if skip_old > 0 || skip_new > 0 {
                    one(&mut out, start, start + skip_old, &new[..skip_new]);
                }
                for k in 0..pair {
                    let at = start + skip_old + k;
                    one(&mut out, at, at + 1, &new[skip_new + k..skip_new + k + 1]);
                }
            }
        }
    }
    Some(out)
}

/// Every change of both sides applied to `base` at its place; `None` when two changes
/// touch the same base lines. Insertions at one point: ours first, or theirs first.
fn splice(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    split: Split,
    ours_first: bool,
) -> Option<Zeroizing<Vec<u8>>> {
    let (ol, tl, bl) = (lines(ours), lines(theirs), lines(base));
    let mut all = hunks(base, &bl, ours, &ol, true, split)?;
    all.extend(hunks(base, &bl, theirs, &tl, false, split)?);
    // By position; at one point insertions first (one side's, then the other's), then
    // the rest.
    all.sort_by_key(|h| (h.start, h.end > h.start, h.ours != ours_first));
    for w in all.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let overlap = b.start < a.end || (a.start == b.start && a.end > a.start && b.end > b.start);
        if overlap {
            return None;
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(ours.len().max(theirs.len())));
    let mut at = 0;
    let mut i = 0;
    while i < all.len() {
        let h = &all[i];
        for l in bl.get(at..h.start)? {
            out.extend_from_slice(l);
        }
        // Insertions of both sides at one point: their blocks interleaved by depth.
        let mut j = i + 1;
        while h.end == h.start && j < all.len() && all[j].start == h.start && all[j].end == h.start
        {
            j += 1;
        }
        if j > i + 1 {
            for l in interleave(&all[i..j]) {
                out.extend_from_slice(l);
            }
        } else {
            for l in h.lines {
                out.extend_from_slice(l);
            }
        }
        at = at.max(h.end);
        i = j;
    }
    for l in bl.get(at..)? {
        out.extend_from_slice(l);
    }
    Some(out)
}

fn indent(line: &[u8]) -> usize {
    line.iter().take_while(|&&b| b == b' ').count()
}

/// Blocks inserted at one point by both sides, merged by depth: each block is cut where
/// it steps out to a shallower indentation (a list item's lines, then the keys after
/// the list), and the pieces are laid deepest first, in the blocks' order at equal depth.
/// Two env vars appended to one list, each followed by a key added after it, stay each
/// in its place.
fn interleave<'a>(blocks: &[Hunk<'a>]) -> Vec<&'a [u8]> {
    let mut pieces: Vec<(usize, usize, &'a [&'a [u8]])> = Vec::new();
    for (b, h) in blocks.iter().enumerate() {
        let mut from = 0;
        let mut level = None;
        for (k, l) in h.lines.iter().enumerate() {
            let blank = l.iter().all(|c| c.is_ascii_whitespace());
            if blank || l.trim_ascii_start().starts_with(b"#") {
                continue;
            }
            let d = indent(l);
            match level {
                None => level = Some(d),
                Some(lv) if d < lv => {
                    pieces.push((lv, b, &h.lines[from..k]));
                    from = k;
                    level = Some(d);
                }
                _ => {}
            }
        }
        pieces.push((level.unwrap_or(0), b, &h.lines[from..]));
    }
    // Deepest first; at one depth, block order (stable).
    pieces.sort_by_key(|(lv, b, _)| (std::cmp::Reverse(*lv), *b));
    pieces
        .into_iter()
        .flat_map(|(_, _, ls)| ls.iter().copied())
        .collect()
}

/// Data equality with mappings unordered (as YAML has them) and lists in order: a splice
/// may put a key theirs added before one ours added.
pub fn same_data(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Map(x), Value::Map(y)) => {
            let names = |m: &[(crate::crypto::value::Key, Value)]| {
                m.iter()
                    .filter_map(|(k, v)| match k {
                        crate::crypto::value::Key::Name(n) => Some((n.clone(), v.clone())),
                        crate::crypto::value::Key::Comment(_) => None,
                    })
                    .collect::<Vec<_>>()
            };
            let (x, y) = (names(x), names(y));
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| k2 == k)
                        .is_some_and(|(_, v2)| same_data(v, v2))
                })
        }
        (Value::Seq(x), Value::Seq(y)) => {
            let items = |s: &[Value]| {
                s.iter()
                    .filter(|v| !matches!(v, Value::Comment(_)))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let (x, y) = (items(x), items(y));
            x.len() == y.len() && x.iter().zip(&y).all(|(a, b)| same_data(a, b))
        }
        (a, b) => a.same(b),
    }
}

/// Is `text` exactly what sops prints for its own tree?
fn canonical(text: &[u8], docs: &[Value], format: Format, style: Style) -> bool {
    render_styled(format, docs, style).as_bytes() == text
}

/// The merge of three plaintexts of one store. `Ok(None)`: a side does not parse as the
/// store (a template, say): not structured, merge it as text.
pub fn merge_plain(
    format: Format,
    base: Option<&[u8]>,
    ours: &[u8],
    theirs: &[u8],
    rules: &MergeRules,
    style: Style,
) -> Result<Option<Zeroizing<Vec<u8>>>, ConflictDetail> {
    if !matches!(format, Format::Yaml | Format::Json) {
        return Ok(None);
    }
    let parse = |t: &[u8]| parse_plain(t, format).ok();
    let (Some(o), Some(t)) = (parse(ours), parse(theirs)) else {
        return Ok(None);
    };
    let b = match base {
        Some(b) => match parse(b) {
            Some(d) => d,
            None => return Ok(None),
        },
        None => Vec::new(),
    };
    let tree = merge_documents(&b, &o, &t, rules).map_err(|c| ConflictDetail {
        key: Some(c.path.clone()),
        message: format!("{}: {}", c.path, c.why),
    })?;
    let base_text = base.unwrap_or(&[]);
    let agrees = |text: &[u8]| {
        parse(text).is_some_and(|d| {
            d.len() == tree.len() && d.iter().zip(&tree).all(|(a, b)| same_data(a, b))
        })
    };
    if let Some(text) = merge_lines(base_text, ours, theirs).filter(|t| agrees(t)) {
        return Ok(Some(text));
    }
    // Ours first where both insert at one point (what the tree says), unless only the
    // other order parses to the merged tree (an insertion read with the wrong hunk).
    for ours_first in [true, false] {
        for split in [
            Split::None,
            Split::Keys,
            Split::Tail,
            Split::Head,
            Split::Insert,
        ] {
            if let Some(text) =
                splice(base_text, ours, theirs, split, ours_first).filter(|t| agrees(t))
            {
                return Ok(Some(text));
            }
        }
    }
    if canonical(ours, &o, format, style) && canonical(theirs, &t, format, style) {
        return Ok(Some(Zeroizing::new(
            render_styled(format, &tree, style).into_bytes(),
        )));
    }
    Err(ConflictDetail::new(
        "the changes merge, but cannot be placed in the file's text without reformatting it",
    ))
}

impl SemanticMerge for ValuesMerge {
    fn merge(
        &self,
        path: &str,
        base: Option<&[u8]>,
        ours: &[u8],
        theirs: &[u8],
        rules: &MergeRules,
    ) -> Option<Result<Vec<u8>, ConflictDetail>> {
        let format = Format::from_path(path);
        match (is_sops(ours, format), is_sops(theirs, format)) {
            (false, false) => {
                let plain_base = base.filter(|b| !is_sops(b, format));
                if base.is_some() && plain_base.is_none() {
                    return None;
                }
                match merge_plain(format, plain_base, ours, theirs, rules, Style::default()) {
                    Ok(Some(text)) => Some(Ok(text.to_vec())),
                    Ok(None) => None,
                    Err(c) => Some(Err(c)),
                }
            }
            (true, true) => {
                let open = |b: &[u8], side: &str| {
                    decrypt(b, format, &self.keys).map_err(|e| {
                        ConflictDetail::new(format!("cannot decrypt {side} version to merge: {e}"))
                    })
                };
                Some((|| {
                    if format == Format::Binary {
                        return Err(ConflictDetail::new(
                            "both sides changed an encrypted binary file",
                        ));
                    }
                    let o = open(ours, "our")?;
                    let t = open(theirs, "their")?;
                    let b = match base {
                        Some(b) if is_sops(b, format) => Some(open(b, "base")?),
                        _ => None,
                    };
                    let base_plain = b.as_ref().map(|b| &b.plaintext[..]);
                    let text = merge_plain(
                        format,
                        base_plain,
                        &o.plaintext,
                        &t.plaintext,
                        rules,
                        o.style(),
                    )?
                    .ok_or_else(|| ConflictDetail::new("a decrypted version does not parse"))?;
                    o.reencrypt(&text).map_err(|e| {
                        ConflictDetail::new(format!("merged content cannot be encrypted: {e}"))
                    })
                })())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{encrypt, CreationParams};

    fn setup() -> (Arc<Keyring>, CreationParams) {
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let text = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
        let keys = Arc::new(Keyring::parse(&text).expect("ring"));
        (
            keys,
            CreationParams {
                recipients: vec![recipient],
                ..Default::default()
            },
        )
    }

    #[test]
    fn different_keys_of_one_secret_both_land() {
        let (keys, params) = setup();
        let base_plain = b"db:\n  user: app   # login\n  password: one\napi:\n  token: t1\n";
        let base = encrypt(base_plain, Format::Yaml, &params).expect("enc");
        let b_open = decrypt(&base, Format::Yaml, &keys).expect("dec");
        let ours = b_open
            .reencrypt(b"db:\n  user: app   # login\n  password: two\napi:\n  token: t1\n")
            .expect("ours");
        let theirs = b_open
            .reencrypt(b"db:\n  user: app   # login\n  password: one\napi:\n  token: t2\n")
            .expect("theirs");
        let m = ValuesMerge::new(keys.clone());
        let merge = |ours: &[u8], theirs: &[u8]| {
            m.merge("s.yaml", Some(&base), ours, theirs, &MergeRules::default())
                .expect("claimed")
                .expect("clean")
        };
        let merged = merge(&ours, &theirs);
        let out = decrypt(&merged, Format::Yaml, &keys).expect("dec");
        assert_eq!(
            &out.plaintext[..],
            b"db:\n  user: app   # login\n  password: two\napi:\n  token: t2\n"
        );
        // Adjacent lines: line merge collides, key merge does not.
        let ours2 = b_open
            .reencrypt(b"db:\n  user: app2   # login\n  password: one\napi:\n  token: t1\n")
            .expect("ours");
        let theirs2 = b_open
            .reencrypt(b"db:\n  user: app   # login\n  password: three\napi:\n  token: t1\n")
            .expect("theirs");
        let merged = merge(&ours2, &theirs2);
        // Spliced: both changes, the file's own formatting kept.
        let out = decrypt(&merged, Format::Yaml, &keys).expect("dec");
        assert_eq!(
            &out.plaintext[..],
            b"db:\n  user: app2   # login\n  password: three\napi:\n  token: t1\n"
        );
    }

    #[test]
    fn same_key_two_ways_names_the_key() {
        let (keys, params) = setup();
        let base = encrypt(b"db:\n  password: one\n", Format::Yaml, &params).expect("enc");
        let b_open = decrypt(&base, Format::Yaml, &keys).expect("dec");
        let ours = b_open.reencrypt(b"db:\n  password: two\n").expect("ours");
        let theirs = b_open
            .reencrypt(b"db:\n  password: three\n")
            .expect("theirs");
        let c = ValuesMerge::new(keys)
            .merge(
                "s.yaml",
                Some(&base),
                &ours,
                &theirs,
                &MergeRules::default(),
            )
            .expect("claimed")
            .expect_err("conflict");
        assert_eq!(c.key.as_deref(), Some("db.password"));
    }

    fn plain(base: &str, ours: &str, theirs: &str) -> Option<Result<Vec<u8>, ConflictDetail>> {
        let (keys, _) = setup();
        ValuesMerge::new(keys).merge(
            "a.yaml",
            Some(base.as_bytes()),
            ours.as_bytes(),
            theirs.as_bytes(),
            &MergeRules::default(),
        )
    }

    #[test]
    fn plain_yaml_merges_by_structure_keeping_both_sides_bytes() {
        // Both append an env var to one list: git's line merge conflicts; both land,
        // each side's lines (comments, quoting) as written.
        let base = "env:   # the app's\n  - name: A\n    value: '1'\nport: 80\n";
        let ours = "env:   # the app's\n  - name: A\n    value: '1'\n  - name: B   # ours\n    value: \"2\"\nport: 80\n";
        let theirs = "env:   # the app's\n  - name: A\n    value: '1'\n  - {name: C, value: '3'}\nport: 80\n";
        let got = plain(base, ours, theirs).expect("claimed").expect("merges");
        assert_eq!(
            String::from_utf8(got).expect("utf8"),
            "env:   # the app's\n  - name: A\n    value: '1'\n  - name: B   # ours\n    value: \"2\"\n  - {name: C, value: '3'}\nport: 80\n"
        );
        // The same field two ways: a conflict naming it.
        let c = plain(
            base,
            &base.replace("'1'", "'9'"),
            &base.replace("'1'", "'8'"),
        )
        .expect("claimed")
        .expect_err("conflict");
        assert_eq!(c.key.as_deref(), Some("env[A].value"));
        // A template is not YAML: left to git's text merge.
        assert!(plain("a: {{ .x }}\n", "a: {{ .y }}\n", "a: {{ .z }}\n").is_none());
        // A change that merges but cannot be placed without reformatting a file sops
        // would print otherwise: a conflict, not a rewritten file.
        // Two keys of one flow mapping on one line: both land in the tree, no splice
        // can place them, and the file is not sops's layout.
        let c = plain(
            "a: {x: 1, y: 2}\n",
            "a: {x: 10, y: 2}\n",
            "a: {x: 1, y: 20}\n",
        )
        .expect("claimed")
        .expect_err("cannot be placed");
        assert!(c.message.contains("without reformatting"), "{c:?}");
        // The same in sops's layout is printed as sops prints it.
        let got = plain(
            "a:\n    x: 1\n    y: 2\n",
            "a:\n    x: 10\n    y: 2\n",
            "a:\n    x: 1\n    y: 20\n",
        )
        .expect("claimed")
        .expect("merges");
        assert_eq!(got, b"a:\n    x: 10\n    y: 20\n");
    }
}
