//! `jwd`: see README.md.

use clap::Parser;

/// jwd
#[derive(Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
}
