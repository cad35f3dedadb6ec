//! `[users]`: the admin and runtime accounts, created offline in passwd, shadow, group,
//! gshadow, subuid and subgid. Passwords are locked: a console recovery password is a
//! per-node secret and never enters the image.

use super::{Checking, Module, Needs, Plan};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::users::Users;
use crate::support::rootfs::Rootfs;

/// The `[users]` module.
pub struct UsersModule;

impl Module for UsersModule {
    type Section = Users;
    const NAME: &'static str = "users";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Users> {
        plan.users.as_ref()
    }

    fn packages(&self, u: &Users) -> Needs {
        match &u.admin {
            Some(a) if a.sudo_nopasswd => vec![("users.admin.sudo_nopasswd", &["sudo"])],
            _ => vec![],
        }
    }

    fn validate(&self, u: &Users, _: &mut Checking) -> Result<()> {
        u.accounts().map(drop)
    }

    fn apply(&self, root: &Rootfs, u: &Users, _: &Plan) -> Result<Vec<String>> {
        create(root, u)
    }

    fn probes(&self, u: &Users, plan: &Plan) -> Vec<Probe> {
        user_probes(u, plan)
    }
}

/// Look up a user's uid and primary gid in the image's passwd.
pub fn lookup_user(root: &Rootfs, name: &str) -> Option<(u32, u32)> {
    let passwd = root.read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Look up a group's gid in the image's group file.
pub fn lookup_group(root: &Rootfs, name: &str) -> Option<u32> {
    let group = root.read_to_string("/etc/group").ok()?;
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

fn ids_in(text: &str, field: usize) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.split(':').nth(field)?.parse().ok())
        .collect()
}

fn append_line(root: &Rootfs, path: &str, line: &str, mode: u32) -> Result<()> {
    let mut t = root.read_to_string(path).unwrap_or_default();
    if !t.is_empty() && !t.ends_with('\n') {
        t.push('\n');
    }
    t.push_str(line);
    t.push('\n');
    root.write(path, t.as_bytes(), mode)
}

/// Add `user` to the member list of `group` in group and gshadow.
fn add_member(root: &Rootfs, group: &str, user: &str) -> Result<()> {
    for (path, field, mode) in [("/etc/group", 3, 0o644), ("/etc/gshadow", 3, 0o640)] {
        let Ok(text) = root.read_to_string(path) else {
            continue;
        };
        let mut found = false;
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                let mut f: Vec<String> = l.split(':').map(str::to_string).collect();
                if f.len() > field && f[0] == group {
                    found = true;
                    let mut members: Vec<&str> =
                        f[field].split(',').filter(|m| !m.is_empty()).collect();
                    if !members.contains(&user) {
                        members.push(user);
                    }
                    f[field] = members.join(",");
                    f.join(":")
                } else {
                    l.to_string()
                }
            })
            .collect();
        if !found && path == "/etc/group" {
            return Err(Error::config(format!("group `{group}` does not exist in the image (add the package that creates it, e.g. docker.io for `docker`)")));
        }
        root.write(path, (out.join("\n") + "\n").as_bytes(), mode)?;
        if path == "/etc/gshadow" {
            root.chown(path, 0, lookup_group(root, "shadow").unwrap_or(0))?;
        }
    }
    Ok(())
}

/// Create the accounts offline; returns the paths written.
fn create(root: &Rootfs, users: &Users) -> Result<Vec<String>> {
    let mut paths = vec![];
    for a in users.accounts()? {
        let passwd = root.read_to_string("/etc/passwd")?;
        let group = root.read_to_string("/etc/group")?;
        if lookup_user(root, &a.name).is_some() {
            return Err(Error::config(format!(
                "user `{}` already exists in the base image",
                a.name
            )));
        }
        let used_u = ids_in(&passwd, 2);
        let used_g = ids_in(&group, 2);
        let uid = match a.uid {
            Some(u) if used_u.contains(&u) => {
                return Err(Error::config(format!(
                    "uid {u} for `{}` is already taken in the image",
                    a.name
                )))
            }
            Some(u) => u,
            None => (1000..60000)
                .find(|u| !used_u.contains(u) && !used_g.contains(u))
                .unwrap_or(60000),
        };
        let gid = if used_g.contains(&uid) {
            (1000..60000).find(|g| !used_g.contains(g)).unwrap_or(60000)
        } else {
            uid
        };
        let home = format!("/home/{}", a.name);
        append_line(
            root,
            "/etc/passwd",
            &format!("{}:x:{uid}:{gid}:,,,:{home}:{}", a.name, a.shell),
            0o644,
        )?;
        // "!" = locked password; key login still works because sshd uses PAM (UsePAM yes).
        append_line(
            root,
            "/etc/shadow",
            &format!("{}:!::0:99999:7:::", a.name),
            0o640,
        )?;
        append_line(root, "/etc/group", &format!("{}:x:{gid}:", a.name), 0o644)?;
        append_line(root, "/etc/gshadow", &format!("{}:!::", a.name), 0o640)?;
        let shadow_gid = lookup_group(root, "shadow").unwrap_or(0);
        root.chown("/etc/shadow", 0, shadow_gid)?;
        root.chown("/etc/gshadow", 0, shadow_gid)?;
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = root.read_to_string(file).unwrap_or_default();
            let next = text
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
                })
                .max()
                .unwrap_or(100000)
                .max(100000);
            append_line(root, file, &format!("{}:{next}:65536", a.name), 0o644)?;
            paths.push(file.to_string());
        }
        for g in &a.groups {
            add_member(root, g, &a.name)?;
        }
        // Home from /etc/skel, owned by the user.
        root.mkdir_all(&home)?;
        for f in root.list("/etc/skel")? {
            let src = format!("/etc/skel/{f}");
            if let Ok(data) = root.read(&src) {
                let dst = format!("{home}/{f}");
                root.write(&dst, &data, 0o644)?;
                root.chown(&dst, uid, gid)?;
            }
        }
        if !a.keys.is_empty() {
            let ssh = format!("{home}/.ssh");
            root.mkdir_all(&ssh)?;
            root.chmod(&ssh, 0o700)?;
            root.chown(&ssh, uid, gid)?;
            let keys = format!("{ssh}/authorized_keys");
            root.write(&keys, (a.keys.join("\n") + "\n").as_bytes(), 0o600)?;
            root.chown(&keys, uid, gid)?;
            paths.push(keys);
        }
        root.chmod(&home, a.home_mode)?;
        root.chown(&home, uid, gid)?;
        if a.sudo {
            let f = format!("/etc/sudoers.d/50-clawimg-{}", a.name);
            // Image content: kept byte-for-byte as every earlier image has it.
            root.write(&f, format!("# Written by clawimg: passwordless sudo for the admin (key-only SSH, no password to type).\n{} ALL=(ALL:ALL) NOPASSWD:ALL\n", a.name).as_bytes(), 0o440)?;
            paths.push(f);
        }
        paths
            .extend(["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"].map(String::from));
        paths.push(home);
    }
    Ok(paths)
}

