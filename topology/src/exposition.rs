//! The Prometheus text exposition format (version 0.0.4), as every Portico binary writes
//! its `/metrics`: families with HELP and TYPE, samples with labels. Label values and help
//! texts are escaped, so a service, node or listener name with a quote, a backslash or a
//! newline cannot break the page. Pure text, no I/O (like [`crate::agent_check`]).

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A family with one sample per item: its name, kind, help, and an item's value.
pub type PerItem<'a, T> = (&'a str, Kind, &'a str, &'a dyn Fn(&T) -> u64);

/// The page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "metric name {name:?}");
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                debug_assert!(valid_name(label), "label name {label:?}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"");
                for c in text.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut page = Exposition::new();
        page.family("portico_x_total", Kind::Counter, "Things.\nMore \\ things.");
        page.sample(
            "portico_x_total",
            &[("node", "a\"b\\c\nd"), ("site", "fra")],
            3u64,
        );
        page.single("portico_up", Kind::Gauge, "Up.", 1);
        assert_eq!(
            page.finish(),
            "# HELP portico_x_total Things.\\nMore \\\\ things.\n# TYPE portico_x_total counter\n\
             portico_x_total{node=\"a\\\"b\\\\c\\nd\",site=\"fra\"} 3\n\
             # HELP portico_up Up.\n# TYPE portico_up gauge\nportico_up 1\n"
        );
    }
}
