//! Key-by-key merge of SOPS files, plugged into the master as its [`SemanticMerge`].
//!
//! Both sides are decrypted in memory (never written anywhere). The plaintexts are first
//! merged line by line as git would (libgit2's in-memory `git_merge_file`), which keeps the
//! user's formatting; the result must agree with a merge of the decrypted trees key by
//! key. When lines collide but keys do not (adjacent edits), the tree merge wins and the
//! file is written in sops's formatting. The same key changed two ways is a conflict that
//! names the key. The merged plaintext is encrypted against the head's version (`ours`),
//! so its untouched values keep their ciphertext.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::merge::{ConflictDetail, SemanticMerge};
use crate::crypto::merge::merge_documents;
use crate::crypto::sops::render_styled;
use crate::crypto::value::{same_docs, Value};
use crate::crypto::{decrypt, is_sops, Format, Keyring, Opened};

/// Merges SOPS files with the identities it holds; declines everything else.
pub struct SopsMerge {
    keys: Arc<Keyring>,
}

impl SopsMerge {
    pub fn new(keys: Arc<Keyring>) -> Self {
        SopsMerge { keys }
    }
}

/// Three-way line merge of in-memory buffers; `None` when hunks overlap.
fn merge_lines(base: &[u8], ours: &[u8], theirs: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    use libgit2_sys as raw;
    raw::init();
    // SAFETY: the inputs point into slices that outlive the call; the result is read,
    // copied, wiped and freed before returning.
    unsafe {
        let mut inputs: [raw::git_merge_file_input; 3] = std::mem::zeroed();
        for (input, buf) in inputs.iter_mut().zip([base, ours, theirs]) {
            if raw::git_merge_file_input_init(input, 1) != 0 {
                return None;
            }
            input.ptr = buf.as_ptr().cast();
            input.size = buf.len();
        }
        let mut out: raw::git_merge_file_result = std::mem::zeroed();
        let rc = raw::git_merge_file(
            &mut out,
            &inputs[0],
            &inputs[1],
            &inputs[2],
            std::ptr::null(),
        );
        if rc != 0 {
            return None;
        }
        let result = if out.automergeable != 0 && !out.ptr.is_null() {
            Some(Zeroizing::new(
                std::slice::from_raw_parts(out.ptr.cast::<u8>(), out.len).to_vec(),
            ))
        } else {
            None
        };
        if !out.ptr.is_null() {
            std::ptr::write_bytes(out.ptr.cast_mut(), 0, out.len);
        }
        raw::git_merge_file_result_free(&mut out);
        result
    }
}

fn strip(docs: &[Value]) -> Vec<Value> {
    docs.iter().map(Value::without_comments).collect()
}

impl SopsMerge {
    fn merge_opened(
        &self,
        format: Format,
        base: Option<&Opened>,
        ours: &Opened,
        theirs: &Opened,
    ) -> Result<Vec<u8>, ConflictDetail> {
        if format == Format::Binary {
            return Err(ConflictDetail::new(
                "both sides changed an encrypted binary file",
            ));
        }
        let empty = Vec::new();
        let base_docs = base.map_or(&empty[..], |b| b.documents());
        let tree =
            merge_documents(base_docs, ours.documents(), theirs.documents()).map_err(|c| {
                ConflictDetail {
                    key: Some(c.path.clone()),
                    message: format!("both sides changed key {} differently", c.path),
                }
            })?;
        let base_plain: &[u8] = base.map_or(&[], |b| &b.plaintext);
        let text = merge_lines(base_plain, &ours.plaintext, &theirs.plaintext)
            .filter(|t| {
                // Keep the line merge only when it says what the key merge says.
                crate::crypto::sops::parse_plain(t, format)
                    .is_ok_and(|d| same_docs(&strip(&d), &strip(&tree)))
            })
            .unwrap_or_else(|| {
                Zeroizing::new(render_styled(format, &tree, ours.style()).into_bytes())
            });
        ours.reencrypt(&text)
            .map_err(|e| ConflictDetail::new(format!("merged content cannot be encrypted: {e}")))
    }
}

