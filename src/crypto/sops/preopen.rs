//! A large file's envelopes opened on two threads ahead of the walk that checks them.
//!
//! The walk (`Decrypter`) decides what is encrypted, computes the MAC and reports errors;
//! this only saves it the AES-GCM work. Invariant: a pre-opened plaintext is handed out
//! only for the very string it was made from (same address in the same immutable tree)
//! under the same additional data. Anything else (a failure, a string not gathered) is
//! opened by the walk itself, so results and error messages do not change.

use super::super::cipher::{is_envelope, parse_envelope, ValueKey};
use super::super::value::{Key, Value};

/// Below this many envelopes a second thread costs more than it saves.
const MIN_ENVELOPES: usize = 4096;

struct Item<'t> {
    text: &'t str,
    /// Where its additional data stands in `PreOpened::aads`.
    aad: std::ops::Range<usize>,
    /// The envelope's type and plaintext, once opened.
    opened: Option<(String, Vec<u8>)>,
}

/// Pre-opened envelopes in the walk's order, consumed front to back.
pub(super) struct PreOpened<'t> {
    items: Vec<Item<'t>>,
    /// Every item's additional data, one after the other (one allocation, not one each).
    aads: String,
    next: usize,
}

impl<'t> PreOpened<'t> {
    pub(super) fn none() -> PreOpened<'t> {
        PreOpened {
            items: Vec::new(),
            aads: String::new(),
            next: 0,
        }
    }

    /// Gathers every envelope of `docs` with the additional data the walk will use for
    /// it (values and comments alike: the path of mapping keys above it) and opens them,
    /// half on another thread. Small files get nothing.
    pub(super) fn open(docs: &'t [Value], vk: &ValueKey) -> PreOpened<'t> {
        let mut g = Gather {
            items: Vec::new(),
            aads: String::new(),
            path: String::new(),
        };
        for d in docs {
            g.value(d);
        }
        let Gather {
            mut items, aads, ..
        } = g;
        if items.len() < MIN_ENVELOPES {
            return PreOpened::none();
        }
        let half = items.len() / 2;
        let (first, second) = items.split_at_mut(half);
        let other_done = std::thread::scope(|s| {
            let other = std::thread::Builder::new()
                .name("valuesfs-open".into())
                .spawn_scoped(s, || open_all(second, &aads, vk));
            open_all(first, &aads, vk);
            other.is_ok_and(|h| h.join().is_ok())
        });
        if !other_done {
            // No thread to be had (or it failed): this one does that half too.
            open_all(&mut items[half..], &aads, vk);
        }
        PreOpened {
            items,
            aads,
            next: 0,
        }
    }

    /// The type and plaintext of `text` (a string of the tree given to `open`) under
    /// additional data `path`, if it was opened ahead.
    pub(super) fn take(&mut self, text: &str, path: &[String]) -> Option<(String, Vec<u8>)> {
        // The walk asks for a subset of the gathered strings, in the same order.
        let at = self.items[self.next..]
            .iter()
            .position(|i| std::ptr::eq(i.text.as_ptr(), text.as_ptr()))?;
        let item = &mut self.items[self.next + at];
        self.next += at + 1;
        if item.text.len() != text.len() || !aad_is(&self.aads[item.aad.clone()], path) {
            return None;
        }
        item.opened.take()
    }
}

fn open_all(items: &mut [Item<'_>], aads: &str, vk: &ValueKey) {
    for i in items {
        if let Ok(env) = parse_envelope(i.text) {
            i.opened = vk.open_owned(env, &aads[i.aad.clone()]);
        }
    }
}

struct Gather<'t> {
    items: Vec<Item<'t>>,
    aads: String,
    /// The current additional data: mapping keys above, each followed by ':'.
    path: String,
}

impl<'t> Gather<'t> {
    /// The walk's order: mapping entries and list items as they stand, comments included.
    fn value(&mut self, v: &'t Value) {
        match v {
            Value::Map(entries) => {
                for (k, val) in entries {
                    match k {
                        Key::Comment(c) => self.push(c),
                        Key::Name(n) => {
                            let len = self.path.len();
                            self.path.push_str(n);
                            self.path.push(':');
                            self.value(val);
                            self.path.truncate(len);
                        }
                    }
                }
            }
            Value::Seq(list) => {
                for item in list {
                    self.value(item);
                }
            }
            Value::Str(s) | Value::Comment(s) => self.push(s),
            _ => {}
        }
    }

    fn push(&mut self, text: &'t str) {
        if is_envelope(text) {
            let start = self.aads.len();
            if self.path.is_empty() {
                self.aads.push(':');
            } else {
                self.aads.push_str(&self.path);
            }
            self.items.push(Item {
                text,
                aad: start..self.aads.len(),
                opened: None,
            });
        }
    }
}

/// `aad == path.join(":") + ":"`, without building the string.
fn aad_is(aad: &str, path: &[String]) -> bool {
    let mut rest = aad;
    for p in path {
        match rest
            .strip_prefix(p.as_str())
            .and_then(|r| r.strip_prefix(':'))
        {
            Some(r) => rest = r,
            None => return false,
        }
    }
    if path.is_empty() {
        return aad == ":";
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additional_data_matches_only_its_own_path() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(aad_is("a:b:", &p(&["a", "b"])));
        assert!(aad_is(":", &p(&[])));
        assert!(!aad_is("a:b:", &p(&["a"])));
        assert!(!aad_is("a:", &p(&["a", "b"])));
        assert!(!aad_is("", &p(&[])));
        // sops joins with ':' and so cannot tell these apart either.
        assert!(aad_is("a:b:", &p(&["a:b"])));
        assert!(!aad_is("ab:", &p(&["a", "b"])));
    }
}
