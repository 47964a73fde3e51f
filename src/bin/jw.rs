//! `jw`: see README.md.

use clap::Parser;

/// jw
#[derive(Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
}
