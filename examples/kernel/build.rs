//! Links the kernel build (target OS `none`) at 1 MiB with `kernel.ld`, as a
//! non-PIE ELF: QEMU's PVH loader places the segments at their physical
//! addresses and jumps to the 32-bit entry named in the ELF note. The host
//! build (the stub) is linked as usual.
#![allow(clippy::std_instead_of_core)]

fn main() {
    println!("cargo:rerun-if-changed=kernel.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/kernel.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    }
}
