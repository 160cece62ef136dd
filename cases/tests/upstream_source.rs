//! `cases/upstream.toml` against the upstream test lists themselves, read from the cached
//! `linux-source` tree (`pkeys-qemu kernel source 6.12` puts it in `.cache/src/`): every test
//! `protection_keys.c` runs (its `pkey_tests[]` table) and every test of
//! `pkey_sighandler_tests.c` (its `pkey_tests[]` table) is mapped, and every mapped name is a test
//! function the file defines. Ignored, with the reason, when no tree is cached.

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Map = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Every cached `linux-source-*` tree (6.12 and, when fetched, 7.x), oldest first.
fn cached_trees() -> Vec<PathBuf> {
    // The cache pkeys-qemu uses: $PKEYS_CACHE, else .cache/ in the workspace.
    let cache = std::env::var_os("PKEYS_CACHE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache"),
        PathBuf::from,
    );
    let dir = cache.join("src");
    let mut trees: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-source-"))
                && p.join("tools/testing/selftests/mm").is_dir()
        })
        .collect();
    trees.sort();
    trees
}

/// The names listed in the C array `pkey_tests[]` of `src` (preprocessor lines skipped). Both
/// forms upstream has used: a table of function pointers (`void (*pkey_tests[])(...) = {
/// test_a, ... }`, 6.12) and one of `PKEY_TEST(test_a)` entries (`struct pkey_test
/// pkey_tests[] = { ... }`, 7.x).
fn table(src: &str) -> Vec<String> {
    let Some(start) = src.find("pkey_tests[]") else {
        return Vec::new();
    };
    let body = &src[start..];
    let Some(open) = body.find('{') else {
        return Vec::new();
    };
    let close = body[open..].find("};").map_or(body.len(), |c| open + c);
    body[open + 1..close]
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .flat_map(|l| l.split(','))
        .map(|n| {
            let n = n.trim();
            n.strip_prefix("PKEY_TEST(")
                .and_then(|n| n.strip_suffix(')'))
                .unwrap_or(n)
                .trim()
        })
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// Whether `src` defines a function called `name`.
fn defines(src: &str, name: &str) -> bool {
    src.lines().any(|l| {
        let l = l.trim_start();
        !l.starts_with("//")
            && l.contains(&format!("{name}("))
            && (l.starts_with("void ") || l.starts_with("static void "))
    })
}

fn compare(tree: &Path, file: &str, map: &Map) -> Result<String, String> {
    let src = std::fs::read_to_string(tree.join(file)).map_err(|e| format!("{file}: {e}"))?;
    let listed = table(&src);
    if listed.is_empty() {
        return Err(format!("{file}: no pkey_tests[] table found"));
    }
    let mapped = map
        .get(file)
        .ok_or_else(|| format!("{file}: no table in upstream.toml"))?;
    let unmapped: Vec<&String> = listed.iter().filter(|n| !mapped.contains_key(*n)).collect();
    let unknown: Vec<&String> = mapped.keys().filter(|n| !defines(&src, n)).collect();
    if !unmapped.is_empty() || !unknown.is_empty() {
        return Err(format!(
            "{file}: upstream tests not in upstream.toml: {unmapped:?}; upstream.toml names \
             that are no test function of the file: {unknown:?}"
        ));
    }
    Ok(format!(
        "{file}: {} tests in pkey_tests[], {} mapped",
        listed.len(),
        mapped.len()
    ))
}

fn load_map() -> Map {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/upstream.toml"))
        .expect("upstream.toml");
    toml::from_str(&text).expect("upstream.toml parses")
}

fn trial(name: &str, file: &'static str) -> Trial {
    Trial::ignorable_test(name, move || {
        let trees = cached_trees();
        if trees.is_empty() {
            return Ok(Completion::ignored_with(
                "no linux-source tree cached in .cache/src (pkeys-qemu kernel source 6.12)",
            ));
        }
        for tree in trees {
            let said = compare(&tree, file, &load_map()).map_err(Failed::from)?;
            println!("    {} ({})", said, tree.display());
        }
        Ok(Completion::Completed)
    })
}

/// The comparison itself can fail: a table with a test the map lacks, a map naming a function the
/// file does not define.
fn the_comparison_can_fail() -> Result<(), Failed> {
    let dir = tempfile_dir();
    let file = "tools/testing/selftests/mm/x.c";
    std::fs::create_dir_all(dir.join("tools/testing/selftests/mm")).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join(file),
        "void test_a(int *p) {}\nvoid test_b(int *p) {}\nvoid (*pkey_tests[])(int *ptr) = {\n\ttest_a,\n#if 1\n\ttest_b,\n#endif\n};\n",
    )
    .map_err(|e| e.to_string())?;
    let map_of = |names: &[&str]| -> Map {
        let t = names.iter().map(|n| (n.to_string(), vec![])).collect();
        [(file.to_string(), t)].into_iter().collect()
    };
    let ok = compare(&dir, file, &map_of(&["test_a", "test_b"]));
    let macro_form = table(
        "static struct pkey_test pkey_tests[] = {\n\tPKEY_TEST(test_a),\n#if 1\n\tPKEY_TEST(test_b),\n#endif\n};\n",
    );
    if macro_form != ["test_a", "test_b"] {
        return Err(format!("PKEY_TEST table read as {macro_form:?}").into());
    }
    let missing = compare(&dir, file, &map_of(&["test_a"]));
    let unknown = compare(&dir, file, &map_of(&["test_a", "test_b", "test_c"]));
    let _ = std::fs::remove_dir_all(&dir);
    if ok.is_err() {
        return Err(format!("a complete map was refused: {ok:?}").into());
    }
    if !missing.as_ref().is_err_and(|e| e.contains("\"test_b\"")) {
        return Err(format!("an unmapped test was not named: {missing:?}").into());
    }
    if !unknown.as_ref().is_err_and(|e| e.contains("\"test_c\"")) {
        return Err(format!("an unknown name was not named: {unknown:?}").into());
    }
    Ok(())
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("pkeys-upstream-map-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        trial(
            "protection_keys_c_tests_are_all_mapped",
            "tools/testing/selftests/mm/protection_keys.c",
        ),
        trial(
            "pkey_sighandler_tests_c_tests_are_all_mapped",
            "tools/testing/selftests/mm/pkey_sighandler_tests.c",
        ),
        Trial::test("the_comparison_can_fail", the_comparison_can_fail),
    ];
    libtest_mimic::run(&args, trials).exit();
}
