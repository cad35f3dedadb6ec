//! `clawimg seal` and `clawimg secrets template|bundle`.

use super::args::{Global, SealArgs};
use crate::error::Result;
use crate::ops::seal;
use crate::profile;
use std::path::Path;

/// `seal IMAGE --secrets FILE --node NAME -o NODE.raw`.
pub(super) fn seal(a: SealArgs) -> Result<i32> {
    let req = seal::SealRequest {
        image: a.image,
        secrets: a.secrets,
        node: a.node,
        output: a.output,
    };
    let out = seal::seal(&req)?;
    println!("sealed node {} -> {}", req.node, out.display());
    Ok(0)
}

/// `secrets template PROFILE`: an empty, documented secrets file on stdout.
pub(super) fn template(g: &Global, name: &str) -> Result<i32> {
    let l = profile::load(name, &g.profiles_dir, &[])?;
    print!(
        "{}",
        profile::secrets::template(&l.name, &l.profile.secrets)
    );
    Ok(0)
}

/// `secrets bundle IMAGE --secrets FILE [--node NAME] -o FILE`.
pub(super) fn bundle(
    image: &Path,
    secrets: &Path,
    node: Option<&str>,
    output: &Path,
) -> Result<i32> {
    seal::write_bundle(image, secrets, node, output)?;
    println!("wrote {} (user data; mode 0600)", output.display());
    Ok(0)
}
