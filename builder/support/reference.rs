//! Container image references (`[registry/]repository[:tag][@digest]`), normalized the way
//! the Docker CLI does it, and digests.
//!
//! Grammar (the distribution reference grammar Docker uses):
//! - `name[:tag][@digest]`; `name` is `[domain/]path`, at most 255 characters once
//!   normalized;
//! - `domain` is a host (`a.b-c.d`, or `[v6:addr]`) with an optional `:port`;
//! - `path` is `/`-separated components of lowercase letters and digits, joined inside a
//!   component by one `.`, one or two `_`, or any number of `-`;
//! - `tag` is a word character followed by up to 127 word characters, `.` or `-`;
//! - `digest` is `algorithm:hex` (clawimg pins `sha256:` and 64 lowercase hex digits).
//!
//! Normalization: the first path component is a registry host when it contains `.` or
//! `:`, is `localhost`, or has uppercase letters; otherwise the name is on Docker Hub
//! (`docker.io`), where a single component is an official image under `library/`.
//! `index.docker.io` (the legacy name) is `docker.io`. A 64-hex-digit name is refused (it
//! reads as an image id).

use serde::Serialize;

/// The registry name Docker Hub's images are written under.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy name, normalized to [`DOCKER_HUB`].
pub const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Longest name (`registry/repository`) the grammar allows.
pub const NAME_MAX: usize = 255;

/// A parsed image reference: `[registry/]repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (`docker.io` when none is written).
    pub registry: String,
    /// Repository path (`library/caddy` for `caddy`).
    pub repository: String,
    /// Tag, if written.
    pub tag: Option<String>,
    /// Digest, if written.
    pub digest: Option<String>,
}

impl Reference {
    /// Parse a reference the way Docker normalizes it.
    pub fn parse(s: &str) -> std::result::Result<Reference, String> {
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?} is not an image reference: expected e.g. `ghcr.io/org/app:1.2.3` or `caddy:2.8`"
            ));
        }
        if s.len() == 64
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(format!(
                "`{s}` reads as an image id (64 hex digits), not a repository name"
            ));
        }
        let (domain, remainder) = split_domain(s);
        let remainder = remainder.as_str();
        let (rest, digest) = match remainder.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (remainder, None),
        };
        // The tag is after the last ':' that follows the last '/' (the domain's port is
        // not in `rest`).
        let (path, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if path.to_lowercase() != path {
            return Err(format!("repository name `{path}` must be lowercase"));
        }
        check_domain(&domain)?;
        check_path(path)?;
        let name_len = domain.len() + 1 + path.len();
        if name_len > NAME_MAX {
            return Err(format!(
                "repository name `{domain}/{path}` is {name_len} characters; at most {NAME_MAX} are allowed"
            ));
        }
        if let Some(t) = &tag {
            check_tag(t)?;
        }
        if let Some(d) = &digest {
            check_digest(d)?;
        }
        Ok(Reference {
            registry: domain,
            repository: path.to_string(),
            tag,
            digest,
        })
    }

    /// `registry/repository` (fully qualified name).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the image is on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }
}

impl std::fmt::Display for Reference {
    /// The fully qualified form, `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Split off the registry host as Docker does; the remainder keeps tag and digest.
fn split_domain(s: &str) -> (String, String) {
    let Some((first, rest)) = s.split_once('/') else {
        return (DOCKER_HUB.into(), format!("library/{s}"));
    };
    let (domain, remote) = if first == DOCKER_HUB_LEGACY {
        (DOCKER_HUB, rest)
    } else if first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first {
        (first, rest)
    } else {
        (DOCKER_HUB, s)
    };
    if domain == DOCKER_HUB && !remote.contains('/') {
        return (domain.into(), format!("library/{remote}"));
    }
    (domain.into(), remote.into())
}

/// `host[:port]`: dot-separated labels of letters, digits and inner hyphens, or a
/// bracketed IPv6 address; the port is digits.
fn check_domain(d: &str) -> std::result::Result<(), String> {
    let bad = || {
        Err(format!(
            "registry `{d}` is not a host name or [IPv6] address with an optional :port"
        ))
    };
    let (host, port) = if let Some(v6) = d.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad();
        };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return bad();
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return bad(),
            },
        }
    } else {
        let (h, p) = match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        };
        (Some(h), p)
    };
    if let Some(h) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !h.split('.').all(label_ok) {
            return bad();
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            return bad();
        }
    }
    Ok(())
}

