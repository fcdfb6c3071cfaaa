//! The codec against the real `sops` binary: both directions, every store and selector.

mod common;

use std::path::Path;

use common::*;
use valuesfs::crypto::{self, CreationParams, Format, Keyring, Selector};

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read")
}

#[test]
fn every_vector_decrypts_to_what_sops_prints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let keys = keyring();
    let enc = vectors().join("enc");
    let mut n = 0;
    for entry in std::fs::read_dir(&enc).expect("vectors") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let opened = crypto::decrypt(&read(&path), Format::from_path(&name), &keys)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = sops_decrypt(&path, &key, &sops_type_args(&name));
        assert_eq!(
            String::from_utf8_lossy(&opened.plaintext),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
        n += 1;
    }
    assert!(n >= 8, "expected at least 8 vectors, found {n}");
}

#[test]
fn plain_vectors_match_their_encrypted_twins() {
    let keys = keyring();
    for name in ["app.env", "blob.bin"] {
        let opened = crypto::decrypt(
            &read(&vectors().join("enc").join(name)),
            Format::from_path(name),
            &keys,
        )
        .expect("decrypt");
        assert_eq!(
            &opened.plaintext[..],
            &read(&vectors().join("plain").join(name))[..]
        );
    }
}

fn second_identity(dir: &Path) -> (String, std::path::PathBuf) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let path = dir.join("second.txt");
    use age::secrecy::ExposeSecret;
    std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).expect("write key");
    (recipient, path)
}

