//! The listeners: accepting connections within the connection limits (SMTP.md §4), TLS on
//! connect for the implicit-TLS ports, and the certificate both TLS paths use.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::PrivateKeyDer};

use crate::config::TlsFiles;
use crate::conn::Stream;
use crate::reply;
use crate::session::{Decoy, serve};

/// Open connections, in total and per client address.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one connection's place; dropping it frees the place.
pub(crate) struct Place {
    counts: Arc<Counts>,
    client: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

impl Counts {
    /// A place for a new connection, or None when a limit is reached.
    fn admit(self: &Arc<Counts>, client: IpAddr, total: usize, per_client: usize) -> Option<Place> {
        let mut map = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open: usize = map.values().sum();
        let mine = map.get(&client).copied().unwrap_or(0);
        if open >= total || mine >= per_client {
            return None;
        }
        *map.entry(client).or_insert(0) += 1;
        Some(Place {
            counts: Arc::clone(self),
            client,
        })
    }
}

/// Load a certificate chain and key for the server side of TLS.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(Iterator::collect)
        .map_err(|e| format!("--tls-cert {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("--tls-key {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accept on one listener until shutdown, then give open connections a moment to finish.
pub(crate) async fn accept(
    decoy: Arc<Decoy>,
    listener: TcpListener,
    implicit_tls: bool,
    counts: Arc<Counts>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let limits = &decoy.config.limits;
        let client = canonical(peer);
        let Some(place) = counts.admit(client, limits.connections, limits.connections_per_client)
        else {
            decoy.metrics.connection("refused");
            let line = reply::too_many_connections(&decoy.config.hostname, &client.to_string());
            connections.spawn(refuse(tcp, line));
            continue;
        };
        decoy.metrics.connection("served");
        let decoy = Arc::clone(&decoy);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _place = place;
            let stream = if implicit_tls {
                let Some(acceptor) = decoy.tls.clone() else {
                    return;
                };
                match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                    _ => {
                        decoy.metrics.tls_failures.inc();
                        return;
                    }
                }
            } else {
                Stream::Plain(tcp)
            };
            serve(decoy, stream, client, implicit_tls, shutdown).await;
        });
    }
    // Messages already answered 250 are on disk; a conversation cut here is one the client
    // will retry, as with any server going down.
    let grace = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            () = &mut grace => { connections.abort_all(); break }
        }
    }
}

fn canonical(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

async fn refuse(mut tcp: TcpStream, line: String) {
    let write = async {
        tcp.write_all(line.as_bytes()).await?;
        tcp.write_all(b"\r\n").await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}
