//! `[notifications]`: the notifications module's own settings, read where it runs locally: how
//! notifications are sent. Every default is here, once; the SMTP adapter takes the values it is
//! given (its own `SmtpSettings` is the adapter's runtime shape, with durations and a mailbox,
//! and has no defaults of its own).

use serde::{Deserialize, Serialize};
use shared_kernel::Secret;

/// The notifications module's own settings (where it runs locally): how notifications are sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsSettings {
    /// `log` (the default: each notification is written to the log) or `smtp` (an email
    /// through `notifications.smtp`).
    pub delivery: DeliveryKind,
    pub smtp: SmtpSettings,
}

/// Which adapter sends notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    #[default]
    Log,
    Smtp,
}

/// The SMTP server notifications are sent through (`notifications.delivery = "smtp"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `starttls` (the default), `tls` (from the first byte, usually port 465) or `none`
    /// (plain text: only for a server on the same host, or a test sink).
    pub tls: SmtpTls,
    /// With `password`: log in. Neither: send without authentication.
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// The `From:` address, as `Shop <shop@example.com>` or `shop@example.com`.
    pub sender: String,
    /// Bound on connecting and on each SMTP command, in seconds.
    pub timeout_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 587,
            tls: SmtpTls::StartTls,
            username: None,
            password: None,
            sender: "cleave <noreply@localhost>".to_owned(),
            timeout_secs: 10,
        }
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    None,
    #[serde(rename = "starttls")]
    StartTls,
    Tls,
}
