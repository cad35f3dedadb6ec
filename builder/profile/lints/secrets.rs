//! Lints on `[secrets]`.

use super::{Hit, Lint};

/// A slot nothing on the node reads.
pub const SLOT_UNUSED: Lint = Lint {
    id: "secret-slot-unused",
    acknowledgeable: true,
    why: "a secret nothing reads is shipped to every node for no purpose, or its real consumer (a typo in a name) runs without it",
    check: |p| {
        let mut hits = vec![];
        for (name, slot) in &p.secrets {
            // Console passwords are applied by clawimg's own first-boot script.
            if slot.password_of.is_some() {
                continue;
            }
            let key = format!("secrets.{name}.used_by");
            let needle = match &slot.env {
                Some(e) => e.clone(),
                None => slot.file.rsplit('/').next().unwrap_or_default().to_string(),
            };
            if slot.used_by.is_empty() {
                hits.push(Hit::new(
                    key,
                    format!("slot `{name}` names nothing that reads it: list the overlay files (image paths) or units that use `{needle}`"),
                ));
                continue;
            }
            for user in &slot.used_by {
                match p.sources.get(user) {
                    None => hits.push(Hit::new(
                        key.clone(),
                        format!("`{user}` is neither a file of the profile's overlays nor a unit in units.install"),
                    )),
                    Some(text) if !mentions(text, &needle) => hits.push(Hit::new(
                        key.clone(),
                        format!("`{user}` does not read slot `{name}` (no `{needle}` in it)"),
                    )),
                    Some(_) => {}
                }
            }
        }
        hits
    },
};

/// Whether `word` occurs in `text` not as part of a longer name.
fn mentions(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    !word.is_empty()
        && text.match_indices(word).any(|(i, _)| {
            !text[..i].chars().next_back().is_some_and(ident)
                && !text[i + word.len()..].chars().next().is_some_and(ident)
        })
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{good, ids};
    use super::*;
    use crate::profile::sections::secrets::Slot;

    #[test]
    fn slot_read_by_its_consumer_or_refused() {
        let mut p = good();
        p.secrets.insert(
            "tok".into(),
            Slot {
                file: "/opt/x/.env".into(),
                env: Some("API_TOKEN".into()),
                used_by: vec!["/opt/x/compose.yml".into()],
                ..Default::default()
            },
        );
        p.sources.insert(
            "/opt/x/compose.yml".into(),
            "environment:\n  T: \"${API_TOKEN:-}\"\n".into(),
        );
        assert!(ids(&p).is_empty(), "{:?}", super::super::run(&p));
        // Only a longer name mentions it: not read.
        p.sources.insert(
            "/opt/x/compose.yml".into(),
            "T: \"${API_TOKEN_OLD}\"\n".into(),
        );
        assert_eq!(ids(&p), ["secret-slot-unused"]);
        let h = (SLOT_UNUSED.check)(&p);
        assert_eq!(h[0].key, "secrets.tok.used_by");
        assert!(h[0].message.contains("no `API_TOKEN`"), "{}", h[0].message);
        // Nothing named, or a consumer the profile does not ship.
        p.secrets.get_mut("tok").unwrap().used_by = vec![];
        assert!((SLOT_UNUSED.check)(&p)[0].message.contains("names nothing"));
        p.secrets.get_mut("tok").unwrap().used_by = vec!["/opt/x/other.yml".into()];
        assert!((SLOT_UNUSED.check)(&p)[0].message.contains("neither"));
        // A whole-file slot is read where its file name appears.
        p.secrets.insert(
            "key".into(),
            Slot {
                file: "/etc/x/backup-key".into(),
                used_by: vec!["x-backup.service".into()],
                ..Default::default()
            },
        );
        p.secrets.remove("tok");
        p.sources.insert(
            "x-backup.service".into(),
            "ExecStart=/bin/x --key-file /etc/x/backup-key\n".into(),
        );
        assert!(ids(&p).is_empty());
    }
}
