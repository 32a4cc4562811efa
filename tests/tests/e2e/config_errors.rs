//! A bad configuration is rejected before any port is bound, with the key and the line.

use std::process::Command;

use tests::{TempDir, binary, free_port, run};

fn reject(config: &str, key: &str, line: usize) {
    let dir = TempDir::new("config");
    let path = dir.write("bad.toml", config);
    let port = free_port("127.0.0.1");
    let admin = free_port("127.0.0.1");
    let output = run(Command::new(binary("gslb-dns"))
        .arg("--config")
        .arg(&path)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "exit code 2 for a bad configuration: {stderr}"
    );
    assert!(stderr.contains(key), "the message names `{key}`: {stderr}");
    assert!(
        stderr.contains(&format!("line {line}")),
        "the message names line {line}: {stderr}"
    );
    assert!(
        stderr.contains("bad.toml"),
        "the message names the file: {stderr}"
    );
    // Nothing was bound: the ports are still free.
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("DNS port never bound");
    std::net::TcpListener::bind(("127.0.0.1", admin)).expect("admin port never bound");
}

const GOOD_HEAD: &str =
    "[zone]\norigin = \"storage.example.\"\nns = [\"ns1\"]\n\n[[site]]\nname = \"fra\"\n";

#[test]
fn unknown_key_is_named_with_its_line() {
    reject(&format!("{GOOD_HEAD}colour = \"blue\"\n"), "colour", 7);
}

#[test]
fn member_with_an_unknown_site() {
    let config = format!(
        "{GOOD_HEAD}\n[[service]]\nname = \"s3\"\nmembers = [\n  {{ site = \"fra\", address = \"127.0.10.1\" }},\n  {{ site = \"nowhere\", address = \"127.0.10.2\" }},\n]\n"
    );
    reject(&config, "service[0].members[1].site", 12);
}

#[test]
fn bad_address_and_bad_policy() {
    let config = format!(
        "{GOOD_HEAD}\n[[service]]\nname = \"s3\"\npolicy = \"fastest\"\nmembers = [{{ site = \"fra\", address = \"127.0.10.1\" }}]\n"
    );
    reject(&config, "service[0].policy", 10);
    let config = format!(
        "{GOOD_HEAD}\n[[service]]\nname = \"s3\"\nmembers = [{{ site = \"fra\", address = \"127.0.10.300\" }}]\n"
    );
    reject(&config, "service[0].members[0].address", 10);
}

#[test]
fn bad_static_record() {
    let config = "[zone]\norigin = \"storage.example.\"\nns = [\"ns1\"]\nrecords = [\n  \"ok A 127.0.0.1\",\n  \"bad A 300.0.0.1\",\n]\n[[site]]\nname = \"fra\"\n";
    reject(config, "zone.records[1]", 6);
}

#[test]
fn syntax_error() {
    reject(
        "[zone]\norigin = \"storage.example.\"\nns = [\"ns1\"\n",
        "line 3",
        3,
    );
}

#[test]
fn check_config_accepts_the_default_and_rejects_bad_files() {
    let output = run(Command::new(binary("gslb-dns")).arg("--check-config"));
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration OK"));
    let dir = TempDir::new("config");
    let path = dir.write("bad.toml", "[zone]\norigin = 5\n");
    let output = run(Command::new(binary("gslb-dns"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("zone.origin") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn rtt_samples_that_never_expire_are_refused() {
    let config = format!("[dns]\nrtt_max_age = \"0s\"\n\n{GOOD_HEAD}");
    reject(&config, "dns.rtt_max_age", 2);
}
