//! The layer check: keeps `host/src` cut into layers whose imports point one
//! way only, down.
//!
//! Every top-level module of `host/src` (a directory `X/`, or a file `X.rs`)
//! has a rank in [`LAYERS`]. A file may use modules of its own rank or lower,
//! never higher: `crate::X` (in `use` items, grouped `use crate::{..}` or
//! inline paths) and `super::` paths that climb to the crate root are checked.
//! `lib.rs`, `main.rs` and the command line (`cli.rs` or `cli/`) sit above
//! every layer. Comments, string literals and `#[cfg(test)]` items are
//! ignored: test code may reach up to build its fixtures. The other checks:
//! `AppState` only in `api/` and `app/`, and no file over [`MAX_LINES`] lines
//! before its first `#[cfg(test)]`.
//!
//! Why: a layer that only looks down can be read, tested and changed without
//! the ones above it, and the build graph stays a ladder, not a knot.
//!
//! Adding a layer: add a line `("name", rank)` to [`LAYERS`] (re-number the
//! ones above it if it goes in between) and update the table in the README
//! or `lib.rs` docs. A new top-level module that is not in the map fails
//! `every_top_level_module_has_a_layer`, so nothing can dodge the check.
//!
//! `LEVEE_LAYERS_DIR=/some/src cargo test -p levee --test layers` checks
//! another tree instead of `host/src` (to show the check failing on a copy).

use std::path::{Path, PathBuf};

/// Every top-level module of `host/src` and its rank, lowest first.
const LAYERS: &[(&str, u32)] = &[
    ("base", 0),        // clock, limits, metric names, shutdown signal: std only
    ("config", 1),      // serde data + validation
    ("upstream", 2),    // pooled client, hop-by-hop rules; below cluster (probe)
    ("cluster", 3),     // ring, node health, probe, Service, directory
    ("policy", 4),      // plugins and native policies bound to services
    ("replication", 5), // write plane over levee_log
    ("dataplane", 6),   // inbound, attempt path, retry gate, proxy, fan-out
    ("control", 7),     // auth, plugin host/store, drop-in watch, changes
    ("api", 8),         // HTTP adapters
    ("app", 9),         // AppState, boot, listeners, lifecycle, shutdown
];

/// The crate root and the command line (`lib.rs`, `main.rs`, `cli.rs` or
/// `cli/`): above every layer, they may import anything.
const ROOT_MODULES: &[&str] = &["lib", "main", "cli"];

/// The rank of the crate root (`lib.rs` items such as `crate::AppState`).
const ROOT_RANK: u32 = u32::MAX;

/// The longest a source file may be, not counting its tests.
const MAX_LINES: usize = 500;

fn rank(module: &str) -> Option<u32> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|&(_, r)| r)
}

/// A reference from a layer file to a module of a higher rank.
#[derive(Debug, PartialEq)]
struct Upward {
    file: String,
    line: usize,
    /// The path as written, e.g. `crate::api::error::AppError`.
    path: String,
    from: String,
    to: String,
}

#[derive(Debug, Default)]
struct Report {
    /// Top-level entries of the tree that are not in [`LAYERS`].
    unknown: Vec<String>,
    upward: Vec<Upward>,
    /// `(file, line)` of every `AppState` below `api/`.
    app_state: Vec<(String, usize)>,
    /// `(file, lines before the first #[cfg(test)])` over [`MAX_LINES`].
    too_long: Vec<(String, usize)>,
    /// Groups of modules that import each other in a circle (same-layer
    /// imports are allowed, circles are not: they are how a flat folder
    /// grew a knot).
    cycles: Vec<Vec<String>>,
}

