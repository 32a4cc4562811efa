//! The module graph of a crate, read from its sources as text, and its cycles: "no module
//! imports form a cycle" (DESIGN section 2). A module is a file; it depends on another when
//! it names it (`crate::a::b`, `super::x`, a child's name, a `mod` declaration); a name
//! re-exported with `pub use` counts as the module that defines it. Test modules
//! (`tests.rs`, `#[cfg(test)] mod tests`) and comments are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path inside its crate (`[]` is the crate root).
pub type ModulePath = Vec<String>;

/// One crate's modules: their text (tests and comments removed) by path.
pub struct Crate {
    pub modules: BTreeMap<ModulePath, String>,
}

impl Crate {
    /// Reads `src` of a library crate (binaries' `main.rs` and `bin/` are their own crates).
    pub fn read(src: &Path) -> Crate {
        let mut modules = BTreeMap::new();
        for file in super::walk(src) {
            let relative = file.strip_prefix(src).unwrap();
            let parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let last = parts.last().unwrap().as_str();
            if last == "main.rs" || parts[0] == "bin" || last == "tests.rs" {
                continue;
            }
            let mut path: ModulePath = parts.clone();
            let file_name = path.pop().unwrap();
            match file_name.as_str() {
                "lib.rs" | "mod.rs" => {}
                other => path.push(other.trim_end_matches(".rs").to_owned()),
            }
            let text = std::fs::read_to_string(&file).unwrap();
            modules.insert(path, strip(&text));
        }
        Crate { modules }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.modules.contains_key(path)
    }

    /// `pub use` re-exports: (module, name) -> the module the name comes from.
    fn reexports(&self) -> BTreeMap<(ModulePath, String), ModulePath> {
        let mut map = BTreeMap::new();
        for (module, text) in &self.modules {
            for (public, path) in uses(text) {
                if !public {
                    continue;
                }
                if let Some((item, from)) = path.split_last()
                    && let Some(target) = self.base(module, from)
                {
                    let name = item.rsplit(" as ").next().unwrap().trim().to_owned();
                    map.insert((module.clone(), name), target);
                }
            }
        }
        map
    }

    /// The module a path prefix (`crate::a`, `super::super`, `child`) names from `module`.
    fn base(&self, module: &ModulePath, segments: &[String]) -> Option<ModulePath> {
        let mut base = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("self") => module.clone(),
            Some("super") => {
                let mut base = module.clone();
                for segment in segments.iter().take_while(|s| *s == "super") {
                    let _ = segment;
                    base.pop()?;
                }
                base
            }
            Some(first) => {
                let mut child = module.clone();
                child.push(first.to_owned());
                if !self.is_module(&child) {
                    return None;
                }
                module.clone()
            }
            None => return Some(module.clone()),
        };
        let skip = match segments.first().map(String::as_str) {
            Some("crate" | "self") => 1,
            Some("super") => segments.iter().take_while(|s| *s == "super").count(),
            _ => 0,
        };
        for segment in &segments[skip..] {
            let mut next = base.clone();
            next.push(segment.clone());
            if !self.is_module(&next) {
                return None;
            }
            base = next;
        }
        Some(base)
    }

    /// What `segments` (a whole path, item last) names from `module`: a module.
    fn resolve(
        &self,
        module: &ModulePath,
        segments: &[String],
        reexports: &BTreeMap<(ModulePath, String), ModulePath>,
    ) -> Option<ModulePath> {
        // The longest prefix that is a module, then the item in it (maybe re-exported).
        for cut in (1..=segments.len()).rev() {
            if let Some(base) = self.base(module, &segments[..cut]) {
                let mut target = base;
                if let Some(item) = segments.get(cut) {
                    let mut seen = 0;
                    while let Some(from) = reexports.get(&(target.clone(), item.clone())) {
                        target = from.clone();
                        seen += 1;
                        if seen > 8 {
                            break;
                        }
                    }
                }
                return Some(target);
            }
        }
        None
    }

    /// Module -> the modules it depends on.
    pub fn graph(&self) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
        let reexports = self.reexports();
        let mut graph: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
        for (module, text) in &self.modules {
            let edges = graph.entry(module.clone()).or_default();
            // `mod child;`: the parent depends on its child.
            for line in text.lines() {
                let line = line
                    .trim()
                    .trim_start_matches("pub ")
                    .trim_start_matches("pub(crate) ");
                if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
                    let mut child = module.clone();
                    child.push(name.trim().to_owned());
                    if self.is_module(&child) {
                        edges.insert(child);
                    }
                }
            }
            let mut paths: Vec<Vec<String>> = uses(text).into_iter().map(|(_, p)| p).collect();
            paths.extend(inline_paths(text));
            for path in paths {
                if let Some(target) = self.resolve(module, &path, &reexports)
                    && &target != module
                {
                    edges.insert(target);
                }
            }
        }
        graph
    }
}

