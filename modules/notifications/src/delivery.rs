//! The delivery port: how a notification leaves the system. Adapters: [`LogDelivery`] (the
//! default, for `cargo run`: the message goes to the log) and SMTP (an email).

use std::fmt;

/// One message to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The recipient's address.
    pub to: String,
    /// The recipient's name, for the `To:` header.
    pub to_name: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
}

/// The address is personal data: `Debug` leaves it out.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later: the server is down, busy, or refused for now (SMTP 4xx).
    #[error("delivery failed for now: {0}")]
    Transient(String),
    /// Trying again will not help: the address is refused (SMTP 5xx), the message is invalid.
    /// Still retried by the bus and then dead-lettered, so an operator sees it and can replay
    /// it once fixed.
    #[error("delivery refused: {0}")]
    Permanent(String),
}

/// Sends messages. Must not log the address or the body at a level above `debug`.
#[async_trait::async_trait]
pub trait Delivery: Send + Sync + 'static {
    /// The adapter's name, for logs and readiness (`log`, `smtp`).
    fn name(&self) -> &'static str;

    /// Sends `message`. At least once: a retry after a lost answer may send it again.
    ///
    /// # Errors
    /// [`DeliveryError`]: the notification stays undelivered and the bus retries it.
    async fn send(&self, message: &Message) -> Result<(), DeliveryError>;

    /// Whether the adapter can send now (readiness; never sends anything).
    async fn ready(&self) -> bool {
        true
    }
}

/// Writes each message to the log (target `notifications::delivery`, level `info`): its
/// subject and length, never the address. The body is logged at `debug`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogDelivery;

#[async_trait::async_trait]
impl Delivery for LogDelivery {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, message: &Message) -> Result<(), DeliveryError> {
        tracing::info!(target: "notifications::delivery", subject = %message.subject, bytes = message.body.len(), "notification delivered to the log");
        tracing::debug!(target: "notifications::delivery", body = %message.body, "notification body");
        Ok(())
    }
}
