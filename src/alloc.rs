//! The process's allocator, chosen once per process by its command.
//!
//! The one-shot codec commands (`decrypt`, `encrypt`, `edit`) on a large file use
//! mimalloc: on a 1 MiB values file glibc's malloc cost a quarter of the run (its frees,
//! and a page fault per 4 KiB of heap, where mimalloc maps transparent huge pages). On a
//! small file mimalloc's start (zeroing its first huge page) costs more than it saves
//! (0.3-0.5 ms per process, measured), so the size of the files named decides. The
//! daemon keeps glibc's malloc: with mimalloc its RSS after a 100 000-file mount went
//! from 35 to 69 MiB (its per-thread heaps hold freed memory), and it has an RSS target.
//!
//! Invariant: the choice only ever goes from glibc to mimalloc. A block is freed (or
//! grown) by the allocator that owns it: blocks allocated before the switch are glibc's,
//! and `mi_is_in_heap_region` tells the two apart once mimalloc is in use. (A thread that
//! frees a block made after the switch got it through some synchronisation, so it sees
//! the switch too: switching late is safe, just less useful.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use libmimalloc_sys as mi;

static MIMALLOC: AtomicBool = AtomicBool::new(false);

/// From this size of an input file on, mimalloc pays for its start.
const LARGE_INPUT: u64 = 64 << 10;

/// Switches to mimalloc if `args` (the process's, without the program name) run a
/// one-shot codec command on a large file. Call first thing in `main`.
pub fn choose(mut args: impl Iterator<Item = std::ffi::OsString>) {
    let codec = args
        .next()
        .and_then(|c| c.into_string().ok())
        .is_some_and(|c| matches!(c.as_str(), "decrypt" | "encrypt" | "edit"));
    // Any argument naming a large regular file: flags and their values stat as nothing.
    if codec
        && args.any(|a| std::fs::metadata(a).is_ok_and(|m| m.is_file() && m.len() >= LARGE_INPUT))
    {
        MIMALLOC.store(true, Ordering::Relaxed);
    }
}

pub struct Alloc;

fn on_mimalloc() -> bool {
    MIMALLOC.load(Ordering::Relaxed)
}

/// Whether mimalloc owns `p` (only asked once mimalloc is in use: before, nothing is).
unsafe fn owned_by_mimalloc(p: *mut u8) -> bool {
    on_mimalloc() && unsafe { mi::mi_is_in_heap_region(p as *const c_void) }
}

// SAFETY: every block goes back to the allocator that made it (see the module invariant);
// mimalloc's aligned calls honour the layout's alignment as `GlobalAlloc` requires.
unsafe impl GlobalAlloc for Alloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_mimalloc() {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if on_mimalloc() {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if unsafe { owned_by_mimalloc(ptr) } {
            unsafe { mi::mi_free(ptr as *mut c_void) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !on_mimalloc() {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if unsafe { owned_by_mimalloc(ptr) } {
            return unsafe {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            };
        }
        // A glibc block grown after the switch: move it to mimalloc.
        let new = unsafe { mi::mi_malloc_aligned(new_size, layout.align()) as *mut u8 };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                System.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_from_before_the_switch_are_freed_and_grown_by_their_own_allocator() {
        let before: Vec<u64> = (0..1000).collect();
        let mut grown: Vec<u8> = vec![7; 100];
        let big_before = vec![1u8; 1 << 20];
        // A small file, or another command, keeps glibc's malloc.
        let dir = std::env::temp_dir().join(format!("valuesfs-alloc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (small, large) = (dir.join("small.yaml"), dir.join("large.yaml"));
        std::fs::write(&small, b"a: 1\n").expect("small");
        std::fs::write(&large, vec![b'#'; LARGE_INPUT as usize]).expect("large");
        let args = |v: &[&std::path::Path]| {
            v.iter()
                .map(|p| p.as_os_str().to_owned())
                .collect::<Vec<_>>()
        };
        choose(args(&[std::path::Path::new("decrypt"), &small]).into_iter());
        assert!(!on_mimalloc(), "a small file");
        choose(args(&[std::path::Path::new("mount"), &large]).into_iter());
        assert!(!on_mimalloc(), "not a codec command");
        choose(
            args(&[
                std::path::Path::new("decrypt"),
                std::path::Path::new("--age"),
                &large,
            ])
            .into_iter(),
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(on_mimalloc());
        let after: Vec<u64> = (0..1000).collect();
        // Moved from glibc to mimalloc on growth, contents intact.
        grown.resize(1 << 16, 9);
        assert!(unsafe { owned_by_mimalloc(grown.as_mut_ptr()) });
        assert_eq!(&grown[..100], &[7; 100][..]);
        assert_eq!(grown[1 << 15], 9);
        assert!(!unsafe { owned_by_mimalloc(big_before.as_ptr() as *mut u8) });
        let aligned = Layout::from_size_align(4096, 4096).expect("layout");
        let p = unsafe { ALLOC_FOR_TESTS.alloc_zeroed(aligned) };
        assert!(!p.is_null() && (p as usize).is_multiple_of(4096));
        assert!(unsafe { std::slice::from_raw_parts(p, 4096) }
            .iter()
            .all(|b| *b == 0));
        unsafe { ALLOC_FOR_TESTS.dealloc(p, aligned) };
        assert_eq!(before, after);
        drop(before);
        drop(big_before);
        drop(grown);
        // The switch is one way.
        choose(std::iter::empty());
        assert!(on_mimalloc(), "the switch is one way");
    }

    static ALLOC_FOR_TESTS: Alloc = Alloc;
}