/// The text without comments and without the inline test module at the end.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `use` tree flattened into paths, with whether it is `pub`.
fn uses(text: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let boundary = before
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == ';' || c == '{' || c == '}');
        let public =
            before.trim_end().ends_with("pub") || before.trim_end().ends_with("pub(crate)");
        rest = &rest[at + 4..];
        if !boundary {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end]
            .chars()
            .filter(|c| !c.is_whitespace() || *c == ' ')
            .collect();
        for path in flatten(&tree.replace(' ', "").replace("as", " as ")) {
            out.push((public, path));
        }
        rest = &rest[end..];
    }
    out
}

/// `a::{b, c::{d, e as f}}` -> `a::b`, `a::c::d`, `a::c::e as f`.
fn flatten(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![
            tree.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty() && p.trim() != "self")
        .flat_map(flatten)
        .map(|tail| prefix.iter().cloned().chain(tail).collect())
        .collect()
}

/// Paths written in code: `crate::a::b`, `super::c::d`, `child::item`.
fn inline_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let mut segments = Vec::new();
            let mut j = i;
            loop {
                let start = j;
                while j < bytes.len() && ident(bytes[j]) {
                    j += 1;
                }
                segments.push(text[start..j].to_owned());
                if text[j..].starts_with("::") && j + 2 < bytes.len() && ident(bytes[j + 2]) {
                    j += 2;
                } else {
                    break;
                }
            }
            if segments.len() > 1 {
                out.push(segments);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The cycles of `graph`: its strongly connected components of more than one module.
pub fn cycles(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<Vec<ModulePath>> {
    // Tarjan's algorithm.
    struct State<'a> {
        graph: &'a BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        index: BTreeMap<&'a ModulePath, usize>,
        low: BTreeMap<&'a ModulePath, usize>,
        stack: Vec<&'a ModulePath>,
        on_stack: BTreeSet<&'a ModulePath>,
        next: usize,
        found: Vec<Vec<ModulePath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModulePath) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let Some((w, _)) = s.graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// `crate::api::store` for a module path.
pub fn name(path: &ModulePath) -> String {
    std::iter::once("crate".to_owned())
        .chain(path.iter().cloned())
        .collect::<Vec<_>>()
        .join("::")
}

#[test]
fn the_reader_finds_a_planted_cycle() {
    let mut modules = BTreeMap::new();
    modules.insert(
        Vec::new(),
        strip("pub mod a;\npub mod b;\npub use b::Thing;\n"),
    );
    modules.insert(
        vec!["a".to_owned()],
        strip("use crate::Thing;\nfn f() {}\n"),
    );
    modules.insert(
        vec!["b".to_owned()],
        strip("use super::a; // a comment naming crate::x\npub struct Thing;\n"),
    );
    let graph = Crate { modules }.graph();
    assert!(
        graph[&vec!["a".to_owned()]].contains(&vec!["b".to_owned()]),
        "through the re-export: {graph:?}"
    );
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0], vec![vec!["a".to_owned()], vec!["b".to_owned()]]);
    assert_eq!(
        flatten("crate::{a::{b, c as d}, e}"),
        vec![
            vec!["crate", "a", "b"],
            vec!["crate", "a", "c as d"],
            vec!["crate", "e"]
        ]
    );
}
