//! Why the master could not start or stopped.

use jobfleet_common::auth::AuthConfigError;
use jobfleet_common::client::ClientError;
use jobfleet_common::config::ConfigError;
use jobfleet_common::coordinator::CoordinatorError;
use jobfleet_common::tls::TlsError;

/// Why the master could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The `[auth]` table is unusable.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// The master would serve without tokens on a non-loopback address.
    #[error("{0}")]
    Exposed(String),
    /// The broker failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Redis failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The `[https]` certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The operating system gave no random bytes (for the UI's session key).
    #[error("no random bytes for the UI session key: {0}")]
    Random(String),
    /// Serving HTTP failed.
    #[error("http server: {0}")]
    Serve(#[from] std::io::Error),
}
