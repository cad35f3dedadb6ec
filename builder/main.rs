//! The `clawimg` binary.

fn main() {
    std::process::exit(clawimg::cli::main());
}
