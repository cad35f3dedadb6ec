//! Profiles: TOML files with `extends` inheritance, `[vars]` and `--var` overrides.
//!
//! Merge rules (documented in the README):
//! - tables merge key by key, recursively; the child's value wins for scalars;
//! - arrays are concatenated, parent first, duplicates dropped; an element written as
//!   `"!x"` removes `x` from what was inherited (e.g. `packages = ["!fail2ban"]`).
//!
//! Every file is first checked on its own against the schema, so an unknown key or a wrong
//! type is reported with the file, line, column and key path where it was written.

pub mod catalog;
pub mod lints;
pub mod load;
pub mod lock;
pub mod schema;
pub mod secrets;
pub mod sections;

pub use load::{apply_set, load, load_collecting, load_with_sets, merge_table, resolve};
pub use schema::{lints_default, Base, Image, Loaded, Overlays, Profile, Units};
