//! Which paths are editor scratch files: kept in memory, never committed.
//!
//! Globs match the file name (`*` any run, `?` one character, no `/`), or, when they
//! contain a `/`, the whole path. `.gitignore` lines of the repository root are added
//! (simple patterns: negations and character classes are not supported).

/// The default scratch globs (swap, backup, probe, lock and temporary files).
pub const DEFAULT_GLOBS: &[&str] = &[
    "*.swp",
    "*.swo",
    "*.swx",
    "*.swpx",
    "*~",
    "4913",
    ".#*",
    "#*#",
    "sed??????",
    "*.tmp",
    "*.tmp.*",
    "*.tmp-*",
    "*___jb_tmp___",
    "*___jb_old___",
    ".goutputstream-*",
];

#[derive(Debug, Clone, Default)]
pub struct IgnoreSet {
    globs: Vec<String>,
}

fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking on the last '*'.
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) && pat[p] != b'*' {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

impl IgnoreSet {
    pub fn new(extra: &[String]) -> IgnoreSet {
        let mut globs: Vec<String> = DEFAULT_GLOBS.iter().map(|s| s.to_string()).collect();
        globs.extend(extra.iter().cloned());
        IgnoreSet { globs }
    }

    /// A set of exactly these globs (no default scratch globs).
    pub fn only(globs: &[String]) -> IgnoreSet {
        IgnoreSet {
            globs: globs.to_vec(),
        }
    }

    /// Add the patterns of a `.gitignore` text.
    pub fn add_gitignore(&mut self, text: &str) {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let pat = line.trim_start_matches('/').trim_end_matches('/');
            if !pat.is_empty() {
                self.globs.push(pat.to_string());
            }
        }
    }

    /// Is this repository path a scratch file?
    pub fn is_scratch(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.globs.iter().any(|g| {
            if g.contains('/') {
                glob_match(g.as_bytes(), path.as_bytes())
            } else {
                glob_match(g.as_bytes(), name.as_bytes())
                    || path
                        .split('/')
                        .any(|c| c != name && glob_match(g.as_bytes(), c.as_bytes()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_files_are_scratch() {
        let s = IgnoreSet::new(&[]);
        for p in [
            "a/.values.yaml.swp",
            "values.yaml~",
            "4913",
            "dir/.#values.yaml",
            "#values.yaml#",
            "sedAb12Cd",
            "values.yaml.tmp",
            "values.yaml.tmp.123",
            "x.tmp-9",
            ".goutputstream-XYZ",
        ] {
            assert!(s.is_scratch(p), "{p}");
        }
        for p in ["values.yaml", "sed", "seds", "tmp/values.yaml", "a/b.yaml"] {
            assert!(!s.is_scratch(p), "{p}");
        }
    }

    #[test]
    fn gitignore_patterns() {
        let mut s = IgnoreSet::new(&["*.bak".into()]);
        s.add_gitignore("# c\n/build/\n*.log\n!keep.log\n");
        assert!(s.is_scratch("x.bak"));
        assert!(s.is_scratch("a/b.log"));
        assert!(s.is_scratch("build/out.txt"));
        assert!(!s.is_scratch("a/b.yaml"));
    }
}
