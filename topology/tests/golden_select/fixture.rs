//! The deployment, the GeoIP table, state tweaks and renderings shared by the golden tests.

use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;
use topology::select::Outcome;
use topology::{
    AdminState, ClassTable, Config, Coordinates, Deployment, Family, GeoLocation, Health, MemberId,
    Selection, ServiceId, State, Timestamp, VantageSeen, select,
};

pub const DEPLOYMENT: &str = include_str!("deployment.toml");

pub const NOW: Timestamp = Timestamp(1_000_000);
pub const A: Family = Family::V4;
pub const AAAA: Family = Family::V6;

// Clients, as the DNS front would see them (the ECS address or the resolver's).
pub const FRA_NET: &str = "127.1.0.9"; // fra's client_networks
pub const IAD_NET: &str = "127.2.0.9"; // iad's client_networks
pub const SIN_NET: &str = "127.3.0.9"; // sin's client_networks
pub const GEO_FRA: &str = "192.0.2.7"; // GeoIP: Frankfurt
pub const GEO_IAD: &str = "198.51.100.7"; // GeoIP: Ashburn
pub const GEO_SIN: &str = "203.0.113.7"; // GeoIP: Singapore
pub const GEO_DXB: &str = "100.64.0.7"; // GeoIP: Dubai (fra 4836 km, sin 5837 km, iad 11348 km)
pub const GEO_NOWHERE: &str = "100.65.0.7"; // GeoIP: a country without coordinates
pub const UNKNOWN: &str = "10.99.0.1"; // in no table

pub fn place(city: &str, country: &str, continent: &str, lat: f64, lon: f64) -> GeoLocation {
    GeoLocation {
        continent: Some(continent.into()),
        country: Some(country.into()),
        subdivision: None,
        city: Some(city.into()),
        coordinates: Some(Coordinates { lat, lon }),
    }
}

pub fn frankfurt() -> GeoLocation {
    place("Frankfurt", "DE", "EU", 50.1109, 8.6821)
}
pub fn ashburn() -> GeoLocation {
    place("Ashburn", "US", "NA", 39.0438, -77.4874)
}
pub fn singapore() -> GeoLocation {
    place("Singapore", "SG", "AS", 1.3521, 103.8198)
}

/// The GeoIP database of these tests, as (network, location) in database order.
pub fn geoip() -> Vec<(IpNet, GeoLocation)> {
    let net = |text: &str| text.parse::<IpNet>().unwrap();
    vec![
        (net("192.0.2.0/24"), frankfurt()),
        (net("198.51.100.0/24"), ashburn()),
        (net("203.0.113.0/24"), singapore()),
        (
            net("100.64.0.0/16"),
            place("Dubai", "AE", "AS", 25.2048, 55.2708),
        ),
        (
            net("100.65.0.0/16"),
            GeoLocation {
                country: Some("ZZ".into()),
                ..GeoLocation::default()
            },
        ),
        // Painted under the sites' client networks: the operator's networks must win.
        (net("127.0.0.0/8"), singapore()),
        (net("127.1.5.0/24"), ashburn()),
        (net("2001:db8::/32"), ashburn()),
    ]
}

pub struct Fixture {
    pub deployment: Deployment,
    pub table: ClassTable,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let deployment = Config::from_toml(DEPLOYMENT, 0)
            .expect("the test deployment is valid")
            .deployment;
        let table = ClassTable::build(&deployment, geoip());
        Fixture { deployment, table }
    })
}

