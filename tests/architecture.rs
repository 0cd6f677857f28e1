//! The layout's invariants (ARCHITECTURE.md), checked on the source tree and on cargo's
//! dependency graph, so a change that breaks one fails here rather than in review:
//!
//! - `src/model` (the shared core) imports nothing from the worker or the launcher, and no
//!   AWS, Kafka, clap, HTTP or async-runtime crate;
//! - `src/store` (the report store both sides talk through) imports nothing from the worker or
//!   the launcher;
//! - `src/worker` imports nothing from the launcher;
//! - clap types stay in the launcher's CLI module (and the binary that parses it);
//! - the shipped crate does not depend on the test doubles (`fleetload-testkit`), even
//!   indirectly, in a normal (non-dev) build;
//! - no source folder is named after a tool's convention (`target/` is cargo's build directory,
//!   which `.dockerignore` and `.gitignore` drop).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                out.push((path, text));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

/// Lines of `text` that are code (not comments) and mention one of `needles` as a path.
fn offending_lines(text: &str, needles: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

fn assert_no_imports(dir: &str, needles: &[&str]) {
    let mut found = Vec::new();
    for (path, text) in sources(&root().join(dir)) {
        for line in offending_lines(&text, needles) {
            found.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(
        found.is_empty(),
        "{dir} must not use {needles:?}:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_model_depends_on_neither_worker_nor_launcher_nor_any_service_crate() {
    assert_no_imports(
        "src/model",
        &[
            "crate::worker",
            "crate::launcher",
            "tokio::",
            "aws_",
            "rdkafka::",
            "clap::",
            "hyper",
            "indicatif::",
        ],
    );
}

#[test]
fn the_worker_does_not_depend_on_the_launcher() {
    assert_no_imports("src/worker", &["crate::launcher", "clap::"]);
}

#[test]
fn the_store_depends_only_on_the_model() {
    assert_no_imports(
        "src/store",
        &["crate::worker", "crate::launcher", "clap::", "rdkafka::"],
    );
}

#[test]
fn clap_types_stay_in_the_launcher_cli() {
    let mut found = Vec::new();
    for (path, text) in sources(&root().join("src")) {
        let allowed = path.ends_with("src/launcher/cli.rs")
            || path.ends_with("src/bin/launcher.rs")
            || path.starts_with(root().join("src/testkit"));
        if !allowed {
            for line in offending_lines(&text, &["clap::"]) {
                found.push(format!("{}: {line}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "clap outside the CLI:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_shipped_crate_does_not_depend_on_the_test_doubles() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "--package",
            "fleetload",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.lines().any(|l| l.starts_with("fleetload v")),
        "unexpected cargo tree output:\n{tree}"
    );
    assert!(
        !tree.contains("fleetload-testkit"),
        "a normal build of fleetload pulls in the test doubles:\n{tree}"
    );
}

#[test]
fn no_source_folder_is_named_after_a_tool_convention() {
    let mut stack = vec![root().join("src")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                let name = path.file_name().unwrap_or_default();
                assert!(
                    name != "target" && name != "node_modules" && name != ".git",
                    "{} collides with a tool's convention",
                    path.display()
                );
                stack.push(path);
            }
        }
    }
}
