//! Maps between key paths (`service[0].members[1].site`) and places in the TOML source, so
//! every configuration error can name its key and its line.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root to a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn key(&self, key: &str) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }
    pub fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }
}

impl From<&str> for KeyPath {
    fn from(dotted: &str) -> Self {
        KeyPath(
            dotted
                .split('.')
                .map(|key| Segment::Key(key.to_owned()))
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// The source span of the value at `path` (of its key, for tables and arrays), or of its
/// nearest existing ancestor; `None` when not even the first key is written.
pub fn span_of(source: &str, path: &KeyPath) -> Option<Range<usize>> {
    let document = DeTable::parse(source).ok()?;
    let mut span = None;
    let mut table: Option<&DeTable<'_>> = Some(document.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for segment in &path.0 {
        let next = match (segment, table, value) {
            (Segment::Key(key), Some(t), _) => t
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                .map(|(k, v)| (k.span(), v)),
            (Segment::Index(i), _, Some(DeValue::Array(items))) => {
                items.get(*i).map(|v| (v.span(), v))
            }
            _ => None,
        };
        let Some((key_span, next)) = next else { break };
        span = Some(match next.get_ref() {
            DeValue::Table(_) | DeValue::Array(_) => key_span,
            _ => next.span(),
        });
        value = Some(next.get_ref());
        table = match next.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

/// The key path that a parser error at `offset` is about: the innermost key or value whose
/// span holds `offset`; failing that (a syntax error between values), the last key or value
/// starting before `offset` on the same line; failing that, the `[table]` or `[[array]]`
/// whose header comes last before `offset`; else the empty path.
///
/// Tables written with a header (`[zone]`, `[[service]]`) have only their header as span,
/// so every entry of the document is considered, not only those whose parent's span holds
/// `offset`. A document with syntax errors is read as far as the parser can recover.
pub fn path_at(source: &str, offset: usize) -> KeyPath {
    let (document, _errors) = DeTable::parse_recoverable(source);
    let mut places = Vec::new();
    collect_table(source, document.get_ref(), &KeyPath::default(), &mut places);
    let line_start = source[..offset.min(source.len())]
        .rfind('\n')
        .map_or(0, |nl| nl + 1);
    // Deeper paths win ties: an `[[array]]` item and the array share the item's header.
    let innermost = places
        .iter()
        .filter(|p| p.span.start <= offset && offset < p.span.end)
        .min_by_key(|p| (p.span.len(), usize::MAX - p.path.0.len()));
    let before_on_line = || {
        places
            .iter()
            .filter(|p| line_start <= p.span.start && p.span.start <= offset)
            .max_by_key(|p| (p.span.start, p.path.0.len()))
    };
    let section = || {
        places
            .iter()
            .filter(|p| p.header && p.span.start <= offset)
            .max_by_key(|p| (p.span.start, p.path.0.len()))
    };
    if let Some(place) = innermost.or_else(before_on_line) {
        return place.path.clone();
    }
    // A key the parser could not keep (a duplicate, a value it could not read) is named
    // from the text of its line, below the section it is in.
    let mut path = section().map(|p| p.path.clone()).unwrap_or_default();
    path.0
        .extend(leading_key(&source[line_start..]).map(|k| Segment::Key(k.to_owned())));
    path
}

/// The bare (possibly dotted) key a `key = value` line starts with, as its parts.
fn leading_key(line: &str) -> impl Iterator<Item = &str> {
    let line = line.trim_start();
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    let is_key = end > 0 && line[end..].trim_start().starts_with('=');
    line[..if is_key { end } else { 0 }]
        .split('.')
        .filter(|part| !part.is_empty())
}

/// A key or value of the document and where it is written.
struct Place {
    path: KeyPath,
    span: Range<usize>,
    /// A table written as `[header]` or `[[header]]` (its span is the header).
    header: bool,
}

fn collect_table(source: &str, table: &DeTable<'_>, path: &KeyPath, out: &mut Vec<Place>) {
    for (key, value) in table.iter() {
        if key.get_ref().is_empty() {
            // What the parser made of a line with no key (`= 5`).
            continue;
        }
        let path = path.key(key.get_ref().as_ref());
        out.push(Place {
            path: path.clone(),
            span: key.span(),
            header: false,
        });
        collect_value(source, value, path, out);
    }
}

fn collect_value(
    source: &str,
    value: &toml::Spanned<DeValue<'_>>,
    path: KeyPath,
    out: &mut Vec<Place>,
) {
    let span = value.span();
    match value.get_ref() {
        DeValue::Table(table) => {
            collect_table(source, table, &path, out);
            let header = source.get(span.clone()).is_some_and(|s| s.starts_with('['));
            out.push(Place { path, span, header });
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_value(source, item, path.index(i), out);
            }
            out.push(Place {
                path,
                span,
                header: false,
            });
        }
        _ => out.push(Place {
            path,
            span,
            header: false,
        }),
    }
}
