//! The host build of the example runs the same checks as the kernel build
//! and must exit 0 (CI also runs the kernel build itself).

#[test]
fn the_host_build_passes_every_check() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mpsafe-bare-metal"))
        .output()
        .expect("run the example");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
