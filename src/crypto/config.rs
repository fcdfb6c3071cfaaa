//! `.sops.yaml` creation rules, applied as sops applies them: the first rule whose
//! `path_regex` (unanchored) matches the path relative to the config's directory wins.

use std::path::{Path, PathBuf};

use regex_lite::Regex;

use super::error::{Error, Result};
use super::sops::{CreationParams, Selector, Style, SELECTOR_FIELDS};
use super::value::Value;
use super::yaml;

#[derive(Debug, Clone)]
pub struct CreationRule {
    pub path_regex: Option<Regex>,
    pub params: CreationParams,
    /// Key services named by the rule that valuesfs cannot use.
    pub unsupported: Vec<String>,
    /// Why valuesfs cannot apply this rule at all (several key groups: Shamir secret
    /// sharing), naming the rule.
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SopsConfig {
    /// The directory holding the `.sops.yaml`; rule paths are relative to it.
    pub dir: PathBuf,
    pub rules: Vec<CreationRule>,
    /// The `stores:` settings (how files are printed).
    pub style: Style,
}

/// The `stores:` section as sops reads it: `yaml.indent` (0 or unset: 4; go-yaml takes
/// 2 outside 2..=9; negative: an error), `json.indent` and `json_binary.indent` (unset,
/// null or -1: a tab; 0 or more: that many spaces; below -1: an error).
fn parse_stores(v: Option<&Value>) -> Result<Style> {
    let mut style = Style::default();
    let Some(stores) = v else {
        return Ok(style);
    };
    let indent = |store: &str| -> Result<Option<i64>> {
        match stores.get(store).and_then(|s| s.get("indent")) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(_) => Err(Error::Config(format!(
                "stores.{store}.indent must be an integer"
            ))),
        }
    };
    match indent("yaml")? {
        None | Some(0) => {}
        Some(n) if n < 0 => {
            return Err(Error::Config(
                "stores.yaml.indent: negative indentation is not accepted".into(),
            ))
        }
        Some(n @ 2..=9) => style.yaml_indent = n as usize,
        Some(_) => style.yaml_indent = 2,
    }
    let json = |store: &str| -> Result<Option<usize>> {
        match indent(store)? {
            None | Some(-1) => Ok(None),
            Some(n) if n < -1 => Err(Error::Config(format!(
                "stores.{store}.indent: below -1 is not accepted"
            ))),
            Some(n) => Ok(Some(n as usize)),
        }
    };
    style.json_indent = json("json")?;
    style.json_binary_indent = json("json_binary")?;
    Ok(style)
}

/// Walk up from `start` (a file or directory) to the nearest `.sops.yaml`.
pub fn find_config(start: &Path) -> Option<PathBuf> {
    let mut dir = if start.is_dir() {
        Some(start)
    } else {
        start.parent()
    };
    while let Some(d) = dir {
        let candidate = d.join(".sops.yaml");
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    None
}

fn recipients_of(v: Option<&Value>) -> Result<Vec<String>> {
    Ok(match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Str(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        Some(Value::Seq(items)) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(recipients_of(Some(i))?);
            }
            out
        }
        Some(_) => return Err(Error::Config("`age` must be a string or a list".into())),
    })
}

