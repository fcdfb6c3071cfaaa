//! Property tests of the codec: random trees and random text round trip exactly, and
//! unchanged values keep their ciphertext.

mod common;

use common::*;
use proptest::prelude::*;
use valuesfs::crypto::value::{Key, Value};
use valuesfs::crypto::{self, yaml, CreationParams, Format};

fn params() -> CreationParams {
    CreationParams {
        recipients: vec![VECTOR_RECIPIENT.into()],
        ..Default::default()
    }
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,8}",
        "[a-zA-Z0-9 :#'\"_.-]{1,12}",
        Just("yes".to_string()),
        Just("123".to_string()),
    ]
}

fn scalar_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::Str),
        "[ -~\\n\\t]{0,30}".prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        (-1e12f64..1e12).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn tree_strategy() -> impl Strategy<Value = Value> {
    let leaf = scalar_strategy();
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(
                prop_oneof![
                    4 => (key_strategy(), inner.clone()).prop_map(|(k, v)| (Key::Name(k), v)),
                    1 => "[ -~]{0,20}".prop_map(|c| (Key::Comment(c), Value::Null)),
                ],
                0..6
            )
            .prop_map(|items| {
                // Keys must be unique for the tree to mean one thing.
                let mut seen = std::collections::HashSet::new();
                Value::Map(
                    items
                        .into_iter()
                        .filter(|(k, _)| match k {
                            Key::Name(n) => seen.insert(n.clone()),
                            Key::Comment(_) => true,
                        })
                        .collect(),
                )
            }),
            prop::collection::vec(inner, 0..5).prop_map(Value::Seq),
        ]
    })
}

fn doc_strategy() -> impl Strategy<Value = Value> {
    tree_strategy().prop_map(|t| match t {
        Value::Map(m) if m.iter().any(|(k, _)| matches!(k, Key::Name(_))) => Value::Map(m),
        other => Value::Map(vec![(Key::Name("root".into()), other)]),
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        .. ProptestConfig::default()
    })]

    #[test]
    fn random_yaml_trees_round_trip_exactly(docs in prop::collection::vec(doc_strategy(), 1..3)) {
        let text = yaml::emit(&docs);
        let keys = keyring();
        let enc = crypto::encrypt(text.as_bytes(), Format::Yaml, &params())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let opened = crypto::decrypt(&enc, Format::Yaml, &keys).expect("decrypt");
        prop_assert_eq!(String::from_utf8_lossy(&opened.plaintext), text);
    }

    #[test]
    fn random_json_trees_round_trip_exactly(doc in doc_strategy()) {
        let stripped = doc.without_comments();
        let text = valuesfs::crypto::json::emit(&stripped, None, None);
        let keys = keyring();
        let enc = crypto::encrypt(text.as_bytes(), Format::Json, &params())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let opened = crypto::decrypt(&enc, Format::Json, &keys).expect("decrypt");
        prop_assert_eq!(String::from_utf8_lossy(&opened.plaintext), text);
    }

    #[test]
    fn random_text_either_round_trips_or_is_refused(
        lines in prop::collection::vec(
            prop_oneof![
                "[a-z]{1,5}: [ -~]{0,12}",
                "  [a-z]{1,5}: [a-z0-9\"']{0,8}",
                "- [ -~]{0,10}",
                "  - [a-z]{0,6}",
                "#[ -~]{0,10}",
                "[a-z]{1,4}: [|>][-+]?",
                "    [ -~]{0,10}",
                "[ -~]{0,16}",
                Just(String::new()),
            ],
            0..12
        ),
        final_newline in any::<bool>(),
        format in prop_oneof![Just(Format::Yaml), Just(Format::Dotenv), Just(Format::Binary)],
    ) {
        let mut text = lines.join("\n");
        if final_newline { text.push('\n'); }
        let keys = keyring();
        if let Ok(enc) = crypto::encrypt(text.as_bytes(), format, &params()) {
            let opened = crypto::decrypt(&enc, format, &keys).expect("what we write, we read");
            prop_assert_eq!(String::from_utf8_lossy(&opened.plaintext), text);
        }
    }

    #[test]
    fn unchanged_values_keep_their_ciphertext(
        values in prop::collection::vec("[a-zA-Z0-9 ]{1,12}", 2..8),
        which in any::<prop::sample::Index>(),
        newval in "[a-z]{1,8}",
    ) {
        let keys = keyring();
        let render = |vals: &[String]| -> String {
            vals.iter().enumerate().map(|(i, v)| format!("k{i}: \"{v}\"\n")).collect()
        };
        let enc = crypto::encrypt(render(&values).as_bytes(), Format::Yaml, &params()).expect("enc");
        let opened = crypto::decrypt(&enc, Format::Yaml, &keys).expect("dec");
        let mut changed = values.clone();
        let i = which.index(values.len());
        changed[i] = format!("{newval}-changed");
        let enc2 = opened.reencrypt(render(&changed).as_bytes()).expect("reenc");
        let a = String::from_utf8(enc).expect("utf8");
        let b = String::from_utf8(enc2).expect("utf8");
        for (j, _) in values.iter().enumerate() {
            let line = |s: &str| s.lines().find(|l| l.starts_with(&format!("k{j}:"))).map(String::from);
            if j == i {
                prop_assert_ne!(line(&a), line(&b));
            } else {
                prop_assert_eq!(line(&a), line(&b));
            }
        }
    }
}
