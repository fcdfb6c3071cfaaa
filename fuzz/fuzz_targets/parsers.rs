//! Each parser of untrusted text on its own: YAML (as sops and as kubectl read it), JSON,
//! INI, the ENC[...] envelope, .sops.yaml and its recipients, a file's recipient list,
//! .valuesfs.yaml, manifests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valuesfs::crypto::{cipher, ini, json, yaml, SopsConfig};

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
    // INI: reading, writing and reading the output again never panic (go-ini's writer
    // is not always read back the same, e.g. a value with a leading space and a quote:
    // sops has the same limit).
    if let Ok(tree) = ini::parse(text) {
        let _ = ini::parse(&ini::emit(&tree, None));
    }
    let _ = cipher::parse_envelope(text);
    let _ = SopsConfig::parse(text, std::path::PathBuf::from("/"));
    // Recipients in `.sops.yaml` (age or ssh keys) and a file's recipient list.
    let _ = valuesfs::crypto::keys::parse_recipient(text);
    for f in [
        valuesfs::crypto::Format::Yaml,
        valuesfs::crypto::Format::Json,
        valuesfs::crypto::Format::Dotenv,
        valuesfs::crypto::Format::Ini,
    ] {
        let _ = valuesfs::crypto::sops::file_recipients(data, f);
    }
    let _ = yaml::parse_kubectl(text, yaml::Limits::default());
    let _ = valuesfs::slices::parse_config(text, None);
    let keys = valuesfs::crypto::Keyring::default();
    for name in ["m.yaml", "m.json"] {
        let _ = valuesfs::reconcile::parse_file(name, data, &keys);
    }
});
