//! Link the command-line binary as a position-dependent executable: a PIE of this size
//! spends most of a short run (`valuesfs decrypt` as a git textconv, in CI loops) in the
//! dynamic loader applying ~37 000 relative relocations and taking copy-on-write faults.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
