//! sea-orm models of the notifications module's own tables. Never leave this crate.

pub mod notifications;
pub mod recipients;
