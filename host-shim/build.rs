//! Links the EL1 image with `linker/host-shim.ld`; see `linker/build_support.rs`.
include!("../linker/build_support.rs");

fn main() {
    link_bare_metal_image("host-shim.ld");
}
