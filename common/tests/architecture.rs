//! The structure docs/architecture.md describes, checked: which workspace crate may depend on
//! which, which crates may contain `unsafe`, and that every `unsafe` block says why it is sound.
//! The rules' readers are also run on deliberately broken input (`the_checks_can_fail`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unsafe {
    /// `#![forbid(unsafe_code)]`, and no `unsafe` anywhere.
    Forbidden,
    /// `#![deny(unsafe_code)]`, and no `unsafe` anywhere.
    Denied,
    /// `#![deny(unsafe_code)]`, `unsafe` only in this one file.
    OnlyIn(&'static str),
    /// May contain `unsafe`; every block explained.
    Allowed,
}

/// (folder, the workspace crates its `[dependencies]` may name, its `unsafe` rule)
const CRATES: &[(&str, &[&str], Unsafe)] = &[
    ("common", &[], Unsafe::Forbidden),
    ("model", &[], Unsafe::Forbidden),
    ("harness", &["pkeys-common"], Unsafe::Allowed),
    ("guest", &["pkeys-common", "pkeys-harness"], Unsafe::Allowed),
    (
        "cases",
        &["pkeys-common", "pkeys-harness", "pkeys-model"],
        Unsafe::Denied,
    ),
    (
        "suite",
        &[
            "pkeys-common",
            "pkeys-harness",
            "pkeys-guest",
            "pkeys-cases",
        ],
        Unsafe::Denied,
    ),
    ("report", &["pkeys-common"], Unsafe::Forbidden),
    (
        "qemu",
        &["pkeys-common", "pkeys-report"],
        Unsafe::OnlyIn("pdeathsig.rs"),
    ),
];

/// The `pkeys-*` names in a manifest's `[dependencies]` table (not dev- or build-dependencies).
fn workspace_deps(manifest: &str) -> BTreeSet<String> {
    let mut in_deps = false;
    let mut out = BTreeSet::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
        } else if in_deps && t.starts_with("pkeys-") {
            let name = t.split(['.', ' ', '=']).next().unwrap();
            out.insert(name.to_owned());
        }
    }
    out
}

/// The 1-based lines of `src` that use `unsafe` outside comments, and of those the lines that
/// open an `unsafe` block with no `SAFETY` in the six lines above or on the line itself.
fn unsafe_uses(src: &str) -> (Vec<usize>, Vec<usize>) {
    let lines: Vec<&str> = src.lines().collect();
    let (mut uses, mut unexplained) = (Vec::new(), Vec::new());
    for (i, l) in lines.iter().enumerate() {
        let code = l.split("//").next().unwrap_or("");
        let is_unsafe = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == "unsafe");
        if !is_unsafe {
            continue;
        }
        uses.push(i + 1);
        let block = code.contains("unsafe {") || code.trim_end().ends_with("unsafe");
        let window = lines[i.saturating_sub(6)..=i].join("\n");
        if block && !window.contains("SAFETY") {
            unexplained.push(i + 1);
        }
    }
    (uses, unexplained)
}

/// The 1-based lines of `src` that declare an `unsafe fn` whose doc comment has no `# Safety`
/// section (the contract a caller must keep).
fn unsafe_fns_without_contract(src: &str) -> Vec<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let code = l.split("//").next().unwrap_or("");
        let words: Vec<&str> = code.split_whitespace().collect();
        if !words.windows(2).any(|w| w == ["unsafe", "fn"]) {
            continue;
        }
        let doc = lines[..i]
            .iter()
            .rev()
            .take_while(|d| {
                let d = d.trim_start();
                d.starts_with("///") || d.starts_with("#[")
            })
            .any(|d| d.contains("# Safety"));
        if !doc {
            out.push(i + 1);
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn crates_depend_only_on_what_the_map_allows() {
    for (dir, allowed, _) in CRATES {
        let manifest = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
        let deps = workspace_deps(&manifest);
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        let extra: Vec<_> = deps.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "{dir} depends on {extra:?}, which docs/architecture.md does not allow"
        );
    }
}

#[test]
fn every_workspace_member_is_in_the_map() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .unwrap();
    let members: Vec<&str> = members.split('"').skip(1).step_by(2).collect();
    assert_eq!(members.len(), CRATES.len(), "{members:?}");
    for m in members {
        assert!(
            CRATES.iter().any(|(d, _, _)| *d == m),
            "workspace member {m} is missing from the map"
        );
    }
}

#[test]
fn unsafe_lives_only_where_the_map_allows_and_is_explained() {
    for (dir, _, rule) in CRATES {
        let src = root().join(dir).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        match rule {
            Unsafe::Forbidden => assert!(lib.contains("#![forbid(unsafe_code)]"), "{dir}"),
            Unsafe::Denied | Unsafe::OnlyIn(_) => {
                assert!(lib.contains("#![deny(unsafe_code)]"), "{dir}")
            }
            Unsafe::Allowed => {}
        }
        for f in rust_files(&src) {
            let (uses, unexplained) = unsafe_uses(&std::fs::read_to_string(&f).unwrap());
            let name = f.file_name().unwrap().to_str().unwrap();
            match rule {
                Unsafe::Allowed => {}
                Unsafe::OnlyIn(file) if name == *file => {}
                _ => assert!(uses.is_empty(), "{}: unsafe at lines {uses:?}", f.display()),
            }
            assert!(
                unexplained.is_empty(),
                "{}: unsafe blocks without a SAFETY line at {unexplained:?}",
                f.display()
            );
            let text = std::fs::read_to_string(&f).unwrap();
            let bare = unsafe_fns_without_contract(&text);
            assert!(
                bare.is_empty(),
                "{}: unsafe fn without a `# Safety` doc section at {bare:?}",
                f.display()
            );
        }
    }
}

#[test]
fn the_checks_can_fail() {
    let manifest = "[dependencies]\npkeys-harness.workspace = true\nlibc = \"1\"\n\
                    [dev-dependencies]\npkeys-cases.workspace = true\n";
    assert_eq!(
        workspace_deps(manifest),
        BTreeSet::from(["pkeys-harness".to_owned()])
    );
    let src = "fn a() {\n    // SAFETY: fine.\n    unsafe { x() };\n}\n\
               \n\n\n\n\
               fn b() {\n    let y = 1;\n    unsafe { z() };\n}\n\
               // unsafe in a comment\nunsafe fn c() {}\nfn deny_unsafe_code() {}\n";
    let (uses, unexplained) = unsafe_uses(src);
    assert_eq!(uses, vec![3, 11, 14]);
    assert_eq!(unexplained, vec![11]);
    let fns = "/// Reads.\n///\n/// # Safety\n/// `p` is valid.\n#[inline]\npub unsafe fn a(p: usize) {}\n\
               /// Writes.\npub unsafe fn b(p: usize) {}\n";
    assert_eq!(unsafe_fns_without_contract(fns), vec![8]);
}