#[test]
fn files_we_encrypt_decrypt_with_sops_for_every_store_selector_and_recipient() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key1 = private_key(tmp.path());
    let (r2, key2) = second_identity(tmp.path());
    let selectors: Vec<Option<Selector>> = vec![
        None,
        Some(Selector::new("unencrypted_suffix", "_plain").expect("sel")),
        Some(Selector::new("encrypted_suffix", "word").expect("sel")),
        Some(Selector::new("unencrypted_regex", "^(host|port)$").expect("sel")),
        Some(Selector::new("encrypted_regex", "^(password|tag)$").expect("sel")),
        Some(Selector::new("unencrypted_comment_regex", "sops:nocrypt").expect("sel")),
        Some(Selector::new("encrypted_comment_regex", "sops:crypt").expect("sel")),
    ];
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("values.yaml", read(&vectors().join("plain/values.yaml"))),
        ("awkward.yaml", read(&corpus().join("awkward.yaml"))),
        ("multi.yaml", read(&corpus().join("multi.yaml"))),
        ("config.json", read(&vectors().join("plain/config.json"))),
        ("awkward.json", read(&corpus().join("awkward.json"))),
        ("app.env", read(&vectors().join("plain/app.env"))),
        ("app.ini", read(&corpus().join("app.ini"))),
        ("blob.bin", read(&vectors().join("plain/blob.bin"))),
    ];
    let keys = keyring();
    let mut checked = 0;
    for (name, plain) in &inputs {
        for (si, sel) in selectors.iter().enumerate() {
            for mac_only in [false, true] {
                let params = CreationParams {
                    recipients: vec![VECTOR_RECIPIENT.to_string(), r2.clone()],
                    selector: sel.clone(),
                    mac_only_encrypted: mac_only,
                    ..Default::default()
                };
                let format = Format::from_path(name);
                let enc = crypto::encrypt(plain, format, &params)
                    .unwrap_or_else(|e| panic!("{name} selector {si}: {e}"));
                // Lossless through us.
                let back = crypto::decrypt(&enc, format, &keys).expect("our decrypt");
                assert_eq!(&back.plaintext[..], &plain[..], "{name} selector {si}");
                // Readable by sops with either identity, to the same data sops itself gives.
                let path = tmp.path().join(format!("{si}-{mac_only}-{name}"));
                std::fs::write(&path, &enc).expect("write");
                let a = sops_decrypt(&path, &key1, &sops_type_args(name));
                let b = sops_decrypt(&path, &key2, &sops_type_args(name));
                assert_eq!(a, b);
                let canonical = crypto::decrypt(
                    &crypto::encrypt(&a, format, &params).expect("re-encrypt sops output"),
                    format,
                    &keys,
                )
                .expect("decrypt");
                if format == Format::Binary {
                    assert_eq!(&a[..], &plain[..]);
                } else {
                    // Compare as sops renders data (sops prints float 1000 as `1000`).
                    let render = |d: &[valuesfs::crypto::value::Value]| {
                        valuesfs::crypto::sops::render_plain(format, &strip(d))
                    };
                    assert_eq!(
                        render(canonical.documents()),
                        render(back.documents()),
                        "{name} selector {si}: sops -d gives other data"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, inputs.len() * selectors.len() * 2);
}

fn strip(docs: &[valuesfs::crypto::value::Value]) -> Vec<valuesfs::crypto::value::Value> {
    docs.iter().map(|d| d.without_comments()).collect()
}

/// Lines that differ between two texts (same line count assumed by the caller).
fn changed_lines(a: &str, b: &str) -> Vec<String> {
    assert_eq!(a.lines().count(), b.lines().count(), "line counts differ");
    a.lines()
        .zip(b.lines())
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.split(':').next().unwrap_or("").trim().to_string())
        .collect()
}

#[test]
fn editing_a_sops_file_changes_only_the_edited_value_lastmodified_and_mac() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let keys = keyring();
    let orig = read(&vectors().join("enc/values.yaml"));
    let opened = crypto::decrypt(&orig, Format::Yaml, &keys).expect("decrypt");
    let plain = String::from_utf8(opened.plaintext.to_vec()).expect("utf8");
    let edited = plain.replace("replicas: 2", "replicas: 3");
    assert_ne!(plain, edited);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = opened.reencrypt(edited.as_bytes()).expect("reencrypt");
    let out_s = String::from_utf8(out.clone()).expect("utf8");
    let orig_s = String::from_utf8(orig).expect("utf8");
    assert_eq!(
        changed_lines(&orig_s, &out_s),
        vec!["replicas", "lastmodified", "mac"]
    );
    let path = tmp.path().join("values.yaml");
    std::fs::write(&path, &out).expect("write");
    let sops_out = String::from_utf8(sops_decrypt(&path, &key, &[])).expect("utf8");
    assert!(sops_out.contains("replicas: 3"));
    // Unchanged plaintext: only lastmodified and mac move.
    let again = crypto::decrypt(&out, Format::Yaml, &keys).expect("decrypt");
    let same = again.reencrypt(edited.as_bytes()).expect("reencrypt");
    let diff = changed_lines(&out_s, &String::from_utf8(same).expect("utf8"));
    assert!(
        diff.iter().all(|k| k == "lastmodified" || k == "mac"),
        "{diff:?}"
    );
}

#[test]
fn json_and_dotenv_edits_are_minimal_too() {
    let keys = keyring();
    for (name, from, to) in [
        ("config.json", "8080", "9090"),
        ("app.env", "abc123", "zzz"),
    ] {
        let orig = read(&vectors().join("enc").join(name));
        let format = Format::from_path(name);
        let opened = crypto::decrypt(&orig, format, &keys).expect("decrypt");
        let plain = String::from_utf8(opened.plaintext.to_vec()).expect("utf8");
        let out = opened
            .reencrypt(plain.replace(from, to).as_bytes())
            .expect("reencrypt");
        let a = String::from_utf8(orig).expect("utf8");
        let b = String::from_utf8(out).expect("utf8");
        let diff = changed_lines(&a, &b);
        assert_eq!(diff.len(), 3, "{name}: {diff:?}");
    }
}

#[test]
fn equal_values_in_a_list_keep_distinct_ivs() {
    // sops reuses IVs by (plaintext, path), which reveals equal secrets; we go by position.
    let keys = keyring();
    let plain = b"users:\n  - password: same\n  - password: same\n";
    let params = CreationParams {
        recipients: vec![VECTOR_RECIPIENT.into()],
        ..Default::default()
    };
    let enc = crypto::encrypt(plain, Format::Yaml, &params).expect("encrypt");
    let opened = crypto::decrypt(&enc, Format::Yaml, &keys).expect("decrypt");
    let out = opened
        .reencrypt(b"users:\n  - password: same\n  - password: same\n  - password: same\n")
        .expect("reencrypt");
    let text = String::from_utf8(out).expect("utf8");
    let ivs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("password: ENC"))
        .filter_map(|l| l.split("iv:").nth(1))
        .collect();
    assert_eq!(ivs.len(), 3);
    assert!(ivs[0] != ivs[1] && ivs[1] != ivs[2] && ivs[0] != ivs[2]);
}

