//! Repository checks, as ordinary tests: the architecture document names every crate, and
//! `topology` stays free of I/O dependencies.

use tests::workspace_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn workspace_members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let members = manifest
        .split("members = [")
        .nth(1)
        .expect("members")
        .split(']')
        .next()
        .unwrap();
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn architecture_names_every_crate() {
    let architecture = read("docs/ARCHITECTURE.md");
    for member in workspace_members() {
        let name = member.rsplit('/').next().unwrap();
        assert!(
            architecture.contains(&format!("`{name}`")),
            "docs/ARCHITECTURE.md does not name the crate `{name}`"
        );
    }
}

#[test]
fn topology_has_no_io_dependencies() {
    let manifest = read("topology/Cargo.toml");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let allowed = ["ipnet", "serde", "thiserror", "toml"];
    for line in dependencies.lines().filter(|l| l.contains('=')) {
        let name = line.split('=').next().unwrap().trim();
        assert!(
            allowed.contains(&name),
            "topology must not depend on {name:?} (no I/O, no clock: DESIGN section 2)"
        );
    }
    for file in walk(&workspace_root().join("topology/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for forbidden in [
            "std::fs",
            "std::net::TcpStream",
            "std::net::UdpSocket",
            "SystemTime::now",
            "Instant::now",
            "tokio",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                file.display()
            );
        }
    }
}

#[test]
fn hickory_stays_in_the_dns_adapter() {
    for file in walk(&workspace_root().join("gslb-dns/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let in_adapter = file.components().any(|c| c.as_os_str() == "dns");
        assert!(
            in_adapter || !text.contains("hickory_proto"),
            "{} uses hickory outside dns/",
            file.display()
        );
    }
}

#[test]
fn default_config_is_checked_in_verbatim() {
    assert_eq!(
        read("docs/examples/portico.toml"),
        read("topology/src/config/default.toml"),
        "docs/examples/portico.toml must equal the embedded default"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn unsafe_code_lives_only_in_the_proxys_syscall_module() {
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains("unsafe_code = \"deny\""),
        "the workspace denies unsafe code"
    );
    let audited = workspace_root().join("proxy/src/sys.rs");
    for member in workspace_members() {
        for file in walk(&workspace_root().join(&member)) {
            if file.ends_with("tests/e2e/tidy.rs") {
                continue; // this check names what it looks for
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let allows = text.matches("allow(unsafe_code)").count();
            if file == audited {
                assert_eq!(allows, 1, "one audited unsafe block in {}", file.display());
                assert!(
                    text.contains("// SAFETY:"),
                    "the unsafe block says why it is sound"
                );
            } else {
                assert_eq!(allows, 0, "{} allows unsafe code", file.display());
            }
        }
    }
}

#[test]
fn every_example_configuration_is_valid() {
    let dir = workspace_root().join("docs/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = topology::Config::from_toml(&text, 0) {
                panic!("{}: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "docs/examples holds the example configurations"
    );
}

#[test]
fn the_openapi_file_documents_every_route() {
    let router = read("gslb-dns/src/api/mod.rs");
    let openapi = read("docs/openapi.yaml");
    let mut routes = 0;
    for piece in router.split(".route(").skip(1) {
        let path = piece.split('"').nth(1).expect("a route path");
        routes += 1;
        assert!(
            openapi.contains(&format!("\n  {path}:\n")),
            "docs/openapi.yaml does not document {path}"
        );
    }
    assert!(routes >= 15, "found {routes} routes");
}

#[test]
fn the_grafana_dashboard_uses_metrics_that_exist() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("docs/grafana-dashboard.json")).expect("valid JSON");
    let sources: String = ["gslb-dns/src", "site-agent/src", "proxy/src"]
        .iter()
        .flat_map(|dir| walk(&workspace_root().join(dir)))
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("portico_") {
                    assert!(
                        sources.contains(&format!("\"{word}")),
                        "{word} is not a metric we export"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10);
}