/// A change to the initial state. Node names are those of the case's service.
#[derive(Debug, Clone, Copy)]
pub enum Tweak {
    Up(&'static str),
    Down(&'static str),
    Drain(&'static str),
    Maint(&'static str),
    Force(&'static str),
    /// Load-feedback weight in percent.
    Pct(&'static str, u32),
    /// Every member of the service in this site is down.
    SiteDown(&'static str),
    SiteDrain(&'static str),
    SiteMaint(&'static str),
    SiteForce(&'static str),
    /// The site's agent last reported this many milliseconds before `NOW`.
    Report(&'static str, u64),
    /// Another site's agent probed the member across sites this many milliseconds before
    /// `NOW` and found it serving (`true`) or not.
    Seen(&'static str, &'static str, bool, u64),
    /// Every member of the service up, every site reported at `NOW`.
    AllUp,
    AllDown,
    /// Every member of the service drained (an admin action on the service).
    AllDrain,
}
pub use Tweak::*;

pub fn state_with(d: &Deployment, service: ServiceId, tweaks: &[Tweak]) -> State {
    let mut state = State::initial(d);
    let name = &d.service(service).name;
    let member = |node: &str| {
        d.member_by_name(name, node)
            .unwrap_or_else(|| panic!("no member {node} in {name}"))
    };
    let site = |site: &str| {
        d.site_by_name(site)
            .unwrap_or_else(|| panic!("no site {site}"))
    };
    let members = d.service(service).members.clone();
    for tweak in tweaks {
        let mut set_health = |id, health: Health, reason: &str| {
            let m = state.member_mut(id);
            m.health = health;
            m.reason = reason.into();
        };
        match *tweak {
            Up(node) => set_health(member(node), Health::Up, "ok"),
            Down(node) => set_health(member(node), Health::Down, "probe failed"),
            SiteDown(s) => {
                for id in members.iter().filter(|m| d.member(**m).site == site(s)) {
                    set_health(*id, Health::Down, "probe failed");
                }
            }
            AllUp => {
                for id in &members {
                    set_health(*id, Health::Up, "ok");
                }
                for s in d.site_ids() {
                    state.site_mut(s).last_report = Some(NOW);
                }
            }
            AllDown => {
                for id in &members {
                    set_health(*id, Health::Down, "probe failed");
                }
            }
            Drain(node) => state.member_mut(member(node)).admin = AdminState::Drained,
            Maint(node) => state.member_mut(member(node)).admin = AdminState::Maintenance,
            Force(node) => state.member_mut(member(node)).admin = AdminState::ForcedDown,
            AllDrain => {
                for id in &d.service(service).members {
                    state.member_mut(*id).admin = AdminState::Drained;
                }
            }
            SiteDrain(s) => state.site_mut(site(s)).admin = AdminState::Drained,
            SiteMaint(s) => state.site_mut(site(s)).admin = AdminState::Maintenance,
            SiteForce(s) => state.site_mut(site(s)).admin = AdminState::ForcedDown,
            Pct(node, percent) => state.member_mut(member(node)).weight_percent = percent,
            Report(s, age) => state.site_mut(site(s)).last_report = Some(Timestamp(NOW.0 - age)),
            Seen(node, by, up, age) => state.member_mut(member(node)).vantage.push(VantageSeen {
                site: by.into(),
                up,
                at: Timestamp(NOW.0 - age),
                reason: if up { "ok" } else { "refused" }.into(),
            }),
        }
    }
    state
}

/// Selects `service`'s answers for a client at `client` (an address, classified through
/// the [`ClassTable`]) after `tweaks`.
pub fn run(service: &str, family: Family, client: &str, tweaks: &[Tweak]) -> Selection {
    let Fixture { deployment, table } = fixture();
    let id = deployment
        .service_by_name(service)
        .unwrap_or_else(|| panic!("no service {service}"));
    let state = state_with(deployment, id, tweaks);
    let ip: IpAddr = client.parse().unwrap();
    let (class, _scope) = table.lookup(ip);
    select(deployment, &state, id, family, table.class(class), NOW)
}

pub fn addresses(d: &Deployment, members: &[MemberId]) -> Vec<String> {
    members
        .iter()
        .map(|m| d.member(*m).address.to_string())
        .collect()
}

/// The variants as `a b | c d`.
pub fn render_variants(d: &Deployment, selection: &Selection) -> String {
    selection
        .variants
        .iter()
        .map(|v| addresses(d, &v.members).join(" "))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The outcome as `site fra`, `site fra+iad,sin` (spilled), `spread fra,iad`,
/// `fail-open fra` or `nodata`.
pub fn render_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Site { site, spilled_to } if spilled_to.is_empty() => format!("site {site}"),
        Outcome::Site { site, spilled_to } => format!("site {site}+{}", spilled_to.join(",")),
        Outcome::Spread { sites } => format!("spread {}", sites.join(",")),
        Outcome::FailOpen { site } => format!("fail-open {site}"),
        Outcome::Nodata { .. } => "nodata".into(),
    }
}
