//! The `valuesfs` command line.

mod alloc;
mod cli;

#[global_allocator]
static ALLOC: alloc::Alloc = alloc::Alloc;

fn main() {
    alloc::choose(std::env::args_os().skip(1));
    std::process::exit(cli::run());
}
