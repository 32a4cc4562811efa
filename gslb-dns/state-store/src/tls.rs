//! Mutual TLS between store nodes (rustls with the ring provider). Every node presents its
//! certificate and accepts only peers whose certificate chains to the configured CA, and a
//! certificate says which node it is: a DNS subject alternative name `node-<id>.<cluster>`
//! ([`topology::model::node_identity`]). A node dials a peer expecting that peer's name, and
//! an inbound connection may only speak as the node its certificate names. The files can be
//! read again (`reload`, on SIGHUP) without a restart; connections made after use them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use portico_client::tls;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use portico_client::tls::TlsError;

/// The two sides of mutual TLS, as built from the files.
struct Configs {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

/// Mutual TLS for one node of one cluster.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    cluster: String,
    current: Arc<RwLock<Arc<Configs>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

fn build(cert: &Path, key: &Path, ca: &Path) -> Result<Configs, TlsError> {
    let chain = tls::read_chain(cert)?;
    let key_der = tls::read_key(key)?;
    let roots = tls::read_roots(ca)?;
    let provider = tls::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::new("CA", ca, e))?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("certificate", cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key_der.clone_key())
        .map_err(|e| TlsError::new("certificate", cert, e))?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new("certificate", cert, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| TlsError::new("certificate", cert, e))?;
    Ok(Configs {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    })
}

impl Tls {
    /// Loads the node's certificate chain and key and the CA (all PEM) for `cluster`.
    pub fn load(cert: &Path, key: &Path, ca: &Path, cluster: &str) -> Result<Tls, TlsError> {
        let configs = build(cert, key, ca)?;
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            ca: ca.to_owned(),
            cluster: cluster.to_owned(),
            current: Arc::new(RwLock::new(Arc::new(configs))),
        })
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.cert, &self.key, &self.ca)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(configs);
        Ok(())
    }

    fn configs(&self) -> Arc<Configs> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.configs().acceptor.clone()
    }

    pub fn connector(&self) -> TlsConnector {
        self.configs().connector.clone()
    }

    /// The name node `id`'s certificate must carry.
    pub fn server_name(&self, id: u64) -> ServerName<'static> {
        ServerName::try_from(topology::model::node_identity(&self.cluster, id))
            .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("a literal name"))
    }

    /// Whether `certificate` (a peer's end-entity certificate, already verified to chain to
    /// the CA) names node `id` of this cluster.
    pub fn names_node(&self, certificate: &CertificateDer<'_>, id: u64) -> bool {
        tls::names(
            certificate,
            &topology::model::node_identity(&self.cluster, id),
        )
    }
}
