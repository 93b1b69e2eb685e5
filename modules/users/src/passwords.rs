//! Password hashing: Argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane),
//! run off the async threads.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use shared_kernel::ApiError;
use std::sync::OnceLock;

/// At most this many hashes at once (each takes 19 MiB and a core for tens of milliseconds): a
/// flood of logins or registrations queues here instead of exhausting memory and threads.
fn hashing_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get() * 2)))
}

/// Waits up to 5 s for a hashing slot; then the caller gets 503 with `Retry-After`.
async fn hashing_slot() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), hashing_permits().acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::unavailable("the server is busy; try again shortly", 2)),
    }
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub async fn hash(password: String) -> Result<String, ApiError> {
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        PasswordHasher::<PasswordHash>::hash_password(&hasher(), password.as_bytes()).map(|hash| hash.to_string())
    })
    .await
    .map_err(|_| ApiError::Internal)?
    .map_err(|error| {
        tracing::error!(%error, "password hashing failed");
        ApiError::Internal
    })
}

/// Whether `password` matches `stored`. A malformed stored hash is a mismatch (and logged).
///
/// # Errors
/// 503 when no hashing slot frees up in time.
pub async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    let _slot = hashing_slot().await?;
    Ok(tokio::task::spawn_blocking(move || match PasswordHash::new(&stored) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(error) => {
            tracing::error!(%error, "a stored password hash is malformed");
            false
        }
    })
    .await
    .unwrap_or(false))
}

/// Spends the time of one verification against a hash nobody has, so a login for an unknown
/// email takes as long as one with a wrong password (no account enumeration by timing).
pub async fn verify_against_dummy(password: String) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = match DUMMY.get() {
        Some(dummy) => dummy.clone(),
        None => {
            let made = hash("dummy password for timing".to_owned()).await.unwrap_or_default();
            DUMMY.get_or_init(|| made).clone()
        }
    };
    let _ = verify(password, dummy).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let stored = hash("correct horse battery staple".to_owned()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery staple".to_owned(), stored.clone()).await.unwrap());
        assert!(!verify("wrong horse battery staple".to_owned(), stored).await.unwrap());
        assert!(!verify("anything".to_owned(), "not a hash".to_owned()).await.unwrap());
    }
}