#[test]
fn corpus_round_trips_byte_for_byte_and_sops_reads_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let keys = keyring();
    let params = CreationParams {
        recipients: vec![VECTOR_RECIPIENT.into()],
        ..Default::default()
    };
    for entry in std::fs::read_dir(corpus()).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let plain = read(&path);
        let format = Format::from_path(&name);
        let enc =
            crypto::encrypt(&plain, format, &params).unwrap_or_else(|e| panic!("{name}: {e}"));
        let opened = crypto::decrypt(&enc, format, &keys).expect("decrypt");
        assert_eq!(&opened.plaintext[..], &plain[..], "{name}");
        // And again after an edit cycle with no change: still exact.
        let enc2 = opened.reencrypt(&plain).expect("reencrypt");
        let opened2 = crypto::decrypt(&enc2, format, &keys).expect("decrypt");
        assert_eq!(&opened2.plaintext[..], &plain[..], "{name}");
        let out = tmp.path().join(&name);
        std::fs::write(&out, &enc2).expect("write");
        // sops reads it, to the data sops itself would produce from the plaintext.
        let ours = sops_decrypt(&out, &key, &sops_type_args(&name));
        let mut cmd = sops();
        let sops_enc = cmd
            .env("SOPS_AGE_KEY_FILE", &key)
            .args(["-e", "--age", VECTOR_RECIPIENT])
            .arg(&path)
            .output()
            .expect("sops -e");
        assert!(sops_enc.status.success(), "{name}: sops -e failed");
        let theirs_path = tmp.path().join(format!("sops-{name}"));
        std::fs::write(&theirs_path, &sops_enc.stdout).expect("write");
        let theirs = sops_decrypt(&theirs_path, &key, &sops_type_args(&name));
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{name}: sops -d differs between our file and sops's"
        );
    }
}

fn tamper(enc: &str, f: impl Fn(&str) -> String) -> Vec<u8> {
    let out = f(enc);
    assert_ne!(out, enc, "tamper had no effect");
    out.into_bytes()
}

/// Flip one base64 character of the field `field:` in the first line containing `needle`.
fn flip_field(enc: &str, needle: &str, field: &str) -> String {
    let mut lines: Vec<String> = enc.lines().map(String::from).collect();
    let i = lines
        .iter()
        .position(|l| l.contains(needle))
        .expect("needle");
    let line = &lines[i];
    let start = line.find(needle).expect("needle")
        + line[line.find(needle).expect("n")..]
            .find(field)
            .expect("field")
        + field.len();
    let mut bytes = line.clone().into_bytes();
    bytes[start] = if bytes[start] == b'A' { b'B' } else { b'A' };
    lines[i] = String::from_utf8(bytes).expect("utf8");
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

#[test]
fn tampering_is_refused() {
    let keys = keyring();
    let enc = String::from_utf8(read(&vectors().join("enc/values.yaml"))).expect("utf8");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "data",
            tamper(&enc, |e| flip_field(e, "password: ENC", "data:")),
        ),
        (
            "iv",
            tamper(&enc, |e| flip_field(e, "password: ENC", "iv:")),
        ),
        (
            "tag",
            tamper(&enc, |e| flip_field(e, "password: ENC", "tag:")),
        ),
        ("mac", tamper(&enc, |e| flip_field(e, "mac: ENC", "data:"))),
        ("comment", tamper(&enc, |e| flip_field(e, "#ENC", "data:"))),
        (
            "swap",
            tamper(&enc, |e| {
                let cpu = e
                    .lines()
                    .find(|l| l.contains("cpu: ENC"))
                    .expect("cpu")
                    .split("cpu: ")
                    .nth(1)
                    .expect("v")
                    .to_string();
                let mem = e
                    .lines()
                    .find(|l| l.contains("memory: ENC"))
                    .expect("mem")
                    .split("memory: ")
                    .nth(1)
                    .expect("v")
                    .to_string();
                e.replace(&cpu, "@@")
                    .replace(&mem, &cpu)
                    .replace("@@", &mem)
            }),
        ),
        (
            "plain comment",
            tamper(&enc, |e| e.replacen("image:", "# injected\nimage:", 1)),
        ),
        (
            "lastmodified",
            tamper(&enc, |e| {
                e.replace("2026-11-22T01:26:58Z", "2026-11-22T01:26:59Z")
            }),
        ),
    ];
    for (what, bytes) in cases {
        let r = crypto::decrypt(&bytes, Format::Yaml, &keys);
        match r {
            Err(crypto::Error::Tampered { .. }) | Err(crypto::Error::MacMismatch) => {}
            Err(e) => panic!("{what}: unexpected error kind: {e}"),
            Ok(_) => panic!("{what}: tampered file was accepted"),
        }
    }
}