/// Probes: each user exists with its groups, home mode and sudo rights.
fn user_probes(users: &Users, plan: &Plan) -> Vec<Probe> {
    let mut v = vec![];
    let Ok(accounts) = users.accounts() else {
        return v;
    };
    for a in accounts {
        let n = &a.name;
        v.push(Probe::new(
            &format!("user {n} home mode"),
            &format!("sudo -n stat -c '%U %a' /home/{n}"),
            Expect::Equals(format!("{n} {:o}", a.home_mode)),
        ));
        for g in &a.groups {
            v.push(Probe::new(
                &format!("user {n} in group {g}"),
                &format!("id -nG {n} | tr ' ' '\\n' | grep -qx {g}"),
                Expect::Success,
            ));
        }
        if plan.console_passwords.iter().any(|u| u == n) {
            // Set on first boot when the node's secrets carry a hash; never empty.
            v.push(Probe::new(
                &format!("user {n} password locked or console-only"),
                &format!("sudo -n passwd -S {n} | awk '{{print $2}}' | grep -qx '[LP]'"),
                Expect::Success,
            ));
        } else {
            v.push(Probe::new(
                &format!("user {n} password locked"),
                &format!("sudo -n passwd -S {n} | awk '{{print $2}}'"),
                Expect::Equals("L".into()),
            ));
        }
        let sudo_cmd =
            format!("sudo -n -l -U {n} | grep -q 'NOPASSWD: ALL' && echo yes || echo no");
        v.push(Probe::new(
            &format!("user {n} sudo"),
            &sudo_cmd,
            Expect::Equals(if a.sudo { "yes" } else { "no" }.into()),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::sections::users::{Admin, Runtime};

    fn fixture() -> (tempfile::TempDir, Rootfs) {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        r.write("/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", 0o644)
            .unwrap();
        r.write("/etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o640)
            .unwrap();
        r.write(
            "/etc/group",
            b"root:x:0:\nshadow:x:42:\ndocker:x:110:\n",
            0o644,
        )
        .unwrap();
        r.write("/etc/gshadow", b"root:*::\nshadow:*::\ndocker:!::\n", 0o640)
            .unwrap();
        r.write("/etc/skel/.bashrc", b"# bashrc\n", 0o644).unwrap();
        (t, r)
    }

    #[test]
    fn creates_both_users_offline() {
        let (t, r) = fixture();
        let u = Users {
            admin: Some(Admin {
                groups: vec!["docker".into()],
                authorized_keys: vec!["ssh-ed25519 AAAA k".into()],
                ..Default::default()
            }),
            runtime: Some(Runtime {
                groups: vec!["docker".into()],
                ..Default::default()
            }),
        };
        create(&r, &u).unwrap();
        let passwd = r.read_to_string("/etc/passwd").unwrap();
        assert!(
            passwd.contains("adminclaw:x:1000:1000:,,,:/home/adminclaw:/bin/bash"),
            "{passwd}"
        );
        assert!(passwd.contains("openclaw:x:1001:1001:"), "{passwd}");
        assert!(r
            .read_to_string("/etc/group")
            .unwrap()
            .contains("docker:x:110:adminclaw,openclaw"));
        assert!(r
            .read_to_string("/etc/gshadow")
            .unwrap()
            .contains("docker:!::adminclaw,openclaw"));
        assert!(r
            .read_to_string("/etc/subuid")
            .unwrap()
            .contains("openclaw:165536:65536"));
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let md = std::fs::metadata(t.path().join("home/openclaw")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o750);
        assert_eq!(md.uid(), 1001);
        let k = std::fs::metadata(t.path().join("home/adminclaw/.ssh/authorized_keys")).unwrap();
        assert_eq!(k.permissions().mode() & 0o777, 0o600);
        assert!(r
            .read_to_string("/etc/sudoers.d/50-clawimg-adminclaw")
            .unwrap()
            .contains("NOPASSWD:ALL"));
        assert!(!r.exists("/etc/sudoers.d/50-clawimg-openclaw"));
    }

    #[test]
    fn missing_group_is_a_config_error() {
        let (_t, r) = fixture();
        let u = Users {
            admin: Some(Admin {
                groups: vec!["nosuch".into()],
                ..Default::default()
            }),
            runtime: None,
        };
        assert!(create(&r, &u).unwrap_err().message.contains("nosuch"));
    }
}
