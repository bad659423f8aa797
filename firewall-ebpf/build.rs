use which::which;

/// Rebuild the programs when bpf-linker changes: the object embeds its output.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found; run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
