//! Each parser of untrusted text on its own: YAML, JSON, the ENC[...] envelope, .sops.yaml.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valuesfs::crypto::{cipher, json, yaml, SopsConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(docs) = yaml::parse(text, yaml::Limits::default()) {
        // The writer's output must read back as the same data.
        if docs.iter().all(|d| matches!(d, valuesfs::crypto::value::Value::Map(_))) {
            let out = yaml::emit(&docs);
            let again = yaml::parse(&out, yaml::Limits::default()).expect("writer output parses");
            assert!(valuesfs::crypto::value::same_docs(
                &again.iter().map(|d| d.without_comments()).collect::<Vec<_>>(),
                &docs.iter().map(|d| d.without_comments()).collect::<Vec<_>>()
            ));
        }
    }
    let _ = json::parse(text, 128);
    let _ = cipher::parse_envelope(text);
    let _ = SopsConfig::parse(text, std::path::PathBuf::from("/"));
});
