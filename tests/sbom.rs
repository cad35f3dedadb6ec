//! The SBOM document against the CycloneDX 1.5 JSON schema, checked by CycloneDX's own
//! maintained validator (cyclonedx-python-lib, installed by .ci/setup), and broken copies
//! refused by it. Needs no root, network or QEMU; the SBOM of a real build is validated in
//! tests/images.rs (explain_names_the_module_that_wrote_each_path), its bytes across
//! rebuilds in tests/repro.rs.

mod common;
use clawimg::image::manifest::ImageEntry;
use clawimg::image::sbom::{render, SbomInput};
use clawimg::profile::lock::Resolved;
use common::*;

fn document() -> String {
    let deb = |name: &str, version: &str, arch: &str, fill: char| Resolved {
        name: name.into(),
        version: version.into(),
        arch: arch.into(),
        sha256: fill.to_string().repeat(64),
    };
    let debs = [
        deb("libstdc++6", "14.2.0-4ubuntu2~24.04", "amd64", 'a'),
        deb("bash", "5.2.21-2ubuntu4", "amd64", 'b'),
        deb("tzdata", "2024a-3ubuntu1.1", "all", 'c'),
        deb("openssh-server", "1:9.6p1-3ubuntu13.5", "amd64", 'd'),
    ];
    let images = [ImageEntry {
        name: "registry_stand_in".into(),
        reference: "127.0.0.1:5000/clawimg/busybox:1.0".into(),
        digest: format!("sha256:{}", "e".repeat(64)),
        manifest_digest: format!("sha256:{}", "f".repeat(64)),
        image_id: format!("sha256:{}", "1".repeat(64)),
        platform: "linux/amd64".into(),
        archive: "/var/lib/clawimg/images/busybox.tar".into(),
        archive_sha256: "2".repeat(64),
        bytes: 4096,
    }];
    render(&SbomInput {
        profile: "demo",
        input_hash: &"3".repeat(64),
        source_date_epoch: 1_714_003_200,
        tool_version: env!("CARGO_PKG_VERSION"),
        debs: &debs,
        images: &images,
    })
    .unwrap()
}

/// A change that makes a valid document invalid.
type Breakage = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn sbom_passes_the_cyclonedx_schema_and_broken_copies_do_not() {
    let dir = scratch("sbom-schema");
    let good = dir.join("demo.cdx.json");
    let text = document();
    std::fs::write(&good, &text).unwrap();
    cyclonedx_validate(&good).unwrap_or_else(|e| panic!("valid SBOM refused:\n{e}\n{text}"));

    // The validator must be able to say no: an unknown component type, a hash that is not
    // hex, a key the schema does not define, a serial number that is no UUID.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let broken: [(&str, Breakage); 4] = [
        (
            "type",
            Box::new(|v| v["components"][0]["type"] = "deb-package".into()),
        ),
        (
            "hash",
            Box::new(|v| v["components"][1]["hashes"][0]["content"] = "not-hex".into()),
        ),
        (
            "unknown key",
            Box::new(|v| v["components"][2]["arch"] = "all".into()),
        ),
        (
            "serial",
            Box::new(|v| v["serialNumber"] = "clawimg-1".into()),
        ),
    ];
    for (what, f) in broken {
        let mut b = v.clone();
        f(&mut b);
        let bad = dir.join(format!("broken-{}.cdx.json", what.replace(' ', "-")));
        std::fs::write(&bad, serde_json::to_string_pretty(&b).unwrap()).unwrap();
        assert!(
            cyclonedx_validate(&bad).is_err(),
            "the validator accepted a broken SBOM ({what})"
        );
    }
}
