//! Recovery: sagas a crash, a restart or an unavailable module left half-way are found by the
//! time of their last progress and driven on by whichever instance sweeps first.

use crate::context::Context;
use crate::entities::orders;
use crate::saga::Step;
use crate::store;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use shared_kernel::{ApiError, OrderId};
use std::time::Duration;

impl Context {
    /// Drives every saga that still has a step left and has made no progress for `stale_after`
    /// (`Duration::ZERO`: every one, as at start-up). Returns how many it drove to the end.
    ///
    /// # Errors
    /// The database is unavailable.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn recover_in_flight(&self, stale_after: Duration) -> Result<usize, ApiError> {
        let cutoff = self.inner.clock.now() - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
        let stuck: Vec<uuid::Uuid> = orders::Entity::find()
            .select_only()
            .column(orders::Column::Id)
            .filter(orders::Column::Step.ne(Step::Done.as_str()))
            .filter(orders::Column::UpdatedAt.lte(cutoff))
            .order_by_asc(orders::Column::UpdatedAt)
            .limit(100)
            .into_tuple()
            .all(&self.inner.db)
            .await?;
        let mut finished = 0;
        for id in stuck {
            tracing::info!(order_id = %id, "resuming an interrupted order saga");
            // A row that does not read back is logged by the store and skipped here.
            let Ok(Some(order)) = store::load(&self.inner.db, OrderId::from_uuid(id)).await else { continue };
            if self.drive(order, false).await.is_ok_and(|done| done.is_some()) {
                finished += 1;
            }
        }
        Ok(finished)
    }
}
