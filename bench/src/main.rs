//! `jobfleet-bench`: see docs/benchmark.md.

fn main() {}
