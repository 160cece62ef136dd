//! Building a kernel under test: the patch-validation workflow (`pkeys-qemu kernel ...`).
//!
//! - [`Fragment`] reads `ci/pkeys.config`, the configuration fragment applied on top of
//!   `make tinyconfig`, and checks a finished `.config` against its `# required` options;
//! - [`detect_tree`] tells a kernel source tree, an in-tree build and an `O=` build folder
//!   apart, and [`build`] configures (base + fragment + `olddefconfig`, only when needed) and runs
//!   `make bzImage` with every core, reusing the previous build;
//! - [`fetch_source`] fetches Debian's `linux-source-<series>` package through the private apt
//!   configuration of [`crate::apt`] and unpacks its tarball into the cache, atomically.
//!
//! See `docs/kernel-build.md` for the workflow and measured build times.
//!
//! The modules, along its seams: [`fragment`] (Kconfig fragments), [`tree`] (source-tree
//! detection), [`tools`] (tool checks), [`make`] (the make driver) and [`fetch`] (source
//! fetching from apt). Their items are re-exported here.

pub mod fetch;
pub mod fragment;
pub mod make;
pub mod tools;
pub mod tree;

pub use fetch::{SOURCE_SUITES, fetch_source, source_dir_name, source_package};
pub use fragment::{Entry, Fragment, Missing, default_fragment, parse_dotconfig};
pub use make::{
    BASE_CONFIG, BuildOptions, Built, ConfigAction, IMAGE, LOG, STAMP, build, check_required,
    config_action, progress_step,
};
pub use tools::{BUILD_TOOLS, Tool, check_tools, missing_tools};
pub use tree::{Tree, detect_tree, is_source_tree, tree_image, tree_short};