/// The checker's core: `files` are `(path relative to src, contents)`.
fn check(files: &[(String, String)]) -> Report {
    let mut files = files.to_vec();
    files.sort();
    let mut report = Report::default();
    // Each file's code with comments and literals blanked, then also with
    // its `#[cfg(test)]` items blanked.
    let mut scanned = Vec::new();
    // The files of `#[cfg(test)] mod name;` modules are test code as a whole.
    let mut test_files = Vec::new();
    // Module path (`cluster::health`) of every file, for the cycle check.
    let modules: Vec<String> = files.iter().map(|(path, _)| module_of(path)).collect();
    let mut edges: Vec<(String, String)> = Vec::new();
    for (path, text) in &files {
        let code = strip(text);
        let mut non_test = code.clone();
        let (whole_file_is_test, file_modules) = test_items(&mut non_test);
        // Where `mod name;` looks for `name.rs`: next to `lib.rs`, `main.rs`
        // and `mod.rs`, in `x/` for `x.rs`.
        let dir = if ["lib.rs", "main.rs"].contains(&path.as_str()) || path.ends_with("/mod.rs") {
            path.rsplit_once('/')
                .map_or(String::new(), |(dir, _)| format!("{dir}/"))
        } else {
            format!("{}/", path.trim_end_matches(".rs"))
        };
        for name in file_modules {
            test_files.push(format!("{dir}{name}.rs"));
            test_files.push(format!("{dir}{name}/"));
        }
        scanned.push((path, code, non_test, whole_file_is_test));
    }
    for (path, code, non_test, whole_file_is_test) in scanned {
        let is_test_file = whole_file_is_test
            || test_files
                .iter()
                .any(|t| path == t || (t.ends_with('/') && path.starts_with(t.as_str())));
        let lines = lines_before_tests(&code);
        if !is_test_file && lines > MAX_LINES {
            report.too_long.push((path.clone(), lines));
        }
        let (top, entry) = match path.split_once('/') {
            Some((dir, _)) => (dir, format!("{dir}/")),
            None => (path.trim_end_matches(".rs"), path.clone()),
        };
        if ROOT_MODULES.contains(&top) {
            continue;
        }
        let Some(own) = rank(top) else {
            if !report.unknown.contains(&entry) {
                report.unknown.push(entry);
            }
            continue;
        };
        if is_test_file {
            continue;
        }
        let depth = path.trim_end_matches("/mod.rs").split('/').count();
        let refs = references(&non_test, depth);
        let this = module_of(path);
        for (_, written, _) in &refs {
            if let Some(target) = resolve(&modules, written)
                && target != this
            {
                edges.push((this.clone(), target));
            }
        }
        for (pos, written, target) in refs {
            if rank(&target).unwrap_or(ROOT_RANK) > own {
                report.upward.push(Upward {
                    file: path.clone(),
                    line: line_of(&non_test, pos),
                    path: written,
                    from: top.to_string(),
                    to: target,
                });
            }
        }
        if own < rank("api").unwrap() {
            for (pos, _) in words(&non_test).filter(|&(_, word)| word == "AppState") {
                report
                    .app_state
                    .push((path.clone(), line_of(&non_test, pos)));
            }
        }
    }
    report.cycles = cycles(&modules, &edges);
    report
}

/// `cluster/health.rs` → `cluster::health`; `cluster/mod.rs` → `cluster`.
fn module_of(path: &str) -> String {
    let path = path.trim_end_matches(".rs").trim_end_matches("/mod");
    if ["lib", "main"].contains(&path) {
        return String::new();
    }
    path.replace('/', "::")
}

/// The file module a `crate::a::b::Item` path lands in: its longest prefix
/// that is a module of the tree.
fn resolve(modules: &[String], written: &str) -> Option<String> {
    let rest = written.strip_prefix("crate::")?;
    let segments: Vec<&str> = rest.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// Strongly connected groups of more than one module (Tarjan's algorithm,
/// iterative over at most `modules.len()` nodes).
fn cycles(modules: &[String], edges: &[(String, String)]) -> Vec<Vec<String>> {
    let index_of = |m: &str| modules.iter().position(|x| x == m);
    let n = modules.len();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (from, to) in edges {
        if let (Some(a), Some(b)) = (index_of(from), index_of(to)) {
            next[a].push(b);
        }
    }
    let (mut index, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let (mut on_stack, mut stack, mut counter) = (vec![false; n], Vec::new(), 0);
    let mut groups = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[v] == usize::MAX {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = next[v].get(*edge) {
                *edge += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut group = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    group.push(modules[w].clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    groups.push(group);
                }
            }
        }
    }
    groups
}

// ---- scanning -------------------------------------------------------------

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn line_of(code: &[u8], pos: usize) -> usize {
    code[..pos].iter().filter(|&&c| c == b'\n').count() + 1
}

/// The source with comments, strings and char literals blanked (newlines
/// kept, so line numbers hold) and non-ASCII turned into spaces.
fn strip(src: &str) -> Vec<u8> {
    let s: Vec<char> = src.chars().collect();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match literal_end(&s, i) {
            Some(end) => {
                out.extend(
                    s[i..end]
                        .iter()
                        .map(|&c| if c == '\n' { b'\n' } else { b' ' }),
                );
                i = end;
            }
            None => {
                out.push(if s[i].is_ascii() { s[i] as u8 } else { b' ' });
                i += 1;
            }
        }
    }
    out
}

