//! The users module: accounts, credentials, access and refresh tokens, signing keys.
//!
//! Not an API boundary: other modules reach users only through `users-contract`. Only `app`
//! and the tests link this crate.
//!
//! - [`domain`]: value types that cannot hold an invalid value (`Email`, `Password`, …).
//! - [`service::UsersService`]: the use cases; implements [`users_contract::UsersApi`].
//! - [`keys`]: the signing key ring (EdDSA), its file format and rotation.
//! - `entities`: the sea-orm models of this module's own database (never seen outside).

pub mod domain;
mod entities;
pub mod keys;
mod passwords;
mod rate_limit;
pub mod service;
mod settings;
mod tokens;

pub use keys::{KeyRing, KeyRingError};
pub use service::UsersService;
pub use settings::{LoginRateLimits, UsersSettings};
