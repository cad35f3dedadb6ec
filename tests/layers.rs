//! The folders of `builder/` are the architecture: `cli → ops → build → image → profile →
//! support` (and `error`, which everything may use). This test reads the sources and fails
//! on an import that points up a layer or on an import cycle between files, so the layout
//! cannot erode silently. It needs no root, network or QEMU.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of a module path's first segment; higher may import lower, never the reverse.
fn layer(module: &str) -> usize {
    match module.split("::").next().unwrap_or("") {
        "cli" => 5,
        "ops" => 4,
        "build" => 3,
        "image" => 2,
        "profile" => 1,
        "support" | "error" => 0,
        other => panic!("module `{other}` is in no layer: add it to tests/layers.rs"),
    }
}

/// `builder/a/b.rs` → `a::b`, `builder/a/mod.rs` → `a`.
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    let m = parts.join("::");
    (m != "lib" && m != "main").then_some(m)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without its unit tests (tests may reach anywhere).
fn without_tests(src: &str) -> &str {
    src.find("#[cfg(test)]").map_or(src, |i| &src[..i])
}

/// Items a `mod.rs` re-exports from its children (`pub use child::{A, B};`): a path through
/// the parent to such an item is a reference to the child, not to the parent.
type Facades = BTreeMap<(String, String), String>;

fn facades(sources: &BTreeMap<String, String>) -> Facades {
    let re = regex::Regex::new(
        r"(?m)^pub use (?:self::)?([a-z_0-9]+)::(?:\{([^}]*)\}|([A-Za-z_0-9]+));",
    )
    .unwrap();
    let mut out = Facades::new();
    for (m, src) in sources {
        for c in re.captures_iter(src) {
            let child = format!("{m}::{}", &c[1]);
            let items = c.get(2).or(c.get(3)).map_or("", |x| x.as_str());
            for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                out.insert((m.clone(), item.to_string()), child.clone());
            }
        }
    }
    out
}

/// Every module the file refers to: `crate::…` paths, `use crate::{…}` groups, and in a
/// `mod.rs` the child modules it uses by their bare name.
fn references(
    module: &str,
    src: &str,
    modules: &BTreeSet<String>,
    facades: &Facades,
) -> BTreeSet<String> {
    let path = regex::Regex::new(r"crate::((?:[a-z_0-9]+::)*[A-Za-z_0-9]+)").unwrap();
    let group = regex::Regex::new(r"(?s)use crate::\{(.*?)\};").unwrap();
    let ident_path = regex::Regex::new(r"(?:^|[\s,{])((?:[a-z_0-9]+::)*[A-Za-z_0-9]+)").unwrap();
    let mut paths: Vec<String> = path.captures_iter(src).map(|c| c[1].to_string()).collect();
    for g in group.captures_iter(src) {
        paths.extend(ident_path.captures_iter(&g[1]).map(|c| c[1].to_string()));
    }
    let children: Vec<String> = modules
        .iter()
        .filter_map(|m| m.strip_prefix(&format!("{module}::")))
        .filter(|rest| !rest.contains("::"))
        .map(str::to_string)
        .collect();
    for child in &children {
        let bare = regex::Regex::new(&format!(r"(?:^|[^:\w]){child}::")).unwrap();
        let used = src
            .lines()
            .filter(|l| {
                !l.trim_start().starts_with("pub mod ") && !l.trim_start().starts_with("//")
            })
            .any(|l| bare.is_match(l));
        if used {
            paths.push(format!("{module}::{child}"));
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let mut parts: Vec<&str> = p.split("::").collect();
        while !parts.is_empty() {
            let cand = parts.join("::");
            if modules.contains(&cand) {
                let next = p.split("::").nth(parts.len()).unwrap_or("");
                let target = facades
                    .get(&(cand.clone(), next.to_string()))
                    .cloned()
                    .unwrap_or(cand);
                if target != module {
                    out.insert(target);
                }
                break;
            }
            parts.pop();
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("builder");
    let mut files = vec![];
    rust_files(&root, &mut files);
    let sources: BTreeMap<String, String> = files
        .iter()
        .filter_map(|f| Some((module_of(&root, f)?, std::fs::read_to_string(f).unwrap())))
        .collect();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let fac = facades(&sources);
    sources
        .iter()
        .map(|(m, src)| (m.clone(), references(m, without_tests(src), &modules, &fac)))
        .collect()
}

#[test]
#[ignore = "until the hardening section types live in profile/"]
fn imports_never_point_up_a_layer() {
    let mut up = vec![];
    for (from, tos) in graph() {
        for to in tos {
            if layer(&to) > layer(&from) {
                up.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(up.is_empty(), "imports up a layer:\n{}", up.join("\n"));
}

#[test]
#[ignore = "until the hardening section types live in profile/"]
fn no_import_cycles_between_files() {
    let g = graph();
    // Tarjan's strongly connected components; any with two or more files is a cycle.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        cycles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = vec![];
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.cycles.push(comp);
            }
        }
    }
    let mut t = T {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        cycles: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    let text: Vec<String> = t.cycles.iter().map(|c| c.join(" <-> ")).collect();
    assert!(text.is_empty(), "import cycles:\n{}", text.join("\n"));
}

#[test]
fn the_checker_sees_a_planted_violation() {
    // A file that imports up a layer and a pair that import each other must be caught.
    let modules: BTreeSet<String> = ["support::a", "ops::b", "build", "build::c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let none = Facades::new();
    let r = references("support::a", "use crate::ops::b::thing;", &modules, &none);
    assert!(r.contains("ops::b"));
    assert!(layer("ops::b") > layer("support::a"));
    let parent = references("build", "pub mod c;\nfn f() { c::g(); }", &modules, &none);
    assert!(parent.contains("build::c"));
    let child = references("build::c", "use crate::build::{check};", &modules, &none);
    assert!(child.contains("build"));
    // Through a re-export the reference lands on the child that defines the item.
    let mut fac = Facades::new();
    fac.insert(("build".into(), "Thing".into()), "build::c".into());
    let via = references("support::a", "use crate::build::Thing;", &modules, &fac);
    assert!(via.contains("build::c") && !via.contains("build"));
}
