//! In-process codec timing: decrypt and re-encrypt every file of a directory of SOPS files,
//! several rounds, as the mount does (no process start per file). Used by bench/codec.sh.
//!
//! Usage: codec_bench DIR ROUNDS   (identities from SOPS_AGE_KEY_FILE)

use std::time::Instant;

use valuesfs::crypto::{decrypt, Format, Keyring};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: codec_bench DIR ROUNDS"))?;
    let rounds: usize = args.next().unwrap_or_else(|| "5".into()).parse()?;
    let keys = Keyring::from_env()?;
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        files.push((Format::from_path(&p.to_string_lossy()), std::fs::read(&p)?));
    }
    let (mut dec_best, mut enc_best) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let t = Instant::now();
        let opened: Vec<_> = files
            .iter()
            .map(|(f, b)| decrypt(b, *f, &keys))
            .collect::<Result<_, _>>()?;
        let dec = t.elapsed().as_secs_f64() / files.len() as f64;
        let t = Instant::now();
        for o in &opened {
            // An edit of one value, as a write through the mount would do.
            let mut text = o.plaintext.to_vec();
            text.extend_from_slice(b"# edited\n");
            o.reencrypt(&text)?;
        }
        let enc = t.elapsed().as_secs_f64() / files.len() as f64;
        dec_best = dec_best.min(dec);
        enc_best = enc_best.min(enc);
    }
    println!("decrypt_us {:.1}", dec_best * 1e6);
    println!("encrypt_us {:.1}", enc_best * 1e6);
    Ok(())
}