#[test]
fn typed_errors_for_bad_input() {
    let keys = keyring();
    let enc = read(&vectors().join("enc/values.yaml"));
    let other = Keyring::parse(age::secrecy::ExposeSecret::expose_secret(
        &age::x25519::Identity::generate().to_string(),
    ))
    .expect("ring");
    assert!(matches!(
        crypto::decrypt(&enc, Format::Yaml, &other),
        Err(crypto::Error::NoMatchingIdentity { .. })
    ));
    assert!(matches!(
        crypto::decrypt(b"a: 1\n", Format::Yaml, &keys),
        Err(crypto::Error::NotSops)
    ));
    assert!(matches!(
        crypto::decrypt(b"a: [1\n", Format::Yaml, &keys),
        Err(crypto::Error::Yaml(_))
    ));
    assert!(matches!(
        crypto::decrypt(b"{\"a\": ", Format::Json, &keys),
        Err(crypto::Error::Json(_))
    ));
    assert!(matches!(
        crypto::decrypt(b"\xff\xfe", Format::Yaml, &keys),
        Err(crypto::Error::NotUtf8)
    ));
    let pgp = b"a: ENC[AES256_GCM,data:AA==,iv:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]\nsops:\n    pgp:\n        - fp: ABCDEF\n          enc: x\n    lastmodified: \"2026-01-01T00:00:00Z\"\n    mac: x\n    version: 3.11.0\n";
    match crypto::decrypt(pgp, Format::Yaml, &keys) {
        Err(crypto::Error::UnsupportedKeyServices { services }) => assert_eq!(services, "pgp"),
        other => panic!("expected UnsupportedKeyServices, got {other:?}"),
    }
    let params = CreationParams {
        recipients: vec![VECTOR_RECIPIENT.into()],
        ..Default::default()
    };
    assert!(matches!(
        crypto::encrypt(b"a: b: c\n", Format::Yaml, &params),
        Err(crypto::Error::Yaml(_))
    ));
    assert!(matches!(
        crypto::encrypt(b"- a\n", Format::Yaml, &params),
        Err(crypto::Error::Yaml(_))
    ));
    assert!(matches!(
        crypto::encrypt(b"NOEQUALS\n", Format::Dotenv, &params),
        Err(crypto::Error::Dotenv(_))
    ));
}

#[test]
fn a_file_sops_edits_after_us_reads_as_sops_left_it() {
    // sops drops our unknown metadata field when it rewrites; we then show its data.
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let keys = keyring();
    let params = CreationParams {
        recipients: vec![VECTOR_RECIPIENT.into()],
        ..Default::default()
    };
    let plain = read(&corpus().join("awkward.yaml"));
    let enc = crypto::encrypt(&plain, Format::Yaml, &params).expect("encrypt");
    assert!(String::from_utf8_lossy(&enc).contains("valuesfs_source:"));
    let path = tmp.path().join("f.yaml");
    std::fs::write(&path, &enc).expect("write");
    let st = sops()
        .env("SOPS_AGE_KEY_FILE", &key)
        .args([
            "set",
            path.to_str().expect("utf8"),
            "[\"app\"][\"neg\"]",
            "7",
        ])
        .status()
        .expect("sops set");
    assert!(st.success());
    let after = read(&path);
    let opened = crypto::decrypt(&after, Format::Yaml, &keys).expect("decrypt");
    let expected = sops_decrypt(&path, &key, &[]);
    assert_eq!(
        String::from_utf8_lossy(&opened.plaintext),
        String::from_utf8_lossy(&expected)
    );
}

/// Selector regexes are Go's RE2 dialect in sops: `\w`, `\d` and `\s` are ASCII only, so
/// `^\w+$` does not pick the key `clé`. The same file encrypted by sops and by us must
/// leave the same values in clear.
#[test]
fn selector_regexes_pick_the_keys_sops_picks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plain = "clé: x\nabc: y\nn٣: z\nn3: w\n";
    let src = tmp.path().join("u.yml");
    std::fs::write(&src, plain).expect("write");
    for (flag, re) in [
        ("--encrypted-regex", r"^\w+$"),
        ("--unencrypted-regex", r"^n\d$"),
    ] {
        let sops_made = sops_encrypt(
            &src,
            &[flag, re, "--input-type", "yaml", "--output-type", "yaml"],
        );
        let field = flag.trim_start_matches("--").replace('-', "_");
        let params = CreationParams {
            recipients: vec![VECTOR_RECIPIENT.into()],
            selector: Some(Selector::new(&field, re).expect("selector")),
            ..Default::default()
        };
        let ours = crypto::encrypt(plain.as_bytes(), Format::Yaml, &params).expect("encrypt");
        let clear = |text: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(text)
                .lines()
                .take_while(|l| !l.starts_with("sops:"))
                .filter(|l| !l.contains("ENC["))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(clear(&ours), clear(&sops_made), "{flag} {re}");
        assert!(
            !clear(&ours).is_empty(),
            "{flag} {re}: something stays clear"
        );
    }
}

