//! Every upstream test is mapped to case ids that exist (`cases/upstream.toml`).

use std::collections::BTreeMap;

type Map = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn ids() -> Vec<String> {
    pkeys_cases::all().into_iter().map(|c| c.id).collect()
}

fn resolves(pattern: &str, ids: &[String]) -> usize {
    match pattern.strip_suffix("::*") {
        Some(prefix) => ids
            .iter()
            .filter(|id| id.starts_with(&format!("{prefix}::")))
            .count(),
        None => ids.iter().filter(|id| *id == pattern).count(),
    }
}

#[test]
fn every_mapped_id_exists() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/upstream.toml")).unwrap();
    let map: Map = toml::from_str(&text).unwrap();
    let ids = ids();
    let mut missing = Vec::new();
    for (file, tests) in &map {
        for (name, cases) in tests {
            assert!(!cases.is_empty(), "{file}: {name} maps to no case");
            for c in cases {
                if resolves(c, &ids) == 0 {
                    missing.push(format!("{file}: {name} -> {c}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ids not in the suite:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_check_can_fail() {
    let ids = ids();
    assert_eq!(resolves("access::no_such_case", &ids), 0);
    assert_eq!(resolves("no_such_area::*", &ids), 0);
    assert!(resolves("access::read_ad::*", &ids) >= 9);
}

#[test]
fn case_ids_are_unique_and_well_formed() {
    let ids = ids();
    let mut seen = std::collections::BTreeSet::new();
    for id in &ids {
        assert!(seen.insert(id), "duplicate case id {id}");
        assert!(
            id.split("::").count() >= 2 && id.split("::").all(|p| !p.is_empty()),
            "bad id {id}"
        );
    }
}
