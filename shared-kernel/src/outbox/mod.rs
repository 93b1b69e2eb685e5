//! The transactional outbox, its relay, the consumer inbox and the dead-letter store: the event
//! machinery every module's database carries (tables `outbox_events`, `inbox_events`,
//! `dead_letters`, created by each module's migrator).
//!
//! - A use case publishes only through a [`UnitOfWork`]: the event row is written in the same
//!   transaction as the state change, so there are no lost and no phantom events. There is no
//!   other way to append to the outbox.
//! - A [`Relay`] per module reads undelivered rows in sequence order, publishes each to the bus
//!   and marks it delivered. It wakes at once after a commit in this process (and, on
//!   PostgreSQL, after a commit in any process, through `LISTEN/NOTIFY`); a slow poll is only a
//!   fallback. After a restart it simply finds what was committed and not yet delivered.
//! - A consumer's handler starts its transaction with [`Inbox::begin`], which records the event
//!   id in the consumer's own database in that same transaction: a redelivery is skipped.
//!
//! One file per part: [`unit_of_work`] (the outbox a use case appends to), [`relay`] (delivery to
//! the bus), [`inbox`] (a consumer's processed events) and [`dead_letters`] (what consumers gave
//! up on). Time comes only from the [`Clock`](crate::Clock) port: each part is given one (the
//! system clock unless told otherwise).

pub mod admin;
mod dead_letters;
mod entities;
mod inbox;
mod relay;
mod unit_of_work;

pub use dead_letters::{DeadLetter, DeadLetterStatus, DeadLetterStore};
pub use inbox::Inbox;
pub use relay::{Relay, RelayError};
pub use unit_of_work::{Outbox, UnitOfWork};
