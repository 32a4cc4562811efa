//! Where a client is, as far as answer selection cares, and great-circle distance.

use serde::{Deserialize, Serialize};

use crate::model::{Coordinates, SiteId};

/// A GeoIP answer in the model's terms (filled in by the DNS node from its database).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GeoLocation {
    pub continent: Option<String>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
    pub city: Option<String>,
    pub coordinates: Option<Coordinates>,
}

/// Where the client is, and how that was decided (DESIGN section 4, step 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum ClientLocation {
    /// The address is in one of the site's `client_networks`: the operator's knowledge.
    SiteNetwork { site: SiteId },
    /// The GeoIP database placed it.
    Geoip { location: GeoLocation },
    /// Neither knows it.
    Unknown,
}

impl ClientLocation {
    /// The point distances are measured from: the local site's location for a site network,
    /// the GeoIP coordinates otherwise.
    pub fn coordinates(&self, sites: &[crate::model::Site]) -> Option<Coordinates> {
        match self {
            ClientLocation::SiteNetwork { site } => sites[site.0 as usize].location,
            ClientLocation::Geoip { location } => location.coordinates,
            ClientLocation::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_between_the_test_sites() {
        let fra = Coordinates {
            lat: 50.1109,
            lon: 8.6821,
        };
        let iad = Coordinates {
            lat: 39.0438,
            lon: -77.4874,
        };
        let sin = Coordinates {
            lat: 1.3521,
            lon: 103.8198,
        };
        let fra_iad = fra.distance_km(&iad);
        let fra_sin = fra.distance_km(&sin);
        let iad_sin = iad.distance_km(&sin);
        assert!((6500.0..6600.0).contains(&fra_iad), "{fra_iad}");
        assert!((10200.0..10300.0).contains(&fra_sin), "{fra_sin}");
        assert!((15500.0..15700.0).contains(&iad_sin), "{iad_sin}");
        assert_eq!(fra.distance_km(&fra), 0.0);
        assert!((fra.distance_km(&iad) - iad.distance_km(&fra)).abs() < 1e-9);
    }
}
