//! The notifications module: a user's notifications, made from other modules' events and sent
//! through a [`Delivery`] port (the log by default, or SMTP).
//!
//! Pure choreography: no module calls notifications to make something happen. It reads users'
//! registrations (the recipient's address) and orders' outcomes (confirmed, rejected,
//! cancelled), stores a notification for the user and publishes `NotificationCreatedV1`
//! through its outbox; its own dispatcher consumes that event and sends it.
//!
//! Not an API boundary: the edge and other processes reach notifications only through
//! `notifications-contract`.
//!
//! **Architecture Invariant:** a notification is stored and announced in one transaction with
//! the inbox record of the event that caused it, so each event makes exactly one notification,
//! and every stored notification is sent at least once (or dead-lettered, visible and
//! replayable). A recipient's address is never logged.

//!
//! Layout (every module's): `reactions` (the write side: events in, notifications out),
//! `dispatch` and `delivery` (sending, through the port; `smtp` is its SMTP adapter), `queries`
//! (the read side), `store`, `views`, `entities`, `context` and `service`, the facade
//! implementing the contract. It has no value types of its own beyond the contract's, so no
//! `domain.rs`.

mod context;
pub mod delivery;
pub mod dispatch;
mod entities;
mod queries;
pub mod reactions;
mod service;
pub mod smtp;
mod store;
mod views;

pub use delivery::{Delivery, DeliveryError, LogDelivery, Message};
pub use dispatch::Dispatcher;
pub use reactions::Reactions;
pub use service::NotificationsService;
