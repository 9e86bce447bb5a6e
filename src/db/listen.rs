//! A connection that LISTENs: the one place that connects, pumps the connection's messages
//! and runs the LISTEN statements, for every component that follows notifications (the
//! realtime relay and cluster channel, the REST catalog reload, the rate-limit reload, the
//! webhook dispatcher's wake-ups).

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

/// An open listening connection: the client for queries, and the notifications it receives.
/// `notes` ends when the connection does; dropping the client closes it.
pub struct Listening {
    pub client: Client,
    pub notes: mpsc::UnboundedReceiver<Notification>,
}

/// Connects with `config`, starts the task that forwards its notifications, and runs
/// `listen_sql` (one or more `LISTEN` statements). A lost connection is logged as `what`.
pub async fn listen(config: &tokio_postgres::Config, listen_sql: &str, what: &'static str) -> Result<Listening, String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| format!("connect: {e}"))?;
    let (tx, notes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "{what} connection lost");
                    break;
                }
            }
        }
    });
    client.batch_execute(listen_sql).await.map_err(|e| format!("{listen_sql}: {e}"))?;
    Ok(Listening { client, notes })
}
