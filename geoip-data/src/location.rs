//! What the database says of an address.

/// Where a client address is, as far as the database knows; every field may be missing.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Location {
    /// Continent code, e.g. `"EU"` (`continent.code`).
    pub continent: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `"DE"` (`country.iso_code`).
    pub country: Option<String>,
    /// ISO code of the first (largest) subdivision, e.g. `"HE"`.
    pub subdivision: Option<String>,
    /// English city name (`city.names.en`).
    pub city: Option<String>,
    /// `(latitude, longitude)` in degrees; `None` in Country databases.
    pub coordinates: Option<(f64, f64)>,
}
