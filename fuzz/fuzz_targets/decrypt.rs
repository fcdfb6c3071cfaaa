//! The whole decrypt path on untrusted bytes, for every store, with the test vectors' key so
//! that inputs derived from the vectors reach value decryption and the MAC check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valuesfs::crypto::{decrypt, Format, Keyring};

const KEY: &str = include_str!("../../../shared/vectors/key.txt");

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::parse(KEY).expect("vector key");
    for format in [Format::Yaml, Format::Json, Format::Dotenv, Format::Binary] {
        if let Ok(opened) = decrypt(data, format, &keys) {
            // What decrypts must re-encrypt and read back to the same plaintext.
            let again = opened.reencrypt(&opened.plaintext).expect("re-encrypt");
            let back = decrypt(&again, format, &keys).expect("read back");
            assert_eq!(&back.plaintext[..], &opened.plaintext[..]);
        }
    }
});
