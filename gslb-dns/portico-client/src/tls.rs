//! TLS files as rustls reads them (PEM certificates, keys and CAs), the one crypto
//! provider (ring), and the check that a certificate names an identity. Shared by every
//! side that speaks TLS between Portico's processes: the admin API's server and its
//! clients (agents, proxies, the CLI, nodes asking each other), and the store's raft
//! transport.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Why a TLS file could not be used: which file, as what, and what is wrong with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS {what} {path}: {why}")]
pub struct TlsError {
    what: &'static str,
    path: String,
    why: String,
}

impl TlsError {
    pub fn new(what: &'static str, path: &Path, why: impl ToString) -> TlsError {
        TlsError {
            what,
            path: path.display().to_string(),
            why: why.to_string(),
        }
    }
}

/// The crypto provider every Portico TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// A PEM certificate chain (the end entity first); an empty file is an error.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::new("certificate", path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::new("certificate", path, e))?;
    if chain.is_empty() {
        return Err(TlsError::new(
            "certificate",
            path,
            "no certificate in the file",
        ));
    }
    Ok(chain)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::new("key", path, e))
}

/// The CA certificates of a PEM file as trust anchors; an empty file is an error.
pub fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in
        CertificateDer::pem_file_iter(path).map_err(|e| TlsError::new("CA", path, e))?
    {
        let certificate = certificate.map_err(|e| TlsError::new("CA", path, e))?;
        roots
            .add(certificate)
            .map_err(|e| TlsError::new("CA", path, e))?;
    }
    if roots.is_empty() {
        return Err(TlsError::new("CA", path, "no certificate in the file"));
    }
    Ok(Arc::new(roots))
}

/// Whether `certificate` (an end-entity certificate already verified against a CA) names
/// `name`: a DNS subject alternative name equal to it (or an IP address SAN, for an address).
pub fn names(certificate: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(server_name) = ServerName::try_from(name) else {
        return false;
    };
    let Ok(certificate) = webpki::EndEntityCert::try_from(certificate) else {
        return false;
    };
    certificate
        .verify_is_valid_for_subject_name(&server_name)
        .is_ok()
}

/// How a client reaches a TLS admin API: the CA its certificate must chain to, and the
/// client's own certificate and key when it proves its identity with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl From<&topology::model::ApiClientTls> for ClientTls {
    fn from(settings: &topology::model::ApiClientTls) -> ClientTls {
        ClientTls {
            ca: PathBuf::from(&settings.ca),
            identity: settings
                .identity
                .as_ref()
                .map(|(cert, key)| (PathBuf::from(cert), PathBuf::from(key))),
        }
    }
}

impl ClientTls {
    /// A rustls client configuration from the files (read now).
    pub fn config(&self) -> Result<ClientConfig, TlsError> {
        let roots = read_roots(&self.ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("CA", &self.ca, e))?
            .with_root_certificates(roots);
        match &self.identity {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => builder
                .with_client_auth_cert(read_chain(cert)?, read_key(key)?)
                .map_err(|e| TlsError::new("certificate", cert, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("portico-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let error = read_chain(&empty).unwrap_err().to_string();
        assert!(
            error.contains("empty.pem") && error.contains("no certificate"),
            "{error}"
        );
        let error = read_roots(&dir.join("absent.pem")).unwrap_err().to_string();
        assert!(
            error.starts_with("TLS CA ") && error.contains("absent.pem"),
            "{error}"
        );
        let error = read_key(&empty).unwrap_err().to_string();
        assert!(error.starts_with("TLS key "), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
