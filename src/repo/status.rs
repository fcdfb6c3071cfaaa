//! The status the fs layer renders (e.g. as a `.valuesfs/status` file).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// An open conflict: a session that was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictInfo {
    /// Identifier (also the last component of `refname`).
    pub id: String,
    /// The path that could not be merged.
    pub path: String,
    /// The key inside the file, when the semantic merger knows it.
    pub key: Option<String>,
    /// Explanation.
    pub message: String,
    /// Local ref (in the master's repository, never pushed) holding the rejected commit.
    pub refname: String,
    /// The rejected commit (hex).
    pub commit: String,
    /// When it happened (RFC 3339).
    pub at: String,
    /// `submit` (merge onto the local head) or `push` (replay onto a moved remote).
    pub phase: String,
}

impl std::fmt::Display for ConflictInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conflict in {}", self.path)?;
        if let Some(k) = &self.key {
            write!(f, " at key {k}")?;
        }
        write!(f, ": {} (kept on {})", self.message, self.refname)
    }
}

/// A fetched remote head that failed the fsck of tree entries: not shown, not built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedHead {
    /// The remote head (hex).
    pub head: String,
    /// Path of the entry.
    pub path: String,
    /// The rule it breaks (git fsck's message id).
    pub rule: String,
}

impl std::fmt::Display for RefusedHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "remote head {} refused: its tree has entry {:?} ({}); the view stays on the last \
             good head and pushes are held",
            self.head, self.path, self.rule
        )
    }
}

/// A point-in-time status of the master.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Remote URL.
    pub remote: String,
    /// Branch.
    pub branch: String,
    /// Local head (hex), if any.
    pub head: Option<String>,
    /// Last known remote head (hex), if any.
    pub remote_head: Option<String>,
    /// Local commits not on the remote.
    pub ahead: usize,
    /// Remote commits not merged locally.
    pub behind: usize,
    /// Sessions acknowledged but not yet pushed (= `ahead`: one commit per session).
    pub pending_pushes: usize,
    /// Last successful fetch (RFC 3339).
    pub last_fetch: Option<String>,
    /// Error of the last fetch attempt, if it failed.
    pub last_fetch_error: Option<String>,
    /// Last successful push (RFC 3339).
    pub last_push: Option<String>,
    /// Error of the last push attempt, if it failed.
    pub last_push_error: Option<String>,
    /// When the push attempt now talking to the remote started (RFC 3339), if one is.
    #[serde(default)]
    pub push_in_flight_since: Option<String>,
    /// Push attempts that failed since the last successful push.
    #[serde(default)]
    pub push_attempts: u32,
    /// Open conflicts, oldest first.
    pub conflicts: Vec<ConflictInfo>,
    /// The fetched remote head that was refused, if any.
    pub refused_head: Option<RefusedHead>,
}

/// A YAML scalar: JSON strings are valid YAML double-quoted scalars.
fn scalar(s: &Option<String>) -> String {
    match s {
        Some(s) => serde_json::Value::String(s.clone()).to_string(),
        None => "null".to_string(),
    }
}

impl Status {
    /// Renders as YAML.
    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        let q = |s: &str| scalar(&Some(s.to_string()));
        // Writing to a String cannot fail.
        let _ = writeln!(y, "remote: {}", q(&self.remote));
        let _ = writeln!(y, "branch: {}", q(&self.branch));
        let _ = writeln!(y, "head: {}", scalar(&self.head));
        let _ = writeln!(y, "remote_head: {}", scalar(&self.remote_head));
        let _ = writeln!(y, "ahead: {}", self.ahead);
        let _ = writeln!(y, "behind: {}", self.behind);
        let _ = writeln!(y, "pending_pushes: {}", self.pending_pushes);
        let _ = writeln!(y, "last_fetch: {}", scalar(&self.last_fetch));
        let _ = writeln!(y, "last_fetch_error: {}", scalar(&self.last_fetch_error));
        let _ = writeln!(y, "last_push: {}", scalar(&self.last_push));
        let _ = writeln!(y, "last_push_error: {}", scalar(&self.last_push_error));
        let _ = writeln!(
            y,
            "push_in_flight_since: {}",
            scalar(&self.push_in_flight_since)
        );
        let _ = writeln!(y, "push_attempts: {}", self.push_attempts);
        if self.conflicts.is_empty() {
            y.push_str("conflicts: []\n");
        } else {
            y.push_str("conflicts:\n");
            for c in &self.conflicts {
                let _ = writeln!(y, "  - id: {}", q(&c.id));
                let _ = writeln!(y, "    path: {}", q(&c.path));
                let _ = writeln!(y, "    key: {}", scalar(&c.key));
                let _ = writeln!(y, "    message: {}", q(&c.message));
                let _ = writeln!(y, "    ref: {}", q(&c.refname));
                let _ = writeln!(y, "    commit: {}", q(&c.commit));
                let _ = writeln!(y, "    at: {}", q(&c.at));
                let _ = writeln!(y, "    phase: {}", q(&c.phase));
            }
        }
        match &self.refused_head {
            None => y.push_str("refused_head: null\n"),
            Some(r) => {
                let _ = writeln!(y, "refused_head:");
                let _ = writeln!(y, "  head: {}", q(&r.head));
                let _ = writeln!(y, "  path: {}", q(&r.path));
                let _ = writeln!(y, "  rule: {}", q(&r.rule));
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quotes_strings() {
        let s = Status {
            remote: "/tmp/r.git".into(),
            branch: "main".into(),
            last_push_error: Some("boom: \"x\"\nline".into()),
            conflicts: vec![ConflictInfo {
                id: "abc".into(),
                path: "a.kv".into(),
                key: Some("k".into()),
                message: "m".into(),
                refname: "refs/valuesfs/conflicts/abc".into(),
                commit: "00".into(),
                at: "t".into(),
                phase: "submit".into(),
            }],
            ..Status::default()
        };
        let y = s.to_yaml();
        assert!(
            y.contains("last_push_error: \"boom: \\\"x\\\"\\nline\"\n"),
            "{y}"
        );
        assert!(
            y.contains("  - id: \"abc\"\n    path: \"a.kv\"\n    key: \"k\"\n"),
            "{y}"
        );
        assert!(y.contains("head: null\n"));
    }
}
