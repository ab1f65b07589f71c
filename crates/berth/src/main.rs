//! The `berth` binary: parses flags, sets up tracing and starts the roles. (Being implemented.)

fn main() {}
