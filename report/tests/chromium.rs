//! The HTML as Chromium reads it (when `chromium` is installed; reported as ignored, with the
//! reason, otherwise): the DOM it builds keeps the first-screen order, and a 1400×1000
//! screenshot renders. A `harness = false` target, so that a missing browser is a visible skip.

mod common;

use std::process::Command;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use pkeys_report::render::html;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn reads_the_html(chromium: &str) -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let page = dir.path().join("report.html");
    std::fs::write(&page, html(&common::sample())).map_err(|e| e.to_string())?;
    let url = format!("file://{}", page.display());
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ];
    let out = Command::new(chromium)
        .args(headless)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .map_err(|e| e.to_string())?;
    let dom = String::from_utf8_lossy(&out.stdout);
    let at = |needle: &str| {
        dom.find(needle)
            .ok_or_else(|| format!("{needle} not in Chromium's DOM"))
    };
    let order = [
        "class=\"banner badbg\"",
        "<h2>Problems</h2>",
        "<h2>Differences between runs</h2>",
        "<h2>Expected failures</h2>",
        "<h2>Runs</h2>",
        "<h2>Matrix</h2>",
    ];
    for pair in order.windows(2) {
        if at(pair[0])? >= at(pair[1])? {
            return Err(format!("{} is not before {}", pair[0], pair[1]).into());
        }
    }
    let shot = dir.path().join("first.png");
    let out = Command::new(chromium)
        .args(headless)
        .arg("--window-size=1400,1000")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .map_err(|e| e.to_string())?;
    let png = std::fs::read(&shot).map_err(|e| {
        format!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if !(png.starts_with(b"\x89PNG") && png.len() > 10_000) {
        return Err(format!("not a rendered PNG ({} bytes)", png.len()).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let name = "chromium_reads_the_html";
    let trial = match chromium() {
        Some(c) => Trial::test(name, move || reads_the_html(c)),
        None => Trial::ignorable_test(name, || {
            Ok(Completion::ignored_with(
                "no chromium on PATH (apt-get install chromium)",
            ))
        }),
    };
    libtest_mimic::run(&args, vec![trial]).exit();
}
