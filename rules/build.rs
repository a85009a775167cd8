//! The built-in pack is embedded with `include_dir!`; recompile when any rule file changes,
//! is added or is removed.

fn main() {
    println!("cargo:rerun-if-changed=pack");
}
