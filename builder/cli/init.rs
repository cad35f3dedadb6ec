//! `clawimg init NAME --from PROFILE`: scaffold a site profile.

use super::args::{Global, InitArgs};
use crate::error::Result;
use crate::ops::init::{self, InitOptions};

/// Write the profile and say what to do next.
pub(super) fn init(g: &Global, a: InitArgs) -> Result<i32> {
    let r = init::init(&InitOptions {
        name: a.name.clone(),
        from: a.from,
        profiles_dir: g.profiles_dir.clone(),
        admin_key: a.admin_key,
        find_key: !a.no_key,
        domain: a.domain,
        reverse_proxy: a.reverse_proxy,
        admin_cidr: a.admin_cidr,
        gateway_cpus: a.gateway_cpus,
        gateway_memory: a.gateway_memory,
        force: a.force,
    })?;
    println!("wrote {}", r.path.display());
    match &r.key_from {
        Some(k) => println!("  admin key from {}", k.display()),
        None => println!(
            "  no admin key: add yours under [users.admin] (the build refuses without one)"
        ),
    }
    for k in &r.open {
        println!("  left commented: {k}");
    }
    let pd = if g.profiles_dir == std::path::Path::new("profiles") {
        String::new()
    } else {
        format!(" --profiles-dir {}", g.profiles_dir.display())
    };
    println!("next: clawimg check {}{pd}", a.name);
    println!("then: clawimg build {}{pd}", a.name);
    Ok(0)
}
