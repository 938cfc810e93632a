//! TLS (SPEC §8): the `[tls]` settings every client of the fleet uses for `amqps://` and
//! `rediss://` URLs (a private CA, a client certificate), the `[https]` settings with which
//! the master serves HTTPS, and the rustls configurations built from them. rustls with the
//! aws-lc-rs provider throughout; no OpenSSL.
//!
//! `ca_file` replaces the system roots: a server is trusted only if that CA signed its
//! certificate. Without `ca_file` the system roots are trusted (`/etc/ssl/certs`, or the
//! files `SSL_CERT_FILE` / `SSL_CERT_DIR` name).

use crate::config::Config;
use deadpool_redis::redis::{ClientTlsConfig, TlsCertificates};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `[tls]` table: what clients trust and present on `amqps://` and `rediss://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) to present; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The `[https]` table: the master serves HTTPS with this certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// PEM file of the server certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// PEM file of its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why a TLS setting is unusable. Binaries exit 64 on it at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {setting} {path}: {source}")]
    Read {
        /// The setting that names the file, e.g. `[tls] ca_file`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{setting} {path} is not valid PEM: {source}")]
    Pem {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{setting} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error("{setting} {path} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")]
    NoKey {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate cannot serve as a trust anchor.
    #[error("{setting} {path}: a certificate is not a usable CA certificate: {source}")]
    BadCa {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// Only one of `cert_file` and `key_file` is set.
    #[error(
        "[tls] cert_file and key_file go together: set both to present a client certificate, or neither"
    )]
    HalfIdentity,
    /// The certificate and key do not make a usable identity (a key of another
    /// certificate, an unsupported key type).
    #[error("{setting}: the certificate and key are not usable together: {source}")]
    Identity {
        /// The settings, e.g. `[https] cert_file/key_file`.
        setting: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// No `ca_file` and no system root certificate could be loaded.
    #[error("no system root certificates found (install ca-certificates, or set [tls] ca_file)")]
    NoSystemRoots,
}

const CA_FILE: &str = "[tls] ca_file";
const CERT_FILE: &str = "[tls] cert_file";
const KEY_FILE: &str = "[tls] key_file";
const CLIENT_IDENTITY: &str = "[tls] cert_file/key_file";
const HTTPS_CERT_FILE: &str = "[https] cert_file";
const HTTPS_KEY_FILE: &str = "[https] key_file";
const HTTPS_IDENTITY: &str = "[https] cert_file/key_file";

impl TlsConfig {
    /// Settings that trust `ca_file` (or the system roots) and present no certificate.
    pub fn trusting(ca_file: Option<PathBuf>) -> TlsConfig {
        TlsConfig {
            ca_file,
            ..TlsConfig::default()
        }
    }

    /// Whether nothing is set (system roots, no client certificate).
    pub fn is_default(&self) -> bool {
        self == &TlsConfig::default()
    }

    /// Reads every file set and checks that it is what it should be, without the system
    /// roots (which only a TLS URL needs).
    pub fn validate(&self) -> Result<(), TlsError> {
        if let Some(ca_file) = &self.ca_file {
            ca_roots(CA_FILE, ca_file)?;
        }
        if let Some((chain, key)) = self.identity()? {
            builder(RootCertStore::empty())
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Identity {
                    setting: CLIENT_IDENTITY,
                    source,
                })?;
        }
        Ok(())
    }

    /// The rustls client configuration: the roots of `ca_file` (or the system's) and the
    /// client certificate, if any.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = builder(roots(CA_FILE, self.ca_file.as_deref())?);
        let config = match self.identity()? {
            Some((chain, key)) => {
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|source| TlsError::Identity {
                        setting: CLIENT_IDENTITY,
                        source,
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// The certificates in the form the redis crate takes them, or `None` when nothing is
    /// set (the redis crate then trusts the system roots itself).
    pub fn redis_certificates(&self) -> Result<Option<TlsCertificates>, TlsError> {
        if self.is_default() {
            return Ok(None);
        }
        self.validate()?;
        let root_cert = match &self.ca_file {
            Some(path) => Some(read(CA_FILE, path)?),
            None => None,
        };
        let client_tls = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read(CERT_FILE, cert)?,
                client_key: read(KEY_FILE, key)?,
            }),
            _ => None,
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// The client certificate chain and key, if set.
    fn identity(&self) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some((
                certificates(CERT_FILE, cert)?,
                private_key(KEY_FILE, key)?,
            ))),
            _ => Err(TlsError::HalfIdentity),
        }
    }
}

impl HttpsConfig {
    /// Reads both files and checks that they make a server identity.
    pub fn validate(&self) -> Result<(), TlsError> {
        self.server_config().map(|_| ())
    }

    /// The rustls server configuration of the master (HTTP/2 and HTTP/1.1 by ALPN, no client
    /// certificates).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = certificates(HTTPS_CERT_FILE, &self.cert_file)?;
        let key = private_key(HTTPS_KEY_FILE, &self.key_file)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Identity {
                setting: HTTPS_IDENTITY,
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A client configuration that trusts the CAs of `ca_file` (or the system roots) and
/// presents no certificate; `setting` names the file in errors (the CLI's `--ca-file`).
pub fn client_config_trusting(
    ca_file: Option<&Path>,
    setting: &'static str,
) -> Result<Arc<ClientConfig>, TlsError> {
    Ok(Arc::new(builder(roots(setting, ca_file)?).with_no_client_auth()))
}

/// The broker or Redis to reach: a URL, and the `[tls]` settings a TLS URL uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// `amqp://`, `amqps://`, `redis://` or `rediss://` URL.
    pub url: String,
    /// What a TLS URL trusts and presents.
    pub tls: TlsConfig,
}

