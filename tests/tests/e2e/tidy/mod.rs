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

/// The package name of each workspace member, by its directory.
fn package_names() -> std::collections::BTreeMap<String, String> {
    workspace_members()
        .into_iter()
        .map(|member| {
            let manifest = read(&format!("{member}/Cargo.toml"));
            let name = manifest
                .lines()
                .find_map(|l| l.strip_prefix("name = "))
                .map(|n| n.trim_matches('"').to_owned())
                .unwrap_or_else(|| panic!("{member}/Cargo.toml has no name"));
            (member, name)
        })
        .collect()
}

/// The workspace crates `member` depends on (dependencies and dev-dependencies).
fn our_dependencies(member: &str, ours: &std::collections::BTreeSet<String>) -> Vec<String> {
    let manifest = read(&format!("{member}/Cargo.toml"));
    let mut found = std::collections::BTreeSet::new();
    let mut in_dependencies = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_dependencies = line.contains("dependencies]");
            continue;
        }
        if !in_dependencies {
            continue;
        }
        if let Some(name) = line.split('=').next().map(str::trim)
            && ours.contains(name)
        {
            found.insert(name.to_owned());
        }
    }
    found.into_iter().collect()
}

#[test]
fn architecture_names_every_crate_and_its_dependencies_as_the_manifests_do() {
    let architecture = read("docs/ARCHITECTURE.md");
    let packages = package_names();
    let ours: std::collections::BTreeSet<String> = packages.values().cloned().collect();
    // The table: | `crate` | `path/` | what it is | `dep`, `dep` |
    let table: std::collections::BTreeMap<String, Vec<String>> = architecture
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.trim_matches('`').to_owned();
            let depends: Vec<String> = cells
                .get(4)?
                .split(',')
                .map(|d| d.trim().trim_matches('`').to_owned())
                .filter(|d| !d.is_empty() && d != "-")
                .collect();
            ours.contains(&name).then_some((name, depends))
        })
        .collect();
    for (member, name) in &packages {
        let documented = table.get(name).unwrap_or_else(|| {
            panic!("docs/ARCHITECTURE.md's crate table has no row for `{name}` ({member})")
        });
        let mut documented = documented.clone();
        documented.sort();
        assert_eq!(
            documented,
            our_dependencies(member, &ours),
            "docs/ARCHITECTURE.md: the crates `{name}` depends on are not what {member}/Cargo.toml says"
        );
    }
    // The production DNS server links neither the agent nor the proxy.
    let dns = our_dependencies("gslb-dns", &ours);
    assert!(
        !dns.iter().any(|d| d == "proxy" || d == "site-agent"),
        "{dns:?}"
    );
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

/// Whether `text` names `word` (`axum::`, `hickory_proto`) as a path, not inside a longer
/// identifier (`unix::` is not `nix::`).
fn names(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        text[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

#[test]
fn foreign_libraries_stay_in_their_adapter_modules() {
    // (library, how code names it, the files or directories allowed to)
    let rules: [(&str, &str, &[&str]); 6] = [
        (
            "axum",
            "axum::",
            &["gslb-dns/src/api/", "gslb-dns/portico/src/demo/storage.rs"],
        ),
        (
            "hickory-proto",
            "hickory_proto",
            &["gslb-dns/src/dns/", "gslb-dns/portico-client/src/dns.rs"],
        ),
        (
            "nix",
            "nix::",
            // The hostile test reads the proxy's pipe sizes (F_GETPIPE_SZ) from outside; the
            // namespace lab joins namespaces (setns) and its delay link makes TUN devices.
            &[
                "gslb-dns/src/dns/udp.rs",
                "proxy/src/sys.rs",
                "tests/tests/e2e/hostile.rs",
                "tests/src/netns.rs",
                "tests/src/delay_link.rs",
            ],
        ),
        (
            "raft",
            "raft::",
            &[
                "gslb-dns/state-store/src/replica.rs",
                "gslb-dns/state-store/src/node.rs",
                "gslb-dns/state-store/src/transport.rs",
                "gslb-dns/state-store/src/storage.rs",
                "gslb-dns/state-store/tests/",
            ],
        ),
        ("sled", "sled::", &["gslb-dns/state-store/src/storage.rs"]),
        (
            "reqwest",
            "reqwest::",
            &[
                "gslb-dns/portico-client/src/api.rs",
                "gslb-dns/portico-client/src/error.rs",
                "gslb-dns/portico-client/src/watch.rs",
            ],
        ),
    ];
    let root = workspace_root();
    let mut checked = 0;
    for member in workspace_members() {
        for file in walk(&root.join(&member)) {
            let relative = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if relative.starts_with("tests/tests/e2e/tidy/") {
                continue; // these checks name what they look for
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (library, word, allowed) in &rules {
                if !names(&text, word) {
                    continue;
                }
                checked += 1;
                assert!(
                    allowed.iter().any(|a| relative.starts_with(a)),
                    "{relative} uses {library} outside its adapter modules ({})",
                    allowed.join(", ")
                );
            }
        }
    }
    assert!(checked >= 15, "found the adapters ({checked} files)");
    assert!(!names("tokio::signal::unix::signal", "nix::"));
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
fn unsafe_code_lives_only_in_the_audited_modules() {
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains("unsafe_code = \"deny\""),
        "the workspace denies unsafe code"
    );
    // The proxy's system calls, the GeoIP file mapping, and the test lab's TUN devices.
    let audited = [
        workspace_root().join("proxy/src/sys.rs"),
        workspace_root().join("geoip-data/src/mapped.rs"),
        workspace_root().join("tests/src/delay_link.rs"),
    ];
    for member in workspace_members() {
        for file in walk(&workspace_root().join(&member)) {
            if file.ends_with("tests/e2e/tidy/mod.rs") {
                continue; // this check names what it looks for
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let allows = text.matches("allow(unsafe_code)").count();
            if audited.contains(&file) {
                assert_eq!(
                    allows,
                    1,
                    "one audited unsafe allowance in {}",
                    file.display()
                );
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

mod modules;

#[test]
fn no_module_imports_form_a_cycle() {
    let mut found = Vec::new();
    for member in workspace_members() {
        let src = workspace_root().join(&member).join("src");
        if !src.join("lib.rs").exists() {
            continue;
        }
        let graph = modules::Crate::read(&src).graph();
        for cycle in modules::cycles(&graph) {
            let names: Vec<String> = cycle.iter().map(modules::name).collect();
            found.push(format!("{member}: {}", names.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}
