//! Domain names as the model sees them: absolute, lower-cased, validated.

use std::fmt;

/// An absolute domain name in presentation form, lower-cased, always ending in `.`
/// (the root is `"."`). Labels are 1..=63 octets of letters, digits, `-` or `_`, and the
/// whole name fits the 255-octet wire limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DomainName(String);

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    #[error("label {0:?} is longer than 63 octets")]
    LabelTooLong(String),
    #[error("name {0:?} is longer than 255 octets on the wire")]
    TooLong(String),
    #[error("label {0:?} has a character other than a letter, digit, '-' or '_'")]
    BadCharacter(String),
    #[error("{0:?} is relative and there is no origin to complete it")]
    Relative(String),
}

impl DomainName {
    /// The root name `.`.
    pub fn root() -> Self {
        DomainName(".".to_owned())
    }

    /// Parses an absolute name (`a.b.`) or, with an `origin`, a relative one (`a` becomes
    /// `a.<origin>`, `@` is the origin itself).
    pub fn parse(text: &str, origin: Option<&DomainName>) -> Result<Self, NameError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text == "." {
            return Ok(Self::root());
        }
        if text == "@" {
            return origin
                .cloned()
                .ok_or_else(|| NameError::Relative(text.to_owned()));
        }
        let full = if let Some(absolute) = text.strip_suffix('.') {
            absolute.to_ascii_lowercase()
        } else {
            let origin = origin.ok_or_else(|| NameError::Relative(text.to_owned()))?;
            let lowered = text.to_ascii_lowercase();
            if origin.is_root() {
                lowered
            } else {
                format!("{lowered}.{}", origin.0.trim_end_matches('.'))
            }
        };
        let mut wire_len = 1;
        for label in full.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(text.to_owned()));
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong(label.to_owned()));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
            {
                return Err(NameError::BadCharacter(label.to_owned()));
            }
            wire_len += 1 + label.len();
        }
        if wire_len > 255 {
            return Err(NameError::TooLong(text.to_owned()));
        }
        Ok(DomainName(format!("{full}.")))
    }

    /// True for the root name.
    pub fn is_root(&self) -> bool {
        self.0 == "."
    }

    /// The presentation form, with the trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels from the leftmost to the rightmost, without the root.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.').filter(|label| !label.is_empty())
    }

    /// Number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// True when `self` equals `ancestor` or lies below it.
    pub fn is_within(&self, ancestor: &DomainName) -> bool {
        if ancestor.is_root() || self == ancestor {
            return true;
        }
        self.0
            .strip_suffix(ancestor.0.as_str())
            .is_some_and(|prefix| prefix.ends_with('.'))
    }

    /// The name in uncompressed wire form (length-prefixed labels, then the root octet).
    pub fn to_wire(&self) -> Vec<u8> {
        let mut wire = Vec::with_capacity(self.0.len() + 1);
        for label in self.labels() {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        wire
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> DomainName {
        DomainName::parse("Storage.Example.", None).unwrap()
    }

    #[test]
    fn parses_absolute_relative_and_apex() {
        assert_eq!(origin().as_str(), "storage.example.");
        let o = origin();
        assert_eq!(
            DomainName::parse("S3", Some(&o)).unwrap().as_str(),
            "s3.storage.example."
        );
        assert_eq!(DomainName::parse("@", Some(&o)).unwrap(), o);
        assert_eq!(
            DomainName::parse("_s3._tcp", Some(&o)).unwrap().as_str(),
            "_s3._tcp.storage.example."
        );
    }

    #[test]
    fn rejects_bad_names() {
        let o = origin();
        assert!(matches!(
            DomainName::parse("a..b.", None),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(
            DomainName::parse(&"x".repeat(64), Some(&o)),
            Err(NameError::LabelTooLong(_))
        ));
        assert!(matches!(
            DomainName::parse("a b", Some(&o)),
            Err(NameError::BadCharacter(_))
        ));
        assert!(matches!(
            DomainName::parse("relative", None),
            Err(NameError::Relative(_))
        ));
        let long = vec!["abcdefghij"; 30].join(".") + ".";
        assert!(matches!(
            DomainName::parse(&long, None),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn within_and_wire() {
        let o = origin();
        let s3 = DomainName::parse("s3", Some(&o)).unwrap();
        assert!(s3.is_within(&o));
        assert!(o.is_within(&o));
        assert!(!o.is_within(&s3));
        let other = DomainName::parse("xstorage.example.", None).unwrap();
        assert!(!other.is_within(&o));
        assert_eq!(
            o.to_wire(),
            b"\x07storage\x07example\x00".to_vec(),
            "uncompressed wire form"
        );
        assert_eq!(DomainName::root().to_wire(), vec![0]);
    }
}