impl SopsConfig {
    pub fn load(path: &Path) -> Result<SopsConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        SopsConfig::parse(&text, dir)
    }

    pub fn parse(text: &str, dir: PathBuf) -> Result<SopsConfig> {
        let docs = yaml::parse_mappings(text, yaml::Limits::default())
            .map_err(|e| Error::Config(e.to_string()))?;
        let root = docs.into_iter().next().unwrap_or(Value::Map(Vec::new()));
        let style = parse_stores(root.get("stores"))?;
        let mut rules = Vec::new();
        if let Some(Value::Seq(items)) = root.get("creation_rules") {
            for item in items {
                if matches!(item, Value::Comment(_)) {
                    continue;
                }
                let path_regex = match item.get("path_regex") {
                    Some(Value::Str(r)) => Some(
                        Regex::new(r)
                            .map_err(|e| Error::Config(format!("path_regex {r:?}: {e}")))?,
                    ),
                    _ => None,
                };
                let mut recipients = recipients_of(item.get("age"))?;
                let mut refused = None;
                if let Some(Value::Seq(groups)) = item.get("key_groups") {
                    let groups: Vec<&Value> = groups
                        .iter()
                        .filter(|g| !matches!(g, Value::Comment(_)))
                        .collect();
                    let threshold = match item.get("shamir_threshold") {
                        Some(Value::Int(t)) => *t,
                        _ => 0,
                    };
                    if groups.len() > 1 || threshold > 1 {
                        // One key from every group (or `threshold` of them) opens the
                        // file: flattening the groups would let any one key open it.
                        let name = match item.get("path_regex") {
                            Some(Value::Str(r)) => format!("path_regex {r:?}"),
                            _ => "no path_regex".to_string(),
                        };
                        refused = Some(format!(
                            "creation rule {} ({name}): key_groups with {} groups \
                             (Shamir secret sharing) are not supported by valuesfs",
                            rules.len() + 1,
                            groups.len()
                        ));
                    }
                    for g in groups {
                        recipients.extend(recipients_of(g.get("age"))?);
                    }
                }
                let mut selector = None;
                for f in SELECTOR_FIELDS {
                    if let Some(Value::Str(v)) = item.get(f) {
                        if selector.is_some() {
                            return Err(Error::Config("a rule may set one selector only".into()));
                        }
                        selector = Some(Selector::new(f, v)?);
                    }
                }
                let unsupported = [
                    "pgp",
                    "kms",
                    "gcp_kms",
                    "azure_keyvault",
                    "hc_vault_transit_uri",
                ]
                .iter()
                .filter(|k| matches!(item.get(k), Some(Value::Str(s)) if !s.is_empty()))
                .map(|k| k.to_string())
                .collect();
                rules.push(CreationRule {
                    path_regex,
                    params: CreationParams {
                        recipients,
                        selector,
                        mac_only_encrypted: matches!(
                            item.get("mac_only_encrypted"),
                            Some(Value::Bool(true))
                        ),
                        style,
                    },
                    unsupported,
                    refused,
                });
            }
        }
        Ok(SopsConfig { dir, rules, style })
    }

    /// The first rule matching `rel_path` (relative to the config's directory).
    pub fn rule_for(&self, rel_path: &str) -> Option<&CreationRule> {
        self.rules
            .iter()
            .find(|r| r.path_regex.as_ref().is_none_or(|re| re.is_match(rel_path)))
    }

    /// Creation parameters for a path, with a clear error when the rule cannot be used.
    pub fn params_for(&self, rel_path: &str) -> Result<Option<CreationParams>> {
        match self.rule_for(rel_path) {
            None => Ok(None),
            Some(CreationRule {
                refused: Some(why), ..
            }) => Err(Error::Config(why.clone())),
            Some(r) if r.params.recipients.is_empty() && !r.unsupported.is_empty() => {
                Err(Error::UnsupportedKeyServices {
                    services: r.unsupported.join(", "),
                })
            }
            Some(r) => Ok(Some(r.params.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins() {
        let cfg = SopsConfig::parse(
            "creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    encrypted_regex: ^(data|stringData)$\n    age: age1a, age1b\n  - age: [age1c]\n",
            PathBuf::from("/r"),
        )
        .expect("parses");
        let r = cfg.rule_for("secrets/x.yaml").expect("rule");
        assert_eq!(r.params.recipients, vec!["age1a", "age1b"]);
        assert!(r.params.selector.is_some());
        let r = cfg.rule_for("values.yaml").expect("fallback rule");
        assert_eq!(r.params.recipients, vec!["age1c"]);
    }

    #[test]
    fn several_key_groups_are_refused_naming_the_rule() {
        let cfg = SopsConfig::parse(
            "creation_rules:\n  - path_regex: one\\.yaml$\n    key_groups:\n      - age: [age1a]\n  - path_regex: two\\.yaml$\n    key_groups:\n      - age: [age1a]\n      - age: [age1b]\n",
            PathBuf::from("/r"),
        )
        .expect("parses");
        let one = cfg.params_for("one.yaml").expect("one group is plain age");
        assert_eq!(one.expect("rule").recipients, vec!["age1a"]);
        let e = cfg
            .params_for("two.yaml")
            .expect_err("two groups")
            .to_string();
        assert!(e.contains("creation rule 2") && e.contains("two"), "{e}");
    }
}
