//! The users module: accounts, credentials, access and refresh tokens, signing keys.
//!
//! Not an API boundary: other modules reach users only through `users-contract`. Only `app`
//! and the tests link this crate.
//!
//! Layout (every module's): [`domain`] (value types that cannot hold an invalid value: `Email`,
//! `Password`, …), one file per group of use cases (`accounts`, `sessions`), `store` (rows and
//! the queries the use cases share), `views` (accounts as the contract shows them), `entities`,
//! `settings`, `context` (what each use case is given) and `service`, the facade implementing
//! [`users_contract::UsersApi`]. Beside them: [`keys`] (the signing key ring, its file format
//! and rotation), `passwords` (hashing on a bounded pool), `tokens`, `rate_limit`.

mod accounts;
mod context;
pub mod domain;
mod entities;
pub mod keys;
mod passwords;
mod rate_limit;
mod service;
mod sessions;
mod settings;
mod store;
mod tokens;
mod views;

pub use keys::{KeyRing, KeyRingError};
pub use service::UsersService;
pub use settings::{LoginRateLimits, UsersSettings};
