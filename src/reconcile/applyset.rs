//! kubectl's ApplySet (KEP-3659): the parent object's id and the annotations that list
//! the set's group-kinds and namespaces.

use base64::Engine;
use sha2::{Digest, Sha256};

pub const ID_LABEL: &str = "applyset.kubernetes.io/id";
pub const PART_OF: &str = "applyset.kubernetes.io/part-of";
pub const TOOLING: &str = "applyset.kubernetes.io/tooling";
pub const GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";
pub const NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";
/// Objects annotated `valuesfs.io/prune: disabled` are never pruned.
pub const PRUNE_ANNOTATION: &str = "valuesfs.io/prune";

/// The id of the set whose parent is `<kind>.<group>` `name` in `namespace`:
/// `applyset-` + unpadded URL-safe base64 of sha256(`name.namespace.kind.group`) + `-v1`.
pub fn applyset_id(name: &str, namespace: &str, kind: &str, group: &str) -> String {
    let digest = Sha256::digest(format!("{name}.{namespace}.{kind}.{group}").as_bytes());
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// `Kind.group` (just `Kind` for the core group), as the parent lists them.
pub fn group_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// The inverse of [`group_kind`].
pub fn split_group_kind(gk: &str) -> (String, String) {
    match gk.split_once('.') {
        Some((k, g)) => (g.to_string(), k.to_string()),
        None => (String::new(), gk.to_string()),
    }
}

/// A comma-separated annotation as a sorted set.
pub fn parse_list(v: Option<&str>) -> std::collections::BTreeSet<String> {
    v.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_one_kubectl_computes() {
        // kubectl 1.32 labelled the parent Secret `myset` in `default` with this id.
        assert_eq!(
            applyset_id("myset", "default", "Secret", ""),
            "applyset-51uXdjs_k8zt9KVdAtPaWnW_O9B-EVzd2Bkztfa9DSA-v1"
        );
        assert_eq!(group_kind("apps", "Deployment"), "Deployment.apps");
        assert_eq!(
            split_group_kind("Deployment.apps"),
            ("apps".into(), "Deployment".into())
        );
        assert_eq!(
            split_group_kind("ConfigMap"),
            ("".into(), "ConfigMap".into())
        );
    }
}