/// The environment variable the build tests read: a kernel source tree to build for real.
pub const TREE_ENV: &str = "PKEYS_KERNEL_TREE";

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    fn workspace_fragment() -> Fragment {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/pkeys.config");
        Fragment::load(&path).unwrap()
    }

    #[test]
    fn the_shipped_fragment_parses_and_requires_the_essentials() {
        let f = workspace_fragment();
        let req: Vec<&str> = f
            .entries
            .iter()
            .filter(|e| e.required)
            .map(|e| e.name.as_str())
            .collect();
        for name in [
            "CONFIG_64BIT",
            "CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS",
            "CONFIG_HUGETLBFS",
            "CONFIG_TRANSPARENT_HUGEPAGE",
            "CONFIG_SERIAL_8250_CONSOLE",
            "CONFIG_BLK_DEV_INITRD",
            "CONFIG_RD_GZIP",
            "CONFIG_DEVTMPFS",
            "CONFIG_DEBUG_FS",
            "CONFIG_ACPI",
            // Without PCI the kernel cannot load qemu's DSDT: no ACPI power-off (measured).
            "CONFIG_PCI",
            "CONFIG_NET",
            "CONFIG_UNIX",
            "CONFIG_PROC_PAGE_MONITOR",
        ] {
            assert!(req.contains(&name), "{name} not required");
        }
        let norm = f.normalized();
        assert!(!norm.contains("required"));
        assert!(
            norm.contains("# CONFIG_PANIC_ON_OOPS is not set\n"),
            "{norm}"
        );
        assert!(
            norm.lines()
                .all(|l| l.starts_with("CONFIG_") || l.ends_with(" is not set"))
        );
    }

    #[test]
    fn parse_forms() {
        let text = "# comment\n\nCONFIG_A=y   # required\nCONFIG_B=n\n# CONFIG_C is not set\nCONFIG_D=\"x # y\" # required\nCONFIG_E=4\n# CONFIG_F mentioned in prose\n";
        let f = Fragment::parse(text, "f").unwrap();
        let got: Vec<(&str, &str, bool, usize)> = f
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str(), e.required, e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("CONFIG_A", "y", true, 3),
                ("CONFIG_B", "n", false, 4),
                ("CONFIG_C", "n", false, 5),
                ("CONFIG_D", "\"x # y\"", true, 6),
                ("CONFIG_E", "4", false, 7),
            ]
        );
        assert_eq!(
            f.normalized(),
            "CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\nCONFIG_D=\"x # y\"\nCONFIG_E=4\n"
        );
    }

    #[rstest]
    #[case("CONFIG_A\n", "f:1: expected CONFIG_NAME=value")]
    #[case("FOO=y\n", "f:1: \"FOO\" is not a CONFIG_ symbol")]
    #[case("CONFIG_a=y\n", "is not a CONFIG_ symbol")]
    #[case("CONFIG_A=\n", "f:1: CONFIG_A has no value")]
    #[case("CONFIG_A=y\nCONFIG_A=n\n", "f:2: CONFIG_A is already set on line 1")]
    #[case("# only comments\n", "f: no CONFIG_ options")]
    fn parse_errors(#[case] text: &str, #[case] want: &str) {
        let err = Fragment::parse(text, "f").unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }

    #[test]
    fn verification_names_what_is_missing() {
        let f = Fragment::parse(
            "CONFIG_A=y # required\nCONFIG_B=y # required\nCONFIG_C=n # required\nCONFIG_D=4 # required\nCONFIG_E=y\n",
            "f",
        )
        .unwrap();
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=4\n";
        let missing = f.missing(config);
        let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "CONFIG_B=y (the .config has n)",
                "CONFIG_C=n (the .config has y)"
            ]
        );
        assert_eq!(f.not_applied(config), ["CONFIG_B", "CONFIG_C", "CONFIG_E"]);
        // Absent `n` is fine; absent `y` is missing.
        let f = Fragment::parse("CONFIG_X=n # required\nCONFIG_Y=y # required\n", "f").unwrap();
        let m = f.missing("");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].to_string(), "CONFIG_Y=y (absent from the .config)");
        let err = check_required(&f, "", Path::new("/b"), Path::new("ci/pkeys.config"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/b/.config lacks options the suite needs: CONFIG_Y=y"),
            "{err}"
        );
    }

    fn fake_source(dir: &Path) {
        for f in [
            "Makefile",
            "Kconfig",
            "arch/x86/Kconfig",
            "scripts/kconfig/merge_config.sh",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
    }

    #[test]
    fn tree_detection() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("linux");
        fake_source(&src);
        let src = std::fs::canonicalize(&src).unwrap();
        assert_eq!(detect_tree(&src).unwrap(), Tree::Source(src.clone()));
        // An O= folder: kbuild's generated Makefile includes the source Makefile.
        let obj = tmp.path().join("build");
        std::fs::create_dir(&obj).unwrap();
        std::fs::write(
            obj.join("Makefile"),
            format!(
                "# Automatically generated by {0}/Makefile: don't edit\ninclude {0}/Makefile\n",
                src.display()
            ),
        )
        .unwrap();
        let t = detect_tree(&obj).unwrap();
        let obj = std::fs::canonicalize(&obj).unwrap();
        assert_eq!(
            t,
            Tree::Build {
                objtree: obj.clone(),
                source: src.clone()
            }
        );
        assert_eq!(tree_image(&t), obj.join("arch/x86/boot/bzImage"));
        assert_eq!(tree_short(&t), "build");
        // Errors.
        let err = detect_tree(&tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope: No such file"), "{err}");
        let plain = tmp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let err = detect_tree(&plain).unwrap_err().to_string();
        assert!(err.contains("is not a kernel source tree"), "{err}");
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = detect_tree(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn config_actions() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fragment::parse("CONFIG_A=y # required\n", "f").unwrap();
        assert_eq!(
            config_action(tmp.path(), &f),
            ConfigAction::Configure("no .config yet")
        );
        std::fs::write(tmp.path().join(".config"), "CONFIG_A=y\n").unwrap();
        assert_eq!(config_action(tmp.path(), &f), ConfigAction::Foreign);
        std::fs::write(tmp.path().join(STAMP), f.normalized()).unwrap();
        assert_eq!(config_action(tmp.path(), &f), ConfigAction::Keep);
        std::fs::write(tmp.path().join(".config"), "# CONFIG_A is not set\n").unwrap();
        assert_eq!(
            config_action(tmp.path(), &f),
            ConfigAction::Configure("the .config lost required options")
        );
        std::fs::write(tmp.path().join(STAMP), "CONFIG_OLD=y\n").unwrap();
        assert_eq!(
            config_action(tmp.path(), &f),
            ConfigAction::Configure("the fragment changed")
        );
    }

    #[test]
    fn tools_name_their_packages() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("gcc"), "").unwrap();
        let tools = [
            Tool {
                what: "gcc",
                package: "gcc",
            },
            Tool {
                what: "flex",
                package: "flex",
            },
            Tool {
                what: "/nonexistent/gelf.h",
                package: "libelf-dev",
            },
        ];
        let missing = missing_tools(&tools, tmp.path().as_os_str());
        let pk: Vec<&str> = missing.iter().map(|t| t.package).collect();
        assert_eq!(pk, ["flex", "libelf-dev"]);
    }

    #[rstest]
    #[case("  CC      mm/mprotect.o", Some("mm/mprotect.o"))]
    #[case("  LD      vmlinux", Some("vmlinux"))]
    #[case("  OBJCOPY arch/x86/boot/setup.bin", Some("arch/x86/boot/setup.bin"))]
    #[case("make[1]: Entering directory", None)]
    #[case("mm/mprotect.c:12: error: x", None)]
    fn progress_lines(#[case] line: &str, #[case] step: Option<&str>) {
        assert_eq!(progress_step(line), step);
    }

    #[rstest]
    #[case("6.12", Some("linux-source-6.12"))]
    #[case("6.1", Some("linux-source-6.1"))]
    #[case("6", None)]
    #[case("6.12.3", None)]
    #[case("six.1", None)]
    #[case("", None)]
    fn source_packages(#[case] series: &str, #[case] want: Option<&str>) {
        assert_eq!(source_package(series).ok().as_deref(), want);
    }

    #[test]
    fn source_dirs() {
        assert_eq!(
            source_dir_name("linux-source-6.12", "6.12.118-1"),
            "linux-source-6.12_6.12.118-1"
        );
        assert_eq!(source_dir_name("p", "1:2"), "p_1%3a2");
    }

    #[test]
    fn build_refuses_bad_trees_before_anything_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            tree: tmp.path().join("missing"),
            out: None,
            fragment: tmp.path().join("f.config"),
            jobs: 1,
            reconfigure: false,
        };
        let err = build(&opts, &|_| {}).unwrap_err().to_string();
        assert!(err.contains("missing: No such file"), "{err}");
        let opts = BuildOptions {
            tree: tmp.path().to_path_buf(),
            ..opts
        };
        let err = build(&opts, &|_| {}).unwrap_err().to_string();
        assert!(err.contains("is not a kernel source tree"), "{err}");
        // A source tree with an in-tree .config cannot take O=.
        let src = tmp.path().join("linux");
        fake_source(&src);
        std::fs::write(src.join(".config"), "").unwrap();
        std::fs::write(tmp.path().join("f.config"), "CONFIG_A=y\n").unwrap();
        let opts = BuildOptions {
            tree: src,
            out: Some(tmp.path().join("o")),
            ..opts
        };
        match build(&opts, &|_| {}) {
            Err(e) if e.to_string().contains("missing kernel build tools") => {}
            Err(e) => assert!(e.to_string().contains("has an in-tree build"), "{e}"),
            Ok(_) => panic!("built a fake tree"),
        }
    }
}
