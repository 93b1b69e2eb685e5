//! The dead letters of one module as a contract: what the admin API of any process (the gateway
//! included) calls to list, replay and discard them where they are held.
//!
//! Every module offers it, served under the name `<module>_dead_letters` on both wires
//! (`/rpc/<module>_dead_letters/<operation>` over HTTP, the micro service of that name over
//! NATS), by the process that hosts the module: its database holds the dead letters of the
//! module's consumers, and its bus delivers a replay to that consumer.

use super::{DeadLetter, DeadLetterStatus, DeadLetterStore};
use crate::events::EventBus;
use crate::{ApiError, Caller, PageRequest};
use std::sync::Arc;
use uuid::Uuid;

crate::contract! {
    /// The dead letters of the consumers of one module. Every operation is for admins.
    pub trait DeadLettersApi as "dead_letters" {
        /// After `page`'s cursor, oldest first, up to one more row than the page's limit (so a
        /// caller merging several modules knows whether more follow).
        fn list(page: PageRequest, include_resolved: bool) -> Vec<DeadLetter>, idempotent;
        /// # Errors
        /// 404 when this module holds no dead letter `id`.
        fn get(id: Uuid) -> DeadLetter, idempotent;
        /// How many wait for an admin (pending).
        fn pending_count() -> u64, idempotent;
        /// Delivers the event again to the consumer that gave up on it (with the usual retries;
        /// if it fails again it becomes a new dead letter), and marks this one replayed.
        ///
        /// # Errors
        /// 404 as above; 409 when it was already replayed or discarded; 503 when the delivery
        /// could not even be attempted (the letter is pending again).
        fn replay(id: Uuid) -> DeadLetter;
        /// Marks it discarded (it stays in the audit trail).
        ///
        /// # Errors
        /// 404 and 409 as for `replay`.
        fn discard(id: Uuid) -> DeadLetter;
    }
}

/// The dead letters of a module hosted in this process: its store, and this process's bus.
pub struct LocalDeadLetters {
    store: DeadLetterStore,
    bus: Arc<dyn EventBus>,
}

impl LocalDeadLetters {
    pub fn new(store: DeadLetterStore, bus: Arc<dyn EventBus>) -> Self {
        Self { store, bus }
    }
}

#[async_trait::async_trait]
impl DeadLettersApi for LocalDeadLetters {
    async fn list(&self, caller: &Caller, page: PageRequest, include_resolved: bool) -> Result<Vec<DeadLetter>, ApiError> {
        caller.require_admin()?;
        self.store.list_overfetched(&page, include_resolved).await
    }

    async fn get(&self, caller: &Caller, id: Uuid) -> Result<DeadLetter, ApiError> {
        caller.require_admin()?;
        self.store.get(id).await
    }

    async fn pending_count(&self, caller: &Caller) -> Result<u64, ApiError> {
        caller.require_admin()?;
        self.store.count_pending().await
    }

    async fn replay(&self, caller: &Caller, id: Uuid) -> Result<DeadLetter, ApiError> {
        let admin = caller.require_admin()?;
        let dead_letter = self.store.get(id).await?;
        if dead_letter.status != DeadLetterStatus::Pending {
            return Err(ApiError::conflict("this dead letter was already replayed or discarded"));
        }
        // Claim it first, so two admins replaying at once deliver it once; if the delivery
        // cannot even be attempted, it goes back to pending rather than vanishing from the list.
        self.store.mark_replayed(id).await?;
        // Detached from the request: a client that goes away, or the request timeout, cannot
        // stop a replay half-way and leave the letter marked replayed but undelivered.
        let replay = {
            let (bus, store, letter) = (self.bus.clone(), self.store.clone(), dead_letter.clone());
            tokio::spawn(async move {
                let outcome = bus.redeliver(&letter.consumer, &letter.event).await;
                if let Err(error) = &outcome {
                    tracing::error!(%error, dead_letter = %letter.id, "replay failed; the dead letter is pending again");
                    let _ = store.reopen(letter.id).await;
                }
                outcome
            })
        };
        if !matches!(replay.await, Ok(Ok(()))) {
            return Err(ApiError::unavailable("the event could not be delivered again", 1));
        }
        tracing::info!(dead_letter = %id, consumer = %dead_letter.consumer, event_id = %dead_letter.event.id, admin_id = %admin.id, "replayed a dead letter");
        self.store.get(id).await
    }

    async fn discard(&self, caller: &Caller, id: Uuid) -> Result<DeadLetter, ApiError> {
        let admin = caller.require_admin()?;
        self.store.mark_discarded(id).await?;
        tracing::info!(dead_letter = %id, admin_id = %admin.id, "discarded a dead letter");
        self.store.get(id).await
    }
}