impl SemanticMerge for SopsMerge {
    fn merge(
        &self,
        path: &str,
        base: Option<&[u8]>,
        ours: &[u8],
        theirs: &[u8],
    ) -> Option<Result<Vec<u8>, ConflictDetail>> {
        let format = Format::from_path(path);
        if !is_sops(ours, format) || !is_sops(theirs, format) {
            return None;
        }
        let open = |b: &[u8], side: &str| {
            decrypt(b, format, &self.keys).map_err(|e| {
                ConflictDetail::new(format!("cannot decrypt {side} version to merge: {e}"))
            })
        };
        let result = (|| {
            let o = open(ours, "our")?;
            let t = open(theirs, "their")?;
            let b = match base {
                Some(b) if is_sops(b, format) => Some(open(b, "base")?),
                _ => None,
            };
            self.merge_opened(format, b.as_ref(), &o, &t)
        })();
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{encrypt, CreationParams};

    fn setup() -> (Arc<Keyring>, CreationParams) {
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let text = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
        let keys = Arc::new(Keyring::parse(&text).expect("ring"));
        (
            keys,
            CreationParams {
                recipients: vec![recipient],
                ..Default::default()
            },
        )
    }

    #[test]
    fn different_keys_of_one_secret_both_land() {
        let (keys, params) = setup();
        let base_plain = b"db:\n  user: app   # login\n  password: one\napi:\n  token: t1\n";
        let base = encrypt(base_plain, Format::Yaml, &params).expect("enc");
        let b_open = decrypt(&base, Format::Yaml, &keys).expect("dec");
        let ours = b_open
            .reencrypt(b"db:\n  user: app   # login\n  password: two\napi:\n  token: t1\n")
            .expect("ours");
        let theirs = b_open
            .reencrypt(b"db:\n  user: app   # login\n  password: one\napi:\n  token: t2\n")
            .expect("theirs");
        let m = SopsMerge::new(keys.clone());
        let merged = m
            .merge("s.yaml", Some(&base), &ours, &theirs)
            .expect("claimed")
            .expect("clean");
        let out = decrypt(&merged, Format::Yaml, &keys).expect("dec");
        assert_eq!(
            &out.plaintext[..],
            b"db:\n  user: app   # login\n  password: two\napi:\n  token: t2\n"
        );
        // Adjacent lines: line merge collides, key merge does not.
        let ours2 = b_open
            .reencrypt(b"db:\n  user: app2   # login\n  password: one\napi:\n  token: t1\n")
            .expect("ours");
        let theirs2 = b_open
            .reencrypt(b"db:\n  user: app   # login\n  password: three\napi:\n  token: t1\n")
            .expect("theirs");
        let merged = m
            .merge("s.yaml", Some(&base), &ours2, &theirs2)
            .expect("claimed")
            .expect("clean");
        let docs = decrypt(&merged, Format::Yaml, &keys).expect("dec");
        let d = &docs.documents()[0];
        assert_eq!(
            d.get("db").and_then(|v| v.get("user")),
            Some(&Value::Str("app2".into()))
        );
        assert_eq!(
            d.get("db").and_then(|v| v.get("password")),
            Some(&Value::Str("three".into()))
        );
    }

    #[test]
    fn same_key_two_ways_names_the_key() {
        let (keys, params) = setup();
        let base = encrypt(b"db:\n  password: one\n", Format::Yaml, &params).expect("enc");
        let b_open = decrypt(&base, Format::Yaml, &keys).expect("dec");
        let ours = b_open.reencrypt(b"db:\n  password: two\n").expect("ours");
        let theirs = b_open
            .reencrypt(b"db:\n  password: three\n")
            .expect("theirs");
        let c = SopsMerge::new(keys)
            .merge("s.yaml", Some(&base), &ours, &theirs)
            .expect("claimed")
            .expect_err("conflict");
        assert_eq!(c.key.as_deref(), Some("db.password"));
    }

    #[test]
    fn plain_files_are_declined() {
        let (keys, _) = setup();
        assert!(SopsMerge::new(keys)
            .merge("a.yaml", Some(b"a: 1\n"), b"a: 2\n", b"a: 3\n")
            .is_none());
    }
}
