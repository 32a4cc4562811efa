//! Mutual TLS between store nodes (rustls with the ring provider): every node presents its
//! certificate and accepts only peers whose certificate chains to the configured CA. Peers
//! are dialled by address, so node certificates carry their IP addresses as subject
//! alternative names.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {path}: {why}")]
pub struct TlsError {
    what: &'static str,
    path: String,
    why: String,
}

/// Both sides of mutual TLS for one node.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

fn error(what: &'static str, path: &Path, why: impl ToString) -> TlsError {
    TlsError {
        what,
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

impl Tls {
    /// Loads the node's certificate chain and key and the CA (all PEM).
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Tls, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| error("certificate", cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| error("certificate", cert, e))?;
        if chain.is_empty() {
            return Err(error("certificate", cert, "no certificate in the file"));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| error("key", key, e))?;
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(ca).map_err(|e| error("CA", ca, e))? {
            let certificate = certificate.map_err(|e| error("CA", ca, e))?;
            roots.add(certificate).map_err(|e| error("CA", ca, e))?;
        }
        if roots.is_empty() {
            return Err(error("CA", ca, "no certificate in the file"));
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| error("CA", ca, e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| error("certificate", cert, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|e| error("certificate", cert, e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| error("certificate", cert, e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| error("certificate", cert, e))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}
