//! The one name check: tree entry names that git fsck refuses, that the kernel cannot
//! show, or that would make a directory of the mount a git repository.
//!
//! Used by the fsck of fetched heads ([`fsck_tree`]), by every listing and lookup of the
//! view (history and conflict views included), and by every local create, mkdir,
//! rename, symlink and session path. The rules follow git's `fsck.c` and
//! `verify_path`: `.git` in any case and in its NTFS (`git~1`, trailing dots and
//! spaces, `.git::$INDEX_ALLOCATION`) and HFS+ (ignorable code points) spellings,
//! `.`/`..`, empty names, `/` and NUL, and `.gitmodules` as a symlink.

use std::collections::HashSet;

use git2::{ObjectType, Oid, Repository};

use super::Result;

/// Why a name is refused; the text is git fsck's message id where git has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// `.git` in any case or spelling.
    DotGit,
    /// An empty name.
    Empty,
    /// `.`.
    Dot,
    /// `..`.
    DotDot,
    /// A `/` inside one name.
    Slash,
    /// A NUL byte.
    Nul,
    /// Longer than a file name may be (255 bytes).
    TooLong,
    /// Not UTF-8 (git allows it; the view cannot name it).
    NotUtf8,
    /// `.gitmodules` that is a symlink.
    GitmodulesSymlink,
    /// Two entries of one tree with the same name.
    Duplicate,
    /// Tree entries out of git's order.
    NotSorted,
}

impl NameRule {
    /// git fsck's message id (or ours, for rules git has none for).
    pub fn id(self) -> &'static str {
        match self {
            NameRule::DotGit => "hasDotgit",
            NameRule::Empty => "emptyName",
            NameRule::Dot => "hasDot",
            NameRule::DotDot => "hasDotdot",
            NameRule::Slash => "fullPathname",
            NameRule::Nul => "nulInName",
            NameRule::TooLong => "nameTooLong",
            NameRule::NotUtf8 => "nonUtf8Name",
            NameRule::GitmodulesSymlink => "gitmodulesSymlink",
            NameRule::Duplicate => "duplicateEntries",
            NameRule::NotSorted => "treeNotSorted",
        }
    }
}

impl std::fmt::Display for NameRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Longest name a Linux filesystem shows.
pub const NAME_MAX: usize = 255;

/// Code points HFS+ ignores when it compares names (git's `next_hfs_char`).
fn hfs_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff)
}

/// True when `name`, as HFS+ or NTFS would read it, is `base` (`.git`, `.gitmodules`).
/// `short` is the NTFS 8.3 short name (`git~1`, `gitmod~1`).
fn spells(name: &[u8], base: &str, short: &str) -> bool {
    let lower: Vec<u8> = name.to_ascii_lowercase();
    // HFS+: ignorable code points vanish, case folds.
    if let Ok(s) = std::str::from_utf8(&lower) {
        let folded: String = s.chars().filter(|c| !hfs_ignorable(*c)).collect();
        if folded == base {
            return true;
        }
    }
    // NTFS: trailing dots and spaces vanish; `name:stream` is `name`.
    let stem = match lower.iter().position(|b| *b == b':') {
        Some(i) => &lower[..i],
        None => &lower[..],
    };
    let mut end = stem.len();
    while end > 0 && (stem[end - 1] == b'.' || stem[end - 1] == b' ') {
        end -= 1;
    }
    let stem = &stem[..end];
    stem == base.as_bytes() || stem == short.as_bytes()
}

/// True for `.git` as any filesystem git protects may read it.
pub fn is_dotgit(name: &[u8]) -> bool {
    spells(name, ".git", "git~1")
}

/// The rule a single name breaks, if any (mode-independent rules only).
pub fn check(name: &[u8]) -> std::result::Result<(), NameRule> {
    match name {
        b"" => return Err(NameRule::Empty),
        b"." => return Err(NameRule::Dot),
        b".." => return Err(NameRule::DotDot),
        _ => {}
    }
    if name.contains(&b'/') {
        return Err(NameRule::Slash);
    }
    if name.contains(&0) {
        return Err(NameRule::Nul);
    }
    if is_dotgit(name) {
        return Err(NameRule::DotGit);
    }
    Ok(())
}

/// A name the view may show: [`check`], UTF-8 and at most [`NAME_MAX`] bytes.
pub fn shown(name: &[u8]) -> std::result::Result<&str, NameRule> {
    check(name)?;
    if name.len() > NAME_MAX {
        return Err(NameRule::TooLong);
    }
    std::str::from_utf8(name).map_err(|_| NameRule::NotUtf8)
}

