//! The shared kernel: the few types every module agrees on.
//!
//! **API Boundary.** Everything here is used by every contract crate, so a change here is a
//! change to every module's public surface. It holds the identifiers the modules share
//! (`OrderId`, `ProductId`, …) but no module's logic; axum, sea-orm and NATS are used only by the
//! infrastructure helpers behind features (`http`, `nats`, `auth`, `db`).

extern crate self as shared_kernel;

pub mod caller;
pub mod clock;
pub mod error;
pub mod events;
pub mod id;
pub mod money;
pub mod pagination;
pub mod resilience;
pub mod secret;
pub mod trace_context;

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "http")]
pub mod discovery;
#[cfg(feature = "http")]
pub mod identity;
#[cfg(feature = "nats")]
pub mod jetstream_bus;
#[cfg(feature = "nats")]
pub mod nats_wire;
#[cfg(feature = "db")]
pub mod outbox;
#[cfg(feature = "http")]
pub mod tls;
#[cfg(feature = "http")]
pub mod wire;

mod contract_macro;

pub use caller::{AuthenticatedUser, Caller, Role, ServiceName};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ApiError, FieldError, FieldErrors, ProblemDetails};
pub use id::{CategoryId, Identifier, OrderId, ProductId, UserId};
pub use money::{Currency, Money, MoneyError};
pub use pagination::{Cursor, Page, PageRequest};
pub use secret::Secret;
pub use trace_context::{RequestContext, TraceContext, current_request_context, with_request_context, with_request_context_sync};

/// Re-exports the contract macro needs, so contract crates do not have to name these crates.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    #[cfg(feature = "http")]
    pub use axum;
    pub use serde;
    pub use serde_json;
    pub use uuid;
}
