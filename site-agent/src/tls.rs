//! TLS for HTTPS probes (rustls with the ring provider): trust the CA file a check names, or
//! the system's bundle.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::probe::http::Transport;

/// Debian's bundle of trusted CAs, used when a check names no `ca_file`.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS transport verifying `server_name` against the CAs in `ca_file` (or the system's).
pub fn transport(ca_file: Option<&str>, server_name: &str) -> Result<Transport, String> {
    let path = Path::new(ca_file.unwrap_or(SYSTEM_BUNDLE));
    let mut roots = RootCertStore::empty();
    let certificates =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| format!("{}: {e}", path.display()))?;
        // The system bundle may hold certificates rustls does not accept; skip those.
        let _ = roots.add(certificate);
    }
    if roots.is_empty() {
        return Err(format!("{}: no usable CA certificate", path.display()));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("server name {server_name:?}: {e}"))?;
    Ok(Transport::Tls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}
