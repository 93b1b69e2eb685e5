//! The SMTP adapter of the delivery port (lettre): one plain-text email per notification.

use crate::delivery::{Delivery, DeliveryError, Message};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use shared_kernel::Secret;
use std::time::Duration;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a server on the same host or a test sink.
    None,
    /// Plain, then upgraded with STARTTLS, which the server must offer (usually port 587).
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// Where and how to send email.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// With `password`, the credentials to log in with; none: no authentication.
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// The `From:` address, as `Shop <shop@example.com>` or `shop@example.com`.
    pub sender: String,
    /// Bound on connecting and on each command.
    pub timeout: Duration,
}

/// Sends each notification as an email.
pub struct SmtpDelivery {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: Mailbox,
}

impl SmtpDelivery {
    /// # Errors
    /// A sender that is not an address, credentials given by half, a host TLS cannot be set up
    /// for.
    pub fn new(settings: &SmtpSettings) -> Result<Self, String> {
        let sender: Mailbox =
            settings.sender.parse().map_err(|error| format!("sender `{}` is not an address: {error}", settings.sender))?;
        let builder = match settings.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host).map_err(|error| error.to_string())?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host).map_err(|error| error.to_string())?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
        match (&settings.username, &settings.password) {
            (Some(username), Some(password)) => {
                builder = builder.credentials(Credentials::new(username.clone(), password.expose().clone()));
            }
            (None, None) => {}
            _ => return Err("username and password go together".to_owned()),
        }
        Ok(Self { transport: builder.build(), sender })
    }
}

#[async_trait::async_trait]
impl Delivery for SmtpDelivery {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, message: &Message) -> Result<(), DeliveryError> {
        let to = Mailbox::new(
            Some(message.to_name.clone()),
            message.to.parse().map_err(|_| DeliveryError::Permanent("the recipient's address is invalid".to_owned()))?,
        );
        let email = lettre::Message::builder()
            .from(self.sender.clone())
            .to(to)
            .subject(&message.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|error| DeliveryError::Permanent(error.to_string()))?;
        // The error names no address: lettre's messages carry the server's answer only.
        self.transport.send(email).await.map(drop).map_err(|error| {
            if error.is_permanent() { DeliveryError::Permanent(error.to_string()) } else { DeliveryError::Transient(error.to_string()) }
        })
    }

    async fn ready(&self) -> bool {
        self.transport.test_connection().await.unwrap_or(false)
    }
}
