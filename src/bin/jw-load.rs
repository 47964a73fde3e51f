//! `jw-load`: see README.md.

use clap::Parser;

/// jw-load
#[derive(Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
}