/// True when every component of a `/`-separated path may be shown.
pub fn path_shown(path: &str) -> bool {
    path.split('/').all(|c| shown(c.as_bytes()).is_ok())
}

/// A tree entry that fails the fsck rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    /// Path of the entry (lossy UTF-8), from the tree's root.
    pub path: String,
    /// The rule.
    pub rule: NameRule,
}

/// git's tree order: names compare bytewise, a tree's name as if followed by `/`.
fn tree_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        std::cmp::Ordering::Equal => {}
        o => return o,
    }
    let next = |s: &[u8], tree: bool| s.get(n).copied().or(tree.then_some(b'/'));
    next(a, a_tree).cmp(&next(b, b_tree))
}

/// Checks tree `oid` and every tree below it the way `git fsck` checks tree objects.
/// Trees in `verified` are skipped; trees that pass are added to it.
pub fn fsck_tree(
    repo: &Repository,
    oid: Oid,
    verified: &mut HashSet<Oid>,
) -> Result<Option<BadEntry>> {
    let mut stack = vec![(oid, String::new())];
    while let Some((oid, dir)) = stack.pop() {
        if verified.contains(&oid) {
            continue;
        }
        let tree = repo.find_tree(oid)?;
        let mut prev: Option<(Vec<u8>, bool)> = None;
        let mut below = Vec::new();
        for e in tree.iter() {
            let name = e.name_bytes();
            let is_tree = e.kind() == Some(ObjectType::Tree);
            let path = if dir.is_empty() {
                String::from_utf8_lossy(name).into_owned()
            } else {
                format!("{dir}/{}", String::from_utf8_lossy(name))
            };
            let bad = |rule| {
                Ok(Some(BadEntry {
                    path: path.clone(),
                    rule,
                }))
            };
            if let Err(rule) = check(name) {
                return bad(rule);
            }
            if e.filemode() == 0o120000 && spells(name, ".gitmodules", "gitmod~1") {
                return bad(NameRule::GitmodulesSymlink);
            }
            if let Some((p, p_tree)) = &prev {
                if p.as_slice() == name {
                    return bad(NameRule::Duplicate);
                }
                if tree_order(p, *p_tree, name, is_tree) != std::cmp::Ordering::Less {
                    return bad(NameRule::NotSorted);
                }
            }
            prev = Some((name.to_vec(), is_tree));
            if is_tree {
                below.push((e.id(), path));
            }
        }
        // Children first, so that a tree is only marked once everything below passed.
        stack.extend(below);
        verified.insert(oid);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotgit_spellings() {
        for n in [
            ".git",
            ".GIT",
            ".Git",
            ".git.",
            ".git ",
            ".git. . ",
            "git~1",
            "GIT~1",
            ".git::$INDEX_ALLOCATION",
            ".g\u{200c}it",
            "\u{feff}.git",
        ] {
            assert_eq!(check(n.as_bytes()), Err(NameRule::DotGit), "{n:?}");
        }
        for n in [
            ".gitignore",
            ".github",
            "git",
            ".gi",
            "x.git",
            ".gitx",
            "git~2",
        ] {
            assert_eq!(check(n.as_bytes()), Ok(()), "{n:?}");
        }
    }

    #[test]
    fn other_rules() {
        assert_eq!(check(b""), Err(NameRule::Empty));
        assert_eq!(check(b"."), Err(NameRule::Dot));
        assert_eq!(check(b".."), Err(NameRule::DotDot));
        assert_eq!(check(b"a/b"), Err(NameRule::Slash));
        assert_eq!(check(b"a\0b"), Err(NameRule::Nul));
        assert_eq!(shown(b"\xff.yaml"), Err(NameRule::NotUtf8));
        assert_eq!(shown(&[b'a'; 256]), Err(NameRule::TooLong));
        assert_eq!(shown("é.yaml".as_bytes()), Ok("é.yaml"));
        assert!(path_shown("a/b/c.yaml"));
        assert!(!path_shown("a/.GIT/config"));
    }

    #[test]
    fn git_tree_order() {
        use std::cmp::Ordering::*;
        // "a.b" (file) < "a" (tree, as "a/") because '.' < '/'.
        assert_eq!(tree_order(b"a.b", false, b"a", true), Less);
        assert_eq!(tree_order(b"a", false, b"a.b", false), Less);
        assert_eq!(tree_order(b"a", true, b"a0", false), Less);
        assert_eq!(tree_order(b"b", false, b"a", false), Greater);
    }
}
