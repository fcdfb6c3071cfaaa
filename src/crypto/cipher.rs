//! sops's value cipher: AES-256-GCM with a 32-byte IV, the tag kept apart, and the
//! path of keys as additional data. `ENC[AES256_GCM,data:..,iv:..,tag:..,type:..]`.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;

type Gcm32 = AesGcm<Aes256, U32>;

/// The pieces of an `ENC[...]` string.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub data: Vec<u8>,
    pub iv: [u8; 32],
    pub tag: [u8; 16],
    pub kind: String,
}

/// Does this string look like a sops envelope (`ENC[AES256_GCM,`)?
pub fn is_envelope(s: &str) -> bool {
    s.starts_with("ENC[AES256_GCM,")
}

/// Parse an envelope strictly: every field present, valid base64, a 32-byte IV and a
/// 16-byte tag, nothing after the closing bracket.
pub fn parse_envelope(s: &str) -> Result<Envelope, String> {
    let inner = s
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("not an ENC[AES256_GCM,...] value")?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    // Split on bytes with memchr: `str::split` with a char pattern costs more here than
    // the decryption of a short value.
    let mut rest = Some(inner);
    while let Some(r) = rest {
        let (part, next) = match memchr::memchr(b',', r.as_bytes()) {
            Some(i) => (&r[..i], Some(&r[i + 1..])),
            None => (r, None),
        };
        rest = next;
        let colon = memchr::memchr(b':', part.as_bytes()).ok_or("envelope field without ':'")?;
        let (k, v) = (&part[..colon], &part[colon + 1..]);
        let slot = match k {
            "data" => &mut data,
            "iv" => &mut iv,
            "tag" => &mut tag,
            "type" => &mut kind,
            _ => return Err(format!("unknown envelope field {k:?}")),
        };
        if slot.replace(v).is_some() {
            return Err(format!("duplicate envelope field {k:?}"));
        }
    }
    fn field<'a>(name: &str, v: Option<&'a str>) -> Result<&'a str, String> {
        v.ok_or_else(|| format!("envelope without {name}"))
    }
    let not_b64 = |name: &str| format!("envelope {name} is not base64");
    let data = B64
        .decode(field("data", data)?)
        .map_err(|_| not_b64("data"))?;
    // The IV and tag decode into fixed buffers (with room for base64's size estimate):
    // thousands of values per file, no allocation for either.
    let mut iv_buf = [0u8; 48];
    let n = B64
        .decode_slice(field("iv", iv)?, &mut iv_buf)
        .map_err(|_| not_b64("iv"))?;
    let iv: [u8; 32] = iv_buf[..n]
        .try_into()
        .map_err(|_| format!("envelope IV is {n} bytes, expected 32"))?;
    let mut tag_buf = [0u8; 32];
    let n = B64
        .decode_slice(field("tag", tag)?, &mut tag_buf)
        .map_err(|_| not_b64("tag"))?;
    let tag: [u8; 16] = tag_buf[..n]
        .try_into()
        .map_err(|_| format!("envelope tag is {n} bytes, expected 16"))?;
    let env = Envelope {
        data,
        iv,
        tag,
        kind: kind.ok_or("envelope without type")?.to_string(),
    };
    Ok(env)
}

/// A data key with its AES key schedule expanded once (a file has thousands of values).
pub struct ValueKey {
    gcm: Gcm32,
}

impl ValueKey {
    pub fn new(key: &[u8; 32]) -> ValueKey {
        ValueKey {
            gcm: Gcm32::new(key.into()),
        }
    }

    /// Encrypt with a fresh random IV.
    pub fn seal(&self, plain: &[u8], aad: &str, kind: &str) -> String {
        let mut iv = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut iv);
        seal_with(&self.gcm, &iv, plain, aad, kind)
    }

    /// Decrypt and authenticate.
    pub fn open(&self, env: &Envelope, aad: &str) -> Option<Vec<u8>> {
        open_with(&self.gcm, env, aad)
    }

    /// Decrypt and authenticate in place: the envelope's buffer becomes the plaintext.
    pub fn open_owned(&self, mut env: Envelope, aad: &str) -> Option<(String, Vec<u8>)> {
        self.gcm
            .decrypt_in_place_detached(
                (&env.iv).into(),
                aad.as_bytes(),
                &mut env.data,
                (&env.tag).into(),
            )
            .ok()?;
        Some((env.kind, env.data))
    }
}

/// Encrypt `plain` under `key` with additional data `aad`; a fresh random IV.
pub fn seal(key: &[u8; 32], plain: &[u8], aad: &str, kind: &str) -> String {
    ValueKey::new(key).seal(plain, aad, kind)
}

fn seal_with(gcm: &Gcm32, iv: &[u8; 32], plain: &[u8], aad: &str, kind: &str) -> String {
    let out = gcm
        .encrypt(
            iv.into(),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let (data, tag) = out.split_at(out.len() - 16);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
        B64.encode(data),
        B64.encode(iv),
        B64.encode(tag),
        kind
    )
}

/// Decrypt and authenticate an envelope.
pub fn open(key: &[u8; 32], env: &Envelope, aad: &str) -> Option<Vec<u8>> {
    ValueKey::new(key).open(env, aad)
}

fn open_with(gcm: &Gcm32, env: &Envelope, aad: &str) -> Option<Vec<u8>> {
    let mut buf = env.data.clone();
    gcm.decrypt_in_place_detached(
        (&env.iv).into(),
        aad.as_bytes(),
        &mut buf,
        (&env.tag).into(),
    )
    .ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = [7u8; 32];
        let s = seal(&key, b"hello", "a:b:", "str");
        let env = parse_envelope(&s).expect("parses");
        assert_eq!(open(&key, &env, "a:b:").as_deref(), Some(&b"hello"[..]));
        assert_eq!(open(&key, &env, "a:c:"), None);
        assert_eq!(open(&[8u8; 32], &env, "a:b:"), None);
    }

    #[test]
    fn strict_envelope_parsing() {
        assert!(parse_envelope("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]").is_err());
        assert!(parse_envelope("ENC[AES256_GCM,data:AA==]").is_err());
        assert!(parse_envelope("nope").is_err());
    }
}
