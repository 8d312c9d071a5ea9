//! cargo xtask (placeholder while the foundation is written).
fn main() {}
