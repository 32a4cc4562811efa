//! "Why did this client get this answer?": selection plus where the client was placed and
//! how far each site is, for the admin API and the debug TXT query.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::geo::ClientLocation;
use crate::model::{Deployment, ServiceId};
use crate::select::{Explanation, Family, Outcome, classify, select};
use crate::state::{State, Timestamp};

/// A full explanation of one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    pub location: ClientLocation,
    /// The site whose client networks hold the client, if any.
    pub client_site: Option<String>,
    /// The answer as the next query would get it (the first rotation).
    pub answers: Vec<IpAddr>,
    /// How many rotations the answer has.
    pub rotations: usize,
    #[serde(flatten)]
    pub explanation: Explanation,
}

/// Explains the answer of `service` for a client at `location`.
pub fn explain(
    deployment: &Deployment,
    state: &State,
    service: ServiceId,
    family: Family,
    location: &ClientLocation,
    now: Timestamp,
) -> Explain {
    explain_with_class(
        deployment,
        state,
        service,
        family,
        location,
        &classify(deployment, location),
        now,
    )
}

/// [`explain`] for a client whose class is already known (from the [`crate::ClassTable`],
/// which also knows the RTT-measured prefixes the `latency` policy uses).
pub fn explain_with_class(
    deployment: &Deployment,
    state: &State,
    service: ServiceId,
    family: Family,
    location: &ClientLocation,
    class: &crate::select::ClientClass,
    now: Timestamp,
) -> Explain {
    let selection = select(deployment, state, service, family, class, now);
    let answers = selection.first_addresses(deployment, state);
    let mut explanation = selection.explanation;
    let origin = location.coordinates(&deployment.sites);
    for report in &mut explanation.sites {
        let site = deployment
            .site_by_name(&report.site)
            .map(|id| deployment.site(id));
        report.distance_km = match (origin, site.and_then(|s| s.location)) {
            (Some(from), Some(to)) => Some((from.distance_km(&to) * 10.0).round() / 10.0),
            _ => None,
        };
    }
    Explain {
        client_site: match location {
            ClientLocation::SiteNetwork { site } => Some(deployment.site(*site).name.clone()),
            _ => None,
        },
        location: location.clone(),
        answers,
        rotations: selection.variants.len(),
        explanation,
    }
}

impl Explain {
    /// Short lines for a TXT answer (each well under 255 octets).
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.push(match &self.location {
            ClientLocation::SiteNetwork { .. } => format!(
                "client: in a client network of site {}",
                self.client_site.as_deref().unwrap_or("?")
            ),
            ClientLocation::Geoip { location } => format!(
                "client: geoip {}/{} {}",
                location.continent.as_deref().unwrap_or("?"),
                location.country.as_deref().unwrap_or("?"),
                location.city.as_deref().unwrap_or("")
            ),
            ClientLocation::Unknown => "client: location unknown".to_owned(),
        });
        lines.push(format!(
            "policy {}, order by {}",
            self.explanation.policy.name(),
            self.explanation.order_source
        ));
        for site in &self.explanation.sites {
            let remarks: Vec<String> = site
                .members
                .iter()
                .filter_map(|m| match (&m.ineligible, &m.note) {
                    (Some(why), _) => Some(format!("{} {why}", m.node)),
                    (None, Some(note)) => Some(format!("{} {note}", m.node)),
                    (None, None) => None,
                })
                .collect();
            let mut line = site.headline();
            if let Some(km) = site.distance_km {
                line.push_str(&format!(" {km:.0}km"));
            }
            if !remarks.is_empty() {
                line.push_str(&format!(" ({})", remarks.join("; ")));
            }
            line.truncate(250);
            lines.push(line);
        }
        lines.push(match &self.explanation.outcome {
            Outcome::Site { site, spilled_to } if spilled_to.is_empty() => {
                format!("answer: site {site}")
            }
            Outcome::Site { site, spilled_to } => {
                format!("answer: site {site}, spilled to {}", spilled_to.join(","))
            }
            Outcome::Spread { sites } => format!("answer: spread over {}", sites.join(",")),
            Outcome::FailOpen { site } => format!("answer: fail open (all down), site {site}"),
            Outcome::Nodata { why } => format!("answer: nodata ({why})"),
        });
        let answers: Vec<String> = self.answers.iter().map(ToString::to_string).collect();
        lines.push(format!("addresses: {}", answers.join(" ")));
        lines
    }
}