/// A file with thousands of envelopes has them opened on two threads ahead of the walk,
/// and its stored text copy opened beside it: it must read as a small file does (the
/// bytes `sops -d` prints, sops's own encryption included) and be refused as one is.
#[test]
fn a_large_file_opened_on_two_threads_reads_and_refuses_as_a_small_one() {
    let keys = keyring();
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let mut plain = String::from("# large\nenv:\n");
    for k in 0..5000 {
        plain.push_str(&format!(
            "  KEY_{k}: \"{:032x}\"  # setting {k}\n",
            k * 7919
        ));
    }
    plain.push_str("list:\n  # before\n  - a\n  # between\n  - b: 1\n    c: [x, y]\n");
    let params = CreationParams {
        recipients: vec![VECTOR_RECIPIENT.into()],
        ..Default::default()
    };
    let ours = crypto::encrypt(plain.as_bytes(), Format::Yaml, &params).expect("encrypt");
    let back = crypto::decrypt(&ours, Format::Yaml, &keys).expect("decrypt ours");
    assert!(back.plaintext[..] == *plain.as_bytes(), "our own file");

    // sops's own file has no stored text: the documents are rendered.
    let plain_path = tmp.path().join("plain.yaml");
    std::fs::write(&plain_path, &plain).expect("write");
    let sops_made = sops_encrypt(&plain_path, &[]);
    let theirs = crypto::decrypt(&sops_made, Format::Yaml, &keys).expect("decrypt sops's");
    let theirs_path = tmp.path().join("theirs.yaml");
    std::fs::write(&theirs_path, &sops_made).expect("write");
    let sops_view = sops_decrypt(&theirs_path, &key, &[]);
    assert!(
        theirs.plaintext[..] == sops_view[..],
        "sops-made file: not what sops -d prints"
    );
    let ours_path = tmp.path().join("ours.yaml");
    std::fs::write(&ours_path, &ours).expect("write");
    assert!(
        sops_decrypt(&ours_path, &key, &[]) == sops_view,
        "sops -d of ours: not what it prints for its own"
    );

    // Two values' ciphertexts swapped: the first one the walk meets is named.
    let text = String::from_utf8(ours.clone()).expect("utf8");
    let value_of = |key: &str| {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}: ENC[")))
            .expect("value line");
        line.split_once(": ").expect("colon").1.to_string()
    };
    let (a, b) = (value_of("KEY_10"), value_of("KEY_4000"));
    let swapped = text.replace(&a, "@@").replace(&b, &a).replace("@@", &b);
    match crypto::decrypt(swapped.as_bytes(), Format::Yaml, &keys) {
        Err(crypto::Error::Tampered { path }) => assert_eq!(path, "env:KEY_10:"),
        Err(e) => panic!("swapped values: {e}"),
        Ok(_) => panic!("swapped values were accepted"),
    }
    // A comment's ciphertext damaged: refused, never passed through.
    // (sops writes a line comment's envelope on the line below its value.)
    let comment = text
        .lines()
        .skip_while(|l| !l.contains("KEY_2500:"))
        .nth(1)
        .and_then(|l| l.split_once("#ENC[AES256_GCM,data:"))
        .map(|(_, r)| r[..8].to_string())
        .expect("comment of KEY_2500");
    let flipped: String = comment
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    let damaged = text.replacen(
        &format!("#ENC[AES256_GCM,data:{comment}"),
        &format!("#ENC[AES256_GCM,data:{flipped}"),
        1,
    );
    assert_ne!(damaged, text);
    match crypto::decrypt(damaged.as_bytes(), Format::Yaml, &keys) {
        Err(crypto::Error::Tampered { path }) => assert!(path.ends_with("#comment"), "{path}"),
        Err(e) => panic!("damaged comment: {e}"),
        Ok(_) => panic!("a damaged comment was accepted"),
    }
}
