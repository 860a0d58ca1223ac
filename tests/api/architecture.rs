//! The structure of `src/`: no import circle between its files, and the database library named
//! only in `src/store/`.
//!
//! A file "uses" another when it names a path into it (`crate::store::Store`, `super::apply_answer`,
//! `use crate::risk::{self, Gate}`), resolved to the deepest file that exists. A module
//! declaring its children (`mod events;`) is not a use. A circle means two parts can only be
//! understood, tested and changed together; this test names the files of any circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/store/mod.rs` → `["store"]`, `src/risk/limits.rs` →
/// `["risk", "limits"]`, `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Source text without comments and string literals, so prose never counts as a use.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            i += 2;
            while i < bytes.len() && !bytes[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// How many inline modules (`mod paths { ... }`) enclose byte `pos`: a `super::` there first
/// leaves those, not the file's module.
fn inline_modules_around(code: &str, pos: usize) -> usize {
    let mut stack: Vec<bool> = Vec::new();
    for (i, c) in code[..pos].char_indices() {
        match c {
            '{' => {
                let before = code[..i].trim_end();
                let word_start = before
                    .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map_or(0, |k| k + 1);
                let is_mod = before[..word_start].trim_end().ends_with("mod")
                    && !before[word_start..].is_empty();
                stack.push(is_mod);
            }
            '}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.iter().filter(|m| **m).count()
}

/// Every path a file names into the crate, as module paths (longest first guess; the caller
/// resolves them to files). Handles `crate::a::b`, `super::a`, and one level of braces
/// (`crate::a::{b, c::d}`).
fn named_paths(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut rest = code;
    let mut offset = 0;
    while let Some(pos) = rest
        .find("crate::")
        .into_iter()
        .chain(rest.find("super::"))
        .min()
    {
        let before = rest[..pos].chars().last();
        let start = &rest[pos..];
        let at = offset + pos;
        rest = &rest[pos + 1..];
        offset = at + 1;
        if before.is_some_and(is_ident) {
            continue;
        }
        let (mut base, tail) = if let Some(t) = start.strip_prefix("crate::") {
            (Vec::new(), t)
        } else {
            let mut b = here.to_vec();
            let mut t = start;
            let mut inline = inline_modules_around(code, at);
            while let Some(next) = t.strip_prefix("super::") {
                if inline > 0 {
                    inline -= 1;
                } else {
                    b.pop();
                }
                t = next;
            }
            (b, t)
        };
        let mut segs = tail;
        loop {
            let name: String = segs.chars().take_while(|c| is_ident(*c)).collect();
            if name.is_empty() {
                break;
            }
            segs = &segs[name.len()..];
            base.push(name);
            if let Some(next) = segs.strip_prefix("::") {
                segs = next;
                if let Some(inner) = segs.strip_prefix('{') {
                    let end = inner.find('}').unwrap_or(inner.len());
                    for item in inner[..end].split(',') {
                        let item = item.trim();
                        let mut p = base.clone();
                        for s in item.split("::") {
                            let s: String = s.chars().take_while(|c| is_ident(*c)).collect();
                            if !s.is_empty() && s != "self" {
                                p.push(s);
                            }
                        }
                        out.push(p);
                    }
                    break;
                }
            } else {
                break;
            }
        }
        out.push(base);
    }
    out
}

#[test]
fn no_import_circle_between_the_files_of_src() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| {
            (
                module_of(&src, f),
                f.strip_prefix(&src).unwrap().display().to_string(),
            )
        })
        .collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let here = module_of(&src, file);
        let name = &modules[&here];
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        // A file's own `#[cfg(test)] mod tests` may use anything: only the code above it counts.
        let code = code
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&code);
        let edges = uses.entry(name.clone()).or_default();
        for mut path in named_paths(code, &here) {
            while !path.is_empty() && !modules.contains_key(&path) {
                path.pop();
            }
            if path.is_empty() || path == here {
                continue;
            }
            edges.insert(modules[&path].clone());
        }
    }
    // A file is in a circle when it can reach itself.
    let mut circles = BTreeSet::new();
    for start in uses.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = uses[start].iter().collect();
        while let Some(f) = stack.pop() {
            if f == start {
                circles.insert(start.clone());
                break;
            }
            if seen.insert(f.clone()) {
                stack.extend(uses.get(f).into_iter().flatten());
            }
        }
    }
    let detail: Vec<String> = circles
        .iter()
        .map(|f| {
            let back: Vec<&String> = uses[f].iter().filter(|g| circles.contains(*g)).collect();
            format!("{f} -> {back:?}")
        })
        .collect();
    assert!(
        circles.is_empty(),
        "files of src/ in an import circle (each with the files of the circle it uses):\n{}",
        detail.join("\n")
    );
}

#[test]
fn the_circle_check_sees_a_circle_when_there_is_one() {
    let a = vec!["a".to_owned()];
    let paths = named_paths(
        "use crate::b::{self, C, d::E};\nfn f() { super::x::y(); }",
        &a,
    );
    assert!(paths.contains(&vec!["b".to_owned()]));
    assert!(paths.contains(&vec!["b".to_owned(), "C".to_owned()]));
    assert!(paths.contains(&vec!["b".to_owned(), "d".to_owned(), "E".to_owned()]));
    assert!(paths.contains(&vec!["x".to_owned(), "y".to_owned()]));
    assert_eq!(
        code_only("// crate::a\nlet s = \"crate::b\";"),
        "\nlet s = \"\";"
    );
    let inline = named_paths("pub mod paths {\n fn f() { super::g(); }\n}", &a);
    assert!(
        inline.contains(&vec!["a".to_owned(), "g".to_owned()]),
        "{inline:?}"
    );
}

/// The store is the only part that knows which database library (and engine) is underneath:
/// outside `src/store/` no code names `sqlx` or a SQLite type, so a second engine changes
/// `store/` alone.
#[test]
fn no_code_outside_the_store_names_the_database_library() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let store = src.join("store");
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&store))
        .filter(|f| {
            let code = code_only(&std::fs::read_to_string(f).unwrap());
            code.contains("sqlx") || code.contains("Sqlite")
        })
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these files name sqlx or a SQLite type outside src/store/: {offenders:?}"
    );
}
