//! Wake-ups: a dedicated connection LISTENs on `rowcast_events` (new events to feed) and
//! `rowcast_webhooks` (deliveries queued by another instance, a retry or a ping), and pokes
//! the dispatcher. Notifications coalesce into one pending wake-up. The dispatcher also
//! polls, so a lost connection delays deliveries, never loses them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

const BACKOFF_CAP: Duration = Duration::from_secs(2);

pub fn spawn(mut config: tokio_postgres::Config, wake: Arc<Notify>, cancel: CancellationToken) {
    config.application_name("rowcast-webhooks-listener").connect_timeout(Duration::from_secs(5)).keepalives_idle(Duration::from_secs(15));
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            match listen(&config, &wake, &cancel).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "webhook wake-up listener down; reconnecting"),
            }
            wake.notify_one();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF_CAP);
        }
    });
}

/// Ok when cancelled; Err when the connection failed or dropped.
async fn listen(config: &tokio_postgres::Config, wake: &Notify, cancel: &CancellationToken) -> Result<(), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| format!("connect: {e}"))?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let listened = client.batch_execute("LISTEN rowcast_events; LISTEN rowcast_webhooks");
    futures::pin_mut!(listened);
    // The connection must be polled for the LISTEN to complete.
    loop {
        tokio::select! {
            done = &mut listened => { done.map_err(|e| format!("LISTEN: {e}"))?; break; }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".into()),
            },
        }
    }
    wake.notify_one();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".into()),
            },
        }
    }
}