impl Endpoint {
    /// The endpoint of `url` with `tls`.
    pub fn new(url: impl Into<String>, tls: TlsConfig) -> Endpoint {
        Endpoint { url: url.into(), tls }
    }
}

/// A bare URL: a TLS one trusts the system roots and presents no certificate.
impl From<&str> for Endpoint {
    fn from(url: &str) -> Endpoint {
        Endpoint::new(url, TlsConfig::default())
    }
}

impl From<&String> for Endpoint {
    fn from(url: &String) -> Endpoint {
        Endpoint::from(url.as_str())
    }
}

impl From<String> for Endpoint {
    fn from(url: String) -> Endpoint {
        Endpoint::new(url, TlsConfig::default())
    }
}

impl Config {
    /// The broker of this configuration, with its `[tls]` settings.
    pub fn amqp_endpoint(&self) -> Endpoint {
        Endpoint::new(&self.amqp_url, self.tls.clone())
    }

    /// The Redis of this configuration, with its `[tls]` settings.
    pub fn redis_endpoint(&self) -> Endpoint {
        Endpoint::new(&self.redis_url, self.tls.clone())
    }
}

/// Makes aws-lc-rs the process's default rustls provider (a default already installed
/// stays), for libraries that build their configurations with the default (redis). Builds
/// that also enable rustls's `ring` feature (reqwest's, for the CLI) have no default of
/// their own, and such a library would panic without one.
pub fn install_default_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::aws_lc_rs::default_provider());
}

/// The provider of every configuration built here (and, from now on, the process default).
fn provider() -> Arc<CryptoProvider> {
    install_default_provider();
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn builder(roots: RootCertStore) -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default TLS versions")
        .with_root_certificates(roots)
}

/// The trust anchors of `ca_file`, or the system's without one.
fn roots(setting: &'static str, ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    match ca_file {
        Some(path) => ca_roots(setting, path),
        None => system_roots(),
    }
}

/// The trust anchors of a CA file: every certificate in it.
fn ca_roots(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(setting, path)? {
        roots.add(certificate).map_err(|source| TlsError::BadCa {
            setting,
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// The system's trust anchors (rustls-native-certs: `/etc/ssl/certs` or `SSL_CERT_FILE`).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file; at least one.
fn certificates(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(setting, path)?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            setting,
            path: path.to_path_buf(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            setting,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// The first private key of a PEM file.
fn private_key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey {
            setting,
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            setting,
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_https_tables_are_parsed_and_checked() {
        let config = Config::from_toml("[https]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n").unwrap();
        assert_eq!(config.tls, TlsConfig::default());
        assert_eq!(config.https.unwrap().cert_file, PathBuf::from("/c.pem"));
        let unknown = Config::from_toml("[tls]\ncafile = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown field `cafile`"), "{unknown}");
        let missing = Config::from_toml("[tls]\nca_file = \"/nonexistent/ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("invalid config: cannot read [tls] ca_file /nonexistent/ca.pem"),
            "{missing}"
        );
        let half = Config::from_toml("[tls]\nkey_file = \"/k.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(half.contains("cert_file and key_file go together"), "{half}");
    }

    #[test]
    fn a_file_without_pem_blocks_is_refused_by_name() {
        let path = std::env::temp_dir().join(format!("jobfleet-tls-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        let error = TlsConfig::trusting(Some(path.clone())).validate().unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
        let https = HttpsConfig {
            cert_file: path.clone(),
            key_file: path.clone(),
        };
        let error = https.validate().unwrap_err().to_string();
        assert!(error.starts_with("[https] cert_file"), "{error}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_bare_url_trusts_the_system_roots() {
        let endpoint = Endpoint::from("amqps://broker/%2f");
        assert!(endpoint.tls.is_default());
        let config = Config {
            tls: TlsConfig::trusting(Some("/ca.pem".into())),
            ..Config::default()
        };
        assert_eq!(config.amqp_endpoint().tls, config.redis_endpoint().tls);
        assert_eq!(config.redis_endpoint().url, config.redis_url);
    }
}
