//! The `valuesfs` command line.

mod alloc;
mod cli;

#[global_allocator]
static ALLOC: alloc::Alloc = alloc::Alloc;

fn main() {
    alloc::choose(std::env::args_os().nth(1).as_deref());
    std::process::exit(cli::run());
}
