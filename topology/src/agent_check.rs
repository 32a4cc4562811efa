//! The HAProxy agent-check text protocol, as storage nodes' load-feedback agents speak it:
//! the agent writes one line and closes. Words are separated by spaces, tabs or commas:
//! `N%` (weight), `maxconn:N`, `ready`, `drain`, `maint`, `up`, `down`, `fail`, `stopped`,
//! and an optional reason after a space and `#` (`down #disk full`). Pure parsing; the site
//! agent reads the line.

use serde::{Deserialize, Serialize};

/// The administrative state an agent asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentAdmin {
    /// Leaves drain or maintenance.
    Ready,
    /// No new traffic.
    Drain,
    /// Maintenance: out of service.
    Maint,
}

/// The health an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentHealth {
    Up,
    /// `down`, `fail` or `stopped`.
    Down,
}

/// What one agent reply says; `None` fields were not mentioned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFeedback {
    pub weight_percent: Option<u32>,
    pub maxconn: Option<u32>,
    pub admin: Option<AgentAdmin>,
    pub health: Option<AgentHealth>,
    pub reason: Option<String>,
}

/// A reply HAProxy would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentParseError {
    #[error("empty agent reply")]
    Empty,
    #[error("unknown agent word {0:?}")]
    UnknownWord(String),
    #[error("bad weight {0:?} (expected N%)")]
    BadWeight(String),
    #[error("bad maxconn {0:?}")]
    BadMaxconn(String),
}

/// Weights above this are capped (HAProxy's limit for a relative weight).
pub const MAX_WEIGHT_PERCENT: u32 = 256;

/// Parses one agent reply line.
pub fn parse_agent_reply(line: &str) -> Result<AgentFeedback, AgentParseError> {
    let line = line.trim_end_matches(['\r', '\n', '\0']);
    // A reason starts at a `#` that follows whitespace (or opens the line); `down#x` with
    // no space is a malformed word, as HAProxy has it.
    let reason_at = line
        .char_indices()
        .find(|(i, c)| *c == '#' && (*i == 0 || line[..*i].ends_with([' ', '\t'])))
        .map(|(i, _)| i);
    let (words, reason) = match reason_at {
        Some(at) => (&line[..at], Some(line[at + 1..].trim().to_owned())),
        None => (line, None),
    };
    let mut feedback = AgentFeedback {
        reason: reason.filter(|r| !r.is_empty()),
        ..AgentFeedback::default()
    };
    let mut any = false;
    for word in words.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
        any = true;
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "ready" => feedback.admin = Some(AgentAdmin::Ready),
            "drain" => feedback.admin = Some(AgentAdmin::Drain),
            "maint" => feedback.admin = Some(AgentAdmin::Maint),
            "up" => feedback.health = Some(AgentHealth::Up),
            "down" | "fail" | "stopped" => feedback.health = Some(AgentHealth::Down),
            _ if lower.ends_with('%') => {
                let value: u32 = lower[..lower.len() - 1]
                    .parse()
                    .map_err(|_| AgentParseError::BadWeight(word.to_owned()))?;
                feedback.weight_percent = Some(value.min(MAX_WEIGHT_PERCENT));
            }
            _ if lower.starts_with("maxconn:") => {
                feedback.maxconn = Some(
                    lower["maxconn:".len()..]
                        .parse()
                        .map_err(|_| AgentParseError::BadMaxconn(word.to_owned()))?,
                );
            }
            _ => return Err(AgentParseError::UnknownWord(word.to_owned())),
        }
    }
    if !any && feedback.reason.is_none() {
        return Err(AgentParseError::Empty);
    }
    Ok(feedback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(
        weight: Option<u32>,
        admin: Option<AgentAdmin>,
        health: Option<AgentHealth>,
        reason: Option<&str>,
    ) -> AgentFeedback {
        AgentFeedback {
            weight_percent: weight,
            maxconn: None,
            admin,
            health,
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn golden_agent_replies() {
        use AgentAdmin::*;
        use AgentHealth::*;
        let cases: Vec<(&str, Result<AgentFeedback, AgentParseError>)> = vec![
            ("75%\n", Ok(fb(Some(75), None, None, None))),
            ("up 50%", Ok(fb(Some(50), None, Some(Up), None))),
            ("drain", Ok(fb(None, Some(Drain), None, None))),
            ("maint\r\n", Ok(fb(None, Some(Maint), None, None))),
            ("ready,100%", Ok(fb(Some(100), Some(Ready), None, None))),
            (
                "down #disk full",
                Ok(fb(None, None, Some(Down), Some("disk full"))),
            ),
            ("fail", Ok(fb(None, None, Some(Down), None))),
            ("stopped", Ok(fb(None, None, Some(Down), None))),
            ("up\tready 0%", Ok(fb(Some(0), Some(Ready), Some(Up), None))),
            ("1000%", Ok(fb(Some(MAX_WEIGHT_PERCENT), None, None, None))),
            ("DRAIN 10%", Ok(fb(Some(10), Some(Drain), None, None))),
            ("down#x", Err(AgentParseError::UnknownWord("down#x".into()))),
            ("", Err(AgentParseError::Empty)),
            ("hello", Err(AgentParseError::UnknownWord("hello".into()))),
            ("x%", Err(AgentParseError::BadWeight("x%".into()))),
            (
                "maxconn:abc",
                Err(AgentParseError::BadMaxconn("maxconn:abc".into())),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_agent_reply(line), expected, "{line:?}");
        }
        assert_eq!(
            parse_agent_reply("up maxconn:30").unwrap().maxconn,
            Some(30)
        );
    }
}
