//! sea-orm models of the users module's own tables. Never leave this crate.

pub mod refresh_tokens;
pub mod users;
