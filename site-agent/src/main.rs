//! `site-agent`: probes the storage nodes of one site and reports to the state store.
//! Not built yet (issue 4): today it validates the shared configuration and says so.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1);
    let config = load(path.as_deref())?;
    let site = config
        .components
        .site_agent_site
        .as_deref()
        .unwrap_or("(none)");
    eprintln!(
        "site-agent: configuration OK ({} sites, {} services, site_agent.site = {site}); \
         probing is not built yet (issue 4)",
        config.deployment.sites.len(),
        config.deployment.services.len()
    );
    std::process::exit(2)
}

fn load(path: Option<&str>) -> anyhow::Result<topology::Config> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match path {
        None => Ok(topology::Config::default_config(now)),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            topology::Config::from_toml(&text, now).with_context(|| format!("in {path}"))
        }
    }
}