/// The end of the comment or literal starting at `i`, if one does.
fn literal_end(s: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| s.get(k).copied().unwrap_or('\0');
    let find = |from: usize, c: char| {
        s[from.min(s.len())..]
            .iter()
            .position(|&x| x == c)
            .map(|n| from + n)
    };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    match (at(i), at(i + 1)) {
        ('/', '/') => Some(find(i, '\n').unwrap_or(s.len())),
        ('/', '*') => {
            let (mut depth, mut k) = (0, i);
            while k < s.len() {
                match (at(k), at(k + 1)) {
                    ('/', '*') => (depth, k) = (depth + 1, k + 2),
                    ('*', '/') if depth == 1 => return Some(k + 2),
                    ('*', '/') => (depth, k) = (depth - 1, k + 2),
                    _ => k += 1,
                }
            }
            Some(s.len())
        }
        ('"', _) => {
            let mut k = i + 1;
            while k < s.len() && at(k) != '"' {
                k += if at(k) == '\\' { 2 } else { 1 };
            }
            Some((k + 1).min(s.len()))
        }
        ('\'', '\\') => Some(find(i + 3, '\'').map_or(s.len(), |k| k + 1)),
        ('\'', c) if c != '\'' && at(i + 2) == '\'' => Some(i + 3),
        // Raw strings: r"..", r#".."#, br"..", cr"..".
        ('r', _)
            if i == 0
                || !ident(at(i - 1))
                || (matches!(at(i - 1), 'b' | 'c') && (i < 2 || !ident(at(i - 2)))) =>
        {
            let hashes = s[i + 1..].iter().take_while(|&&c| c == '#').count();
            if at(i + 1 + hashes) != '"' {
                return None;
            }
            let mut k = i + 2 + hashes;
            loop {
                k = find(k, '"')? + 1;
                if s[k..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes {
                    return Some(k + hashes);
                }
            }
        }
        _ => None,
    }
}

/// Every identifier with its position.
fn words(code: &[u8]) -> impl Iterator<Item = (usize, &str)> {
    (0..code.len())
        .filter(move |&i| is_ident(code[i]) && (i == 0 || !is_ident(code[i - 1])))
        .map(move |i| (i, ident_at(code, i)))
}

fn ident_at(code: &[u8], i: usize) -> &str {
    let len = code[i..].iter().take_while(|&&c| is_ident(c)).count();
    std::str::from_utf8(&code[i..i + len]).unwrap_or_default()
}

fn skip_ws(code: &[u8], mut i: usize) -> usize {
    while code.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// Matches `tokens` at `i` (whitespace allowed between them); the end.
fn tokens_at(code: &[u8], mut i: usize, tokens: &[&str]) -> Option<usize> {
    for token in tokens {
        i = skip_ws(code, i);
        if !code[i.min(code.len())..].starts_with(token.as_bytes()) {
            return None;
        }
        i += token.len();
    }
    Some(i)
}

/// The end of the bracket group opened at `open` (or of the input).
fn group_end(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Blanks every `#[cfg(test)]` item in `code`. Returns whether the whole
/// file is test code (`#![cfg(test)]`) and the names of `#[cfg(test)] mod
/// name;` file modules.
fn test_items(code: &mut [u8]) -> (bool, Vec<String>) {
    let whole = (0..code.len())
        .any(|i| tokens_at(code, i, &["#", "!", "[", "cfg", "(", "test", ")", "]"]).is_some());
    let mut file_modules = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let Some(attr_end) = tokens_at(code, i, &["#", "[", "cfg", "(", "test", ")", "]"])
            .filter(|_| code[i] == b'#')
        else {
            i += 1;
            continue;
        };
        // The item ends at a `;` outside brackets or at its closing brace.
        let mut end = attr_end;
        while end < code.len() && code[end] != b';' && code[end] != b'{' {
            end = match code[end] {
                b'(' | b'[' => group_end(code, end),
                _ => end + 1,
            };
        }
        let end = if code.get(end) == Some(&b'{') {
            group_end(code, end)
        } else {
            (end + 1).min(code.len())
        };
        let item = String::from_utf8_lossy(&code[attr_end..end]).into_owned();
        let mut tokens = item
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|t| !t.is_empty());
        if item.trim_end().ends_with(';') && tokens.any(|t| t == "mod") {
            file_modules.extend(tokens.next().map(str::to_string));
        }
        for c in &mut code[i..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        i = end;
    }
    (whole, file_modules)
}

/// The number of lines before the first `#[cfg(test)]` (all of them if none).
fn lines_before_tests(code: &[u8]) -> usize {
    let first = (0..code.len()).find(|&i| {
        code[i] == b'#' && tokens_at(code, i, &["#", "[", "cfg", "(", "test", ")", "]"]).is_some()
    });
    match first {
        Some(pos) => line_of(code, pos) - 1,
        None => String::from_utf8_lossy(code).lines().count(),
    }
}

/// Every path that leaves the file's top-level module: `crate::x..` and
/// `super::` chains that climb to the crate root. `depth` is the number of
/// segments of the file's module path (`dataplane/proxy.rs` → 2).
/// Returns `(position, path as written, top-level module it names)`.
fn references(code: &[u8], depth: usize) -> Vec<(usize, String, String)> {
    // Inline `mod name { .. }` blocks add a level each to `super::` chains.
    let mut inline_mods = Vec::new();
    for (pos, word) in words(code) {
        if word == "mod" {
            let name = skip_ws(code, pos + 3);
            let open = skip_ws(code, name + ident_at(code, name).len());
            if code.get(open) == Some(&b'{') && !ident_at(code, name).is_empty() {
                inline_mods.push(open..group_end(code, open));
            }
        }
    }
    let mut refs = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if !is_ident(code[i]) || (i > 0 && is_ident(code[i - 1])) {
            i += 1;
            continue;
        }
        let word = ident_at(code, i);
        if word == "crate" {
            if let Some(after) = tokens_at(code, i + 5, &["::"]) {
                heads(code, after, "crate::", &mut refs);
            }
        } else if word == "super" {
            let (mut supers, mut k) = (0, i);
            while ident_at(code, k) == "super" {
                let Some(after) = tokens_at(code, k + 5, &["::"]) else {
                    break;
                };
                supers += 1;
                k = skip_ws(code, after);
            }
            let here = depth + inline_mods.iter().filter(|m| m.contains(&i)).count();
            if supers > 0 && supers >= here {
                heads(code, k, &"super::".repeat(supers), &mut refs);
            }
            i = k.max(i + 5);
            continue;
        }
        i += word.len();
    }
    refs
}

/// The path(s) starting at `i` after `prefix`: `x::y`, `{a::b, c}` or `*`.
fn heads(code: &[u8], i: usize, prefix: &str, refs: &mut Vec<(usize, String, String)>) {
    let mut push = |pos: usize| {
        if code.get(pos) == Some(&b'*') {
            refs.push((pos, format!("{prefix}*"), "*".to_string()));
            return;
        }
        let first = ident_at(code, pos).to_string();
        if first.is_empty() || first == "self" {
            return;
        }
        let mut path = format!("{prefix}{first}");
        let mut k = pos + first.len();
        while let Some(next) = tokens_at(code, k, &["::"]).map(|a| skip_ws(code, a)) {
            let segment = ident_at(code, next);
            if segment.is_empty() {
                break;
            }
            path = format!("{path}::{segment}");
            k = next + segment.len();
        }
        refs.push((pos, path, first));
    };
    let i = skip_ws(code, i);
    if code.get(i) != Some(&b'{') {
        return push(i);
    }
    let (mut depth, mut expect_head) = (0usize, true);
    let end = group_end(code, i);
    for (k, &c) in code.iter().enumerate().take(end).skip(i) {
        match c {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 1 => expect_head = true,
            _ if depth == 1 && expect_head && !c.is_ascii_whitespace() => {
                push(k);
                expect_head = false;
            }
            _ => {}
        }
    }
}

// ---- the checks on host/src -----------------------------------------------

/// `host/src`, or `$LEVEE_LAYERS_DIR` when set.
fn source_dir() -> PathBuf {
    match std::env::var_os("LEVEE_LAYERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

/// Every `.rs` file under `dir`, as `(path relative to dir, contents)`.
fn load(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().components();
                let relative: Vec<_> = relative
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                files.push((relative.join("/"), text));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no .rs files under {}: nothing to check",
        dir.display()
    );
    files
}

fn report() -> Report {
    check(&load(&source_dir()))
}

fn layer_order() -> String {
    LAYERS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(" < ")
}

fn listing(upward: &[&Upward]) -> String {
    upward
        .iter()
        .map(|u| {
            let own = rank(&u.from).unwrap();
            let to = match rank(&u.to) {
                Some(to) => format!("{} (rank {to})", u.to),
                None => format!(
                    "`{}`, no layer (a crate-root item, or missing from LAYERS)",
                    u.to
                ),
            };
            format!(
                "  {}:{}: `{}`: {} (rank {own}) uses {to}\n",
                u.file, u.line, u.path, u.from
            )
        })
        .collect()
}

#[test]
fn every_top_level_module_has_a_layer() {
    let unknown = report().unknown;
    assert!(
        unknown.is_empty(),
        "top-level module(s) of {} with no layer: {}\nadd each to LAYERS in tests/layers.rs with its rank \
         ({}), or move it into an existing layer",
        source_dir().display(),
        unknown.join(", "),
        layer_order(),
    );
}

#[test]
fn no_upward_imports() {
    let report = report();
    let upward: Vec<&Upward> = report.upward.iter().collect();
    assert!(
        upward.is_empty(),
        "{} upward reference(s) in {} (a layer may only use its own rank or lower: {}):\n{}\
         move the code down a layer, or pass what it needs in from above (a value, a closure, a trait)",
        upward.len(),
        source_dir().display(),
        layer_order(),
        listing(&upward),
    );
}

#[test]
fn nothing_below_api_imports_api() {
    let report = report();
    let upward: Vec<&Upward> = report.upward.iter().filter(|u| u.to == "api").collect();
    assert!(
        upward.is_empty(),
        "{} reference(s) to api/ from below it in {}:\n{}\
         api/ holds the HTTP adapters: lower layers return their own errors and types, api/ maps them \
         (e.g. into AppError)",
        upward.len(),
        source_dir().display(),
        listing(&upward),
    );
}

#[test]
fn app_state_only_in_api_and_app() {
    let found = report().app_state;
    let lines: String = found
        .iter()
        .map(|(file, line)| format!("  {file}:{line}\n"))
        .collect();
    assert!(
        found.is_empty(),
        "`AppState` used below api/ in {}:\n{lines}take the narrow pieces you need (a service \
         directory, the client, a config) as parameters instead of the whole application state",
        source_dir().display(),
    );
}

#[test]
fn no_import_cycles() {
    let cycles = report().cycles;
    assert!(
        cycles.is_empty(),
        "modules of {} that import each other in a circle (make the dependency one-way: \
         move what both need into the lower one, or a new module below both):\n{}",
        source_dir().display(),
        cycles
            .iter()
            .map(|group| format!("  {}", group.join(" <-> ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn no_source_file_over_500_lines() {
    let too_long = report().too_long;
    let lines: String = too_long
        .iter()
        .map(|(file, n)| format!("  {file}: {n} lines\n"))
        .collect();
    assert!(
        too_long.is_empty(),
        "source file(s) in {} over {MAX_LINES} lines (counting lines before the first #[cfg(test)]):\n\
         {lines}split them along their responsibilities",
        source_dir().display(),
    );
}

// ---- self-tests: the checker on synthetic trees ---------------------------

fn synthetic(files: &[(&str, &str)]) -> Report {
    check(
        &files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect::<Vec<_>>(),
    )
}

fn found(report: &Report) -> Vec<(&str, usize, &str)> {
    report
        .upward
        .iter()
        .map(|u| (u.file.as_str(), u.line, u.path.as_str()))
        .collect()
}

#[test]
fn self_test_reports_upward_imports_and_only_those() {
    let report = synthetic(&[
        (
            "dataplane/x.rs",
            "use crate::api::error::AppError;\nuse crate::cluster::Ring;\n",
        ),
        (
            "base/y.rs",
            "use crate::{config::Config,\n  cluster::Ring};\nuse crate::base::clock;\n",
        ),
        (
            "base/z.rs",
            "// use crate::api::x;\n/// [`crate::app::AppState`]\n//! crate::app\n/* crate::app::AppState */\n\
             fn f() -> &'static str { \"crate::app::{\" }\nfn g() -> char { '{' }\n\
             #[cfg(test)]\nmod tests {\n    use crate::app::AppState;\n    fn h() { let _ = AppState; }\n}\n",
        ),
        ("lib.rs", "pub mod app;\nuse crate::app::AppState;\n"),
    ]);
    assert_eq!(
        found(&report),
        [
            ("base/y.rs", 1, "crate::config::Config"),
            ("base/y.rs", 2, "crate::cluster::Ring"),
            ("dataplane/x.rs", 1, "crate::api::error::AppError"),
        ]
    );
    assert_eq!(report.upward[2].to, "api");
    assert!(report.app_state.is_empty(), "{:?}", report.app_state);
    assert!(report.unknown.is_empty(), "{:?}", report.unknown);
}

#[test]
fn self_test_inline_paths_super_and_app_state() {
    let report = synthetic(&[
        (
            "policy/mod.rs",
            "fn f() { crate::metrics::foo(); crate::base::now(); }\nuse super::dataplane::X;\n",
        ),
        (
            "policy/bind/deep.rs",
            "use super::super::Local;\nuse super::super::super::api::Y;\nfn g(s: &AppState) {}\n\
             mod inner { use super::super::super::Z; }\n",
        ),
        ("config.rs", "use crate::*;\n"),
        ("app/state.rs", "pub struct AppState;\nuse crate::api::x;\n"),
    ]);
    assert_eq!(
        found(&report),
        [
            ("config.rs", 1, "crate::*"),
            ("policy/bind/deep.rs", 2, "super::super::super::api::Y"),
            ("policy/mod.rs", 1, "crate::metrics::foo"),
            ("policy/mod.rs", 2, "super::dataplane::X"),
        ]
    );
    assert_eq!(report.app_state, [("policy/bind/deep.rs".to_string(), 3)]);
}

#[test]
fn self_test_finds_import_cycles() {
    let report = synthetic(&[
        (
            "cluster/health.rs",
            "use crate::cluster::service::Service;\n",
        ),
        (
            "cluster/service.rs",
            "use crate::cluster::health::NodeHealth;\n",
        ),
        ("cluster/ring.rs", "use crate::config::Config;\n"),
        ("config/mod.rs", "pub struct Config;\n"),
    ]);
    assert_eq!(
        report.cycles,
        vec![vec![
            "cluster::health".to_string(),
            "cluster::service".to_string()
        ]]
    );
    let report = synthetic(&[
        ("cluster/health.rs", "pub struct NodeHealth;\n"),
        (
            "cluster/service.rs",
            "use crate::cluster::health::NodeHealth;\n",
        ),
    ]);
    assert!(report.cycles.is_empty(), "{:?}", report.cycles);
}

#[test]
fn self_test_unknown_modules_and_long_files() {
    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    let long_with_tests = format!(
        "{}#[cfg(test)]\nmod tests {{\n{long}}}\n",
        "fn f() {}\n".repeat(MAX_LINES)
    );
    let report = synthetic(&[
        ("boot.rs", "fn f() {}\n"),
        ("write/mod.rs", "fn f() {}\n"),
        ("write/fanout.rs", "fn f() {}\n"),
        ("main.rs", "fn main() {}\n"),
        (
            "cli/mod.rs",
            "use crate::app::AppState;\n#[cfg(test)]\nmod tests;\n",
        ),
        ("cli/tests.rs", &long),
        ("base/long.rs", &long),
        ("base/ok.rs", &long_with_tests),
        ("base/mod.rs", "#[cfg(test)]\nmod tests;\n"),
        (
            "base/tests.rs",
            &format!("use crate::app::AppState;\n{long}"),
        ),
    ]);
    assert_eq!(report.unknown, ["boot.rs", "write/"]);
    assert_eq!(
        report.too_long,
        [("base/long.rs".to_string(), MAX_LINES + 1)]
    );
    assert!(
        report.upward.is_empty() && report.app_state.is_empty(),
        "{report:?}"
    );
}
