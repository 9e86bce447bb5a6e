//! One attempt: a signed POST with reqwest (rustls), no redirects, 5 s connect and a total
//! bound, the answer read to 64 KiB at most, its first 1 KiB kept for the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::Job;
use super::ssrf::{GuardedResolver, Refused, check_literal};
use crate::config::WebhookSettings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_LIMIT: usize = 64 * 1024;
const LOG_LIMIT: usize = 1024;

/// What happened, as `app.webhook_record` takes it.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: Option<u16>,
    pub duration: Duration,
    pub error: Option<String>,
    pub response: String,
    pub retryable: bool,
    pub retry_after: Option<f64>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

impl Sender {
    pub fn new(settings: &WebhookSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(settings.timeout))
            .timeout(settings.timeout)
            .dns_resolver(Arc::new(GuardedResolver { allow_private: settings.allow_private }))
            .user_agent(concat!("rowcast-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Self { client, allow_private: settings.allow_private, timeout: settings.timeout })
    }

    pub async fn send(&self, job: &Job) -> Outcome {
        let started = Instant::now();
        let mut outcome = self.attempt(job).await;
        outcome.duration = started.elapsed();
        outcome
    }

    async fn attempt(&self, job: &Job) -> Outcome {
        let url = match reqwest::Url::parse(&job.url) {
            Ok(u) => u,
            Err(e) => return refused(format!("invalid URL: {e}")),
        };
        if let Err(refusal) = check_literal(&url, self.allow_private) {
            return refused(refusal.to_string());
        }
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &job.msg_id)
            .header("webhook-timestamp", job.sent_at.to_string())
            .header("webhook-signature", &job.signature)
            .body(job.body.clone());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return self.network_error(e),
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let (response, read_error) = read_capped(response).await;
        Outcome {
            status: Some(status),
            error: read_error,
            response,
            retryable: status == 429 || (500..600).contains(&status),
            retry_after,
            ..Outcome::default()
        }
    }

    fn network_error(&self, e: reqwest::Error) -> Outcome {
        if let Some(refusal) = find_refusal(&e) {
            return refused(refusal.to_string());
        }
        let e = e.without_url();
        let error = if e.is_timeout() {
            format!("timeout: no complete answer within {} ms", self.timeout.as_millis())
        } else if e.is_connect() {
            format!("connection failed: {}", chain(&e))
        } else {
            format!("request failed: {}", chain(&e))
        };
        Outcome { error: Some(error), retryable: true, ..Outcome::default() }
    }
}

fn refused(error: String) -> Outcome {
    Outcome { error: Some(error), retryable: false, ..Outcome::default() }
}

fn find_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// "outer: inner: innermost", for the log.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Reads at most 64 KiB of the answer; keeps the first 1 KiB.
async fn read_capped(mut response: reqwest::Response) -> (String, Option<String>) {
    let mut kept = Vec::new();
    let mut total = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if kept.len() < LOG_LIMIT {
                    kept.extend_from_slice(&chunk[..chunk.len().min(LOG_LIMIT - kept.len())]);
                }
                total += chunk.len();
                if total >= READ_LIMIT {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let why = if e.is_timeout() { "timeout while reading the answer".to_string() } else { chain(&e.without_url()) };
                return (String::from_utf8_lossy(&kept).into_owned(), Some(why));
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), None)
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<f64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs as f64);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0;
    Some(secs.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("1"), Some(1.0));
        assert_eq!(parse_retry_after(" 120 "), Some(120.0));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0.0), "a past date: now");
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        assert!(parse_retry_after(&soon).is_some_and(|s| (28.0..=30.0).contains(&s)));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
