//! Build-tool checks: what a tinyconfig x86-64 build needs on `PATH`, and the Debian packages
//! to install when something is missing.

use std::path::Path;

use anyhow::{Result, bail};

/// A build tool and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// A program on `PATH`, or an absolute path to a header.
    pub what: &'static str,
    /// The Debian package.
    pub package: &'static str,
}

/// What a tinyconfig x86-64 build needs (objtool needs libelf; `bc` for timeconst; `xz` for
/// the tinyconfig's compressed image; `perl` for headers; `cpio`/`zstd` are not needed).
pub const BUILD_TOOLS: &[Tool] = &[
    Tool {
        what: "gcc",
        package: "gcc",
    },
    Tool {
        what: "make",
        package: "make",
    },
    Tool {
        what: "flex",
        package: "flex",
    },
    Tool {
        what: "bison",
        package: "bison",
    },
    Tool {
        what: "bc",
        package: "bc",
    },
    Tool {
        what: "perl",
        package: "perl",
    },
    Tool {
        what: "xz",
        package: "xz-utils",
    },
    Tool {
        what: "/usr/include/gelf.h",
        package: "libelf-dev",
    },
    Tool {
        what: "/usr/include/openssl/ssl.h",
        package: "libssl-dev",
    },
];

fn on_path(prog: &str, path_var: &std::ffi::OsStr) -> bool {
    std::env::split_paths(path_var).any(|d| d.join(prog).is_file())
}

/// The tools of `tools` that are missing (programs looked up in `path_var`).
pub fn missing_tools(tools: &[Tool], path_var: &std::ffi::OsStr) -> Vec<Tool> {
    tools
        .iter()
        .filter(|t| {
            if t.what.starts_with('/') {
                !Path::new(t.what).exists()
            } else {
                !on_path(t.what, path_var)
            }
        })
        .copied()
        .collect()
}

/// Fails naming the packages to install when a build tool is missing.
pub fn check_tools() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing = missing_tools(BUILD_TOOLS, &path);
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    bail!(
        "missing kernel build tools: {}; install them with: apt-get install {}",
        missing
            .iter()
            .map(|t| t.what)
            .collect::<Vec<_>>()
            .join(", "),
        packages.join(" ")
    )
}
