//! Links the EL2 image with `linker/hyp.ld`; see `linker/build_support.rs`.
include!("../linker/build_support.rs");

fn main() {
    link_bare_metal_image("hyp.ld");
}
