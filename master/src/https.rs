//! Serving the API over HTTPS (`[https]`): axum-server's rustls acceptor on the listener the
//! master was given, stopped gracefully like the plain server.

use crate::error::MasterError;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use jobfleet_common::tls::HttpsConfig;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` over TLS with the certificate of `https` until `shutdown`, then waits for
/// open requests to end (as `axum::serve` with graceful shutdown does).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    https: &HttpsConfig,
    shutdown: CancellationToken,
) -> Result<(), MasterError> {
    let tls = RustlsConfig::from_config(https.server_config()?);
    let handle: Handle<SocketAddr> = Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopper.graceful_shutdown(None);
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}
