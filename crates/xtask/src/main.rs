//! berth's developer task runner (`cargo run -p berth-xtask -- <task>`). It only generates checked-in source files;
//! it is never linked into the berth binary and does no work at build time.
//!
//! Tasks:
//! * `gen-protobuf` — regenerate `crates/protobuf/src/schema_generated.rs` (see [`gen_protobuf`]).
//! * `gen-protobuf --check` — exit non-zero if the checked-in file differs from what the generator produces.

mod gen_protobuf;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["gen-protobuf"] => {
            let path = gen_protobuf::output_path();
            let text = gen_protobuf::generate()?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(())
        }
        ["gen-protobuf", "--check"] => {
            let path = gen_protobuf::output_path();
            let current = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            if current != gen_protobuf::generate()? {
                bail!(
                    "{} is stale: run `cargo run -p berth-xtask -- gen-protobuf`",
                    path.display()
                );
            }
            println!("{} is up to date", path.display());
            Ok(())
        }
        _ => bail!("usage: berth-xtask gen-protobuf [--check]"),
    }
}
