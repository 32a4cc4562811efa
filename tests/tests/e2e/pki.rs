//! A test PKI (rcgen): a CA that issues store-node, admin-API server and client
//! certificates into a test directory, as an operator's internal CA would.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// A CA and the directory its files go to (`<name>.pem` for the CA).
pub struct Pki {
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate's file.
    pub ca: PathBuf,
}

impl Pki {
    /// A new CA named `name`, written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
            cert,
            key,
            ca,
        }
    }

    /// A certificate for `dns` names and `ips`, as `<file>.pem` and `<file>.key`; returns
    /// the two paths.
    pub fn issue(&self, file: &str, dns: &[&str], ips: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).to_owned().try_into().unwrap()))
            .chain(ips.iter().map(|ip| SanType::IpAddress(ip.parse().unwrap())))
            .collect();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Store node `id`'s certificate (`node-<id>.pem`): its identity in the default cluster
    /// (`node-<id>.portico`) and its address.
    pub fn node(&self, id: u64, ip: &str) -> (PathBuf, PathBuf) {
        self.issue(
            &format!("node-{id}"),
            &[&format!("node-{id}.portico")],
            &[ip],
        )
    }

    /// The `tls = { ... }` line of node `id`'s `[store]` section.
    pub fn store_tls(&self, id: u64) -> String {
        format!(
            "tls = {{ cert = \"{0}/node-{id}.pem\", key = \"{0}/node-{id}.key\", ca = \"{1}\" }}\n",
            self.dir.display(),
            self.ca.display()
        )
    }
}