/// `/`-separated components: lowercase alphanumerics joined by `.`, `_`, `__` or `-`+.
fn check_path(p: &str) -> std::result::Result<(), String> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
            if !ok {
                return false;
            }
        }
        true
    };
    if p.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "repository `{p}`: each `/`-separated part must be lowercase letters and digits, joined by '.', '_', '__' or '-'"
        ))
    }
}

/// A word character, then up to 127 word characters, `.` or `-`.
fn check_tag(t: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = t.len() <= 128
        && t.chars().next().is_some_and(word)
        && t.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag `{t}` must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

/// `algorithm:hex`; clawimg verifies sha256 only.
fn check_digest(d: &str) -> std::result::Result<(), String> {
    if valid_digest(d) {
        return Ok(());
    }
    match d.split_once(':') {
        Some((alg, _)) if alg != "sha256" && !alg.is_empty() => {
            Err(format!("digest `{d}`: only sha256 digests are supported"))
        }
        _ => Err(format!(
            "`{d}` is not a sha256 digest (sha256: and 64 lowercase hex digits)"
        )),
    }
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `v8`.
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `linux/amd64` or `linux/arm64/v8`.
    pub fn parse(s: &str) -> std::result::Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let good =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if good(os) && good(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if good(os) && good(arch) && good(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "expected os/architecture[/variant] such as \"linux/amd64\", found {s:?}"
            )),
        }
    }

    /// Whether an index entry's `os`, `architecture` and `variant` are this platform (a
    /// platform without a variant matches every variant).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        os == self.os
            && architecture == self.architecture
            && self.variant.as_deref().is_none_or(|v| variant == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (r.registry, r.repository, r.tag, r.digest)
    }

    /// The normalization table of the reference grammar: what each written form means.
    #[test]
    fn names_normalize_like_docker() {
        let cases: &[(&str, (&str, &str))] = &[
            ("ubuntu", ("docker.io", "library/ubuntu")),
            ("library/ubuntu", ("docker.io", "library/ubuntu")),
            ("docker.io/ubuntu", ("docker.io", "library/ubuntu")),
            ("docker.io/library/ubuntu", ("docker.io", "library/ubuntu")),
            ("index.docker.io/ubuntu", ("docker.io", "library/ubuntu")),
            (
                "index.docker.io/library/ubuntu",
                ("docker.io", "library/ubuntu"),
            ),
            (
                "index.docker.io/docker/docker",
                ("docker.io", "docker/docker"),
            ),
            ("docker/docker", ("docker.io", "docker/docker")),
            ("fooo/bar", ("docker.io", "fooo/bar")),
            ("other/library", ("docker.io", "other/library")),
            ("library/foo/bar", ("docker.io", "library/foo/bar")),
            (
                "docker.io/library/foo/bar",
                ("docker.io", "library/foo/bar"),
            ),
            ("store/foo/bar", ("docker.io", "store/foo/bar")),
            ("test_com/foo", ("docker.io", "test_com/foo")),
            (
                "ubuntu-12.04-base",
                ("docker.io", "library/ubuntu-12.04-base"),
            ),
            ("192.168.0.1", ("docker.io", "library/192.168.0.1")),
            ("localhost/foo", ("localhost", "foo")),
            ("localhost/library/debian", ("localhost", "library/debian")),
            ("localhost:5000/foo", ("localhost:5000", "foo")),
            (
                "127.0.0.1:5000/docker/docker",
                ("127.0.0.1:5000", "docker/docker"),
            ),
            ("127.0.0.1:5000/debian", ("127.0.0.1:5000", "debian")),
            ("192.168.0.1:8/debian", ("192.168.0.1:8", "debian")),
            ("test.com/foo", ("test.com", "foo")),
            ("test.com:8080/foo", ("test.com:8080", "foo")),
            ("test-com:8080/foo", ("test-com:8080", "foo")),
            ("xn--n3h.com:18080/foo", ("xn--n3h.com:18080", "foo")),
            ("example.com/privatebase", ("example.com", "privatebase")),
            ("ghcr.io/org/app", ("ghcr.io", "org/app")),
            ("quay.io/org/app", ("quay.io", "org/app")),
            ("[fc00::1]:5000/docker", ("[fc00::1]:5000", "docker")),
            (
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
                ("[fc00:1:2:3:4:5:6:7]:5000", "library/debian"),
            ),
            // An uppercase first component can only be a host (repositories are lowercase).
            ("Docker/docker", ("Docker", "docker")),
            ("FOO/bar", ("FOO", "bar")),
            ("LOCALDOMAIN/debian", ("LOCALDOMAIN", "debian")),
            // 64 hex digits are a repository name once a registry is written.
            (
                "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
                (
                    "docker.io",
                    "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
                ),
            ),
            (
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                (
                    "docker.io",
                    "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                ),
            ),
            ("docker-rules/docker", ("docker.io", "docker-rules/docker")),
            (
                "docker---rules/docker",
                ("docker.io", "docker---rules/docker"),
            ),
            ("dock__er/docker", ("docker.io", "dock__er/docker")),
            ("d/docker", ("docker.io", "d/docker")),
            ("jess/t", ("docker.io", "jess/t")),
        ];
        for (input, (reg, repo)) in cases {
            let (r, p, _, _) = parts(input);
            assert_eq!((r.as_str(), p.as_str()), (*reg, *repo), "{input}");
        }
    }

    #[test]
    fn tags_and_digests() {
        assert_eq!(
            parts("ubuntu:24.04"),
            (
                "docker.io".into(),
                "library/ubuntu".into(),
                Some("24.04".into()),
                None
            )
        );
        // A port is not a tag; a tag after a port is.
        assert_eq!(parts("localhost:5000/foo").2, None);
        assert_eq!(parts("localhost:5000/foo:1.0").2.as_deref(), Some("1.0"));
        // Without a '/', `localhost:5000` is the Docker Hub image `localhost`, tag 5000.
        assert_eq!(
            parts("localhost:5000"),
            (
                "docker.io".into(),
                "library/localhost".into(),
                Some("5000".into()),
                None
            )
        );
        assert_eq!(
            parts("192.168.0.1:80"),
            (
                "docker.io".into(),
                "library/192.168.0.1".into(),
                Some("80".into()),
                None
            )
        );
        assert_eq!(
            parts(&format!("foo.com:8080/bar/baz@{D}")),
            (
                "foo.com:8080".into(),
                "bar/baz".into(),
                None,
                Some(D.into())
            )
        );
        assert_eq!(
            parts(&format!("foo/bar:tag@{D}")),
            (
                "docker.io".into(),
                "foo/bar".into(),
                Some("tag".into()),
                Some(D.into())
            )
        );
        let r = Reference::parse(&format!("busybox:latest@{D}")).unwrap();
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox:latest@{D}")
        );
        assert_eq!(parts(&format!("redis@{D}")).3.as_deref(), Some(D));
        assert_eq!(parts("a:_x").2.as_deref(), Some("_x"));
        assert!(Reference::parse(&format!("a:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn invalid_references_are_refused() {
        let long_ns = format!("{}/docker", "this_is_not_a_valid_namespace".repeat(9));
        let cases = [
            "",
            " ",
            "a b",
            "https://github.com/docker/docker",
            "docker/Docker",
            "docker.io/docker/Docker",
            "UPPER/Case",
            "Ubuntu",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker-/docker",
            "-docker-/docker",
            "docker///docker",
            "docker.io/docker///docker",
            "docker/",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "dock___er/docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "$$$",
            "::",
            "docker://quay.io/library/foo:bar",
            "foo:-tag",
            "foo:.tag",
            "foo:",
            "foo:a/b",
            "foo@sha256:12",
            "foo@sha256:86E0E091D0DA6BDE2456DBB48306F3956BBEB2EAE1B5B9A43045843F69FE4AAA",
            "foo@md5:86e0e091d0da6bde2456dbb48306f395",
            "foo@",
            "host:port/foo",
            "ex ample.com/foo",
        ];
        for c in cases.iter().copied().chain([long_ns.as_str()]) {
            assert!(Reference::parse(c).is_err(), "{c:?} must be refused");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        // The 255-character limit counts the normalized name.
        let at_limit = "a".repeat(NAME_MAX - "docker.io/library/".len());
        assert!(Reference::parse(&at_limit).is_ok());
        assert!(Reference::parse(&format!("{at_limit}b")).is_err());
        let e = Reference::parse("docker/Docker").unwrap_err();
        assert!(e.contains("lowercase"), "{e}");
    }
}
