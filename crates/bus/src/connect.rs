//! Connecting with retry: a service that starts before its NATS server waits for it.

use std::time::Duration;

use crate::BusError;

/// Connect to `url` as `name` (shown by the server's monitoring), retrying the first
/// connection until `patience` runs out; later disconnects are retried by the client.
pub async fn connect(
    url: &str,
    name: &str,
    patience: Duration,
) -> Result<async_nats::Client, BusError> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None)
            .connect(url)
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(e) if started.elapsed() + delay < patience => {
                tracing::warn!(url, error = %e, "NATS not reachable yet; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(BusError::nats(&format!("connecting to {url}"), e)),
        }
    }
}
