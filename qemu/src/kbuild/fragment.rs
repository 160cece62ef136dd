//! Kconfig fragments: `ci/pkeys.config` parsed ([`Fragment`]), written out in the normalised
//! form merged onto the base configuration, and checked against a finished `.config`
//! ([`Fragment::missing`], [`parse_dotconfig`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The default configuration fragment, `<workspace>/ci/pkeys.config`.
pub fn default_fragment() -> PathBuf {
    crate::paths::workspace_root().join("ci/pkeys.config")
}

/// One `CONFIG_X=value` line of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The symbol with its `CONFIG_` prefix.
    pub name: String,
    /// `y`, `m`, `n` or the literal value (strings keep their quotes).
    pub value: String,
    /// Marked `# required`: `kernel build` fails when the final `.config` differs.
    pub required: bool,
    /// 1-based line in the fragment.
    pub line: usize,
}

/// A kernel configuration fragment (`ci/pkeys.config`).
///
/// Syntax: `CONFIG_X=y|m|n|value`, optionally followed by `# required`; `# CONFIG_X is not
/// set` (= `n`); `#` comments and blank lines. `n` is written out as `# CONFIG_X is not set`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    /// The entries in file order (a symbol appears once).
    pub entries: Vec<Entry>,
}

/// A required option the `.config` does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The symbol.
    pub name: String,
    /// What the fragment asks for.
    pub wanted: String,
    /// What the `.config` has (`None`: absent, i.e. its dependencies are not met).
    pub found: Option<String>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.found {
            Some(v) => write!(f, "{}={} (the .config has {v})", self.name, self.wanted),
            None => write!(f, "{}={} (absent from the .config)", self.name, self.wanted),
        }
    }
}

fn valid_symbol(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Splits `CONFIG_X=value  # comment` at the first `#` outside double quotes.
fn split_comment(line: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => quoted = !quoted,
            '#' if !quoted => return (line[..i].trim_end(), &line[i..]),
            _ => {}
        }
        prev = c;
    }
    (line, "")
}

impl Fragment {
    /// Parses fragment text; `origin` names the file in errors (`origin:line: ...`).
    pub fn parse(text: &str, origin: &str) -> Result<Fragment> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            let (name, value, comment) = if let Some(rest) = trimmed.strip_prefix("# CONFIG_") {
                let Some(sym) = rest.strip_suffix(" is not set") else {
                    continue; // a comment that happens to start with CONFIG_
                };
                (format!("CONFIG_{sym}"), "n".to_owned(), "")
            } else if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            } else {
                let (assign, comment) = split_comment(trimmed);
                let Some((name, value)) = assign.split_once('=') else {
                    bail!("{origin}:{line}: expected CONFIG_NAME=value, found {trimmed:?}");
                };
                (name.trim().to_owned(), value.trim().to_owned(), comment)
            };
            if !valid_symbol(&name) {
                bail!("{origin}:{line}: {name:?} is not a CONFIG_ symbol");
            }
            if value.is_empty() {
                bail!("{origin}:{line}: {name} has no value");
            }
            if let Some(prev) = entries.iter().find(|e| e.name == name) {
                bail!(
                    "{origin}:{line}: {name} is already set on line {}",
                    prev.line
                );
            }
            let required = comment
                .trim_start_matches('#')
                .split_whitespace()
                .any(|w| w == "required");
            entries.push(Entry {
                name,
                value,
                required,
                line,
            });
        }
        if entries.is_empty() {
            bail!("{origin}: no CONFIG_ options");
        }
        Ok(Fragment { entries })
    }

    /// Reads and parses a fragment file.
    pub fn load(path: &Path) -> Result<Fragment> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config fragment {}", path.display()))?;
        Fragment::parse(&text, &path.display().to_string())
    }

    /// The fragment as Kconfig reads it (no trailing comments; `n` as `# ... is not set`).
    pub fn normalized(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            if e.value == "n" {
                out.push_str(&format!("# {} is not set\n", e.name));
            } else {
                out.push_str(&format!("{}={}\n", e.name, e.value));
            }
        }
        out
    }

    /// The required options whose value in `config` (a `.config`'s text) differs.
    pub fn missing(&self, config: &str) -> Vec<Missing> {
        let have = parse_dotconfig(config);
        self.entries
            .iter()
            .filter(|e| e.required)
            .filter_map(|e| {
                let found = have.get(&e.name).cloned();
                let ok = match found.as_deref() {
                    Some(v) => v == e.value,
                    None => e.value == "n",
                };
                (!ok).then(|| Missing {
                    name: e.name.clone(),
                    wanted: e.value.clone(),
                    found,
                })
            })
            .collect()
    }

    /// The options (required or not) the `.config` does not have as asked.
    pub fn not_applied(&self, config: &str) -> Vec<String> {
        let have = parse_dotconfig(config);
        self.entries
            .iter()
            .filter(|e| match have.get(&e.name) {
                Some(v) => *v != e.value,
                None => e.value != "n",
            })
            .map(|e| e.name.clone())
            .collect()
    }
}

/// The symbols of a `.config`: `CONFIG_X=v` and `# CONFIG_X is not set` (as `n`).
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_")
            && let Some(sym) = rest.strip_suffix(" is not set")
        {
            out.insert(format!("CONFIG_{sym}"), "n".to_owned());
        } else if line.starts_with("CONFIG_")
            && let Some((k, v)) = line.split_once('=')
        {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}
