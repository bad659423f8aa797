//! Builds the eBPF programs (firewall-ebpf, on the nightly toolchain) and
//! leaves the object in OUT_DIR for `include_bytes_aligned!`.

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../firewall-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "firewall-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
