//! Cancelling a confirmed order: the saga's cancellation branch (refund, then restock), started
//! here and driven like placement.

use crate::context::Context;
use crate::store;
use crate::store::stored_precision;
use orders_contract::OrderView;
use shared_kernel::{ApiError, Caller, OrderId};

impl Context {
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub(crate) async fn cancel(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        let inner = &self.inner;
        let order = self.load_for(caller, id).await?;
        let order = match order.cancel(stored_precision(inner.clock.now())).map_err(|error| ApiError::conflict(error.to_string()))? {
            Some(cancelling) => {
                if !store::save(&inner.db, &inner.outbox, &order, &cancelling).await? {
                    return Err(ApiError::conflict("the order changed meanwhile; try again"));
                }
                tracing::info!("cancelling a confirmed order");
                cancelling
            }
            // Cancelled already (answered unchanged), or a cancellation under way (helped along).
            None => order,
        };
        if order.is_done() {
            return self.view_of(order).await;
        }
        let order = match self.drive_detached(order, false).await {
            Some(finished) => finished,
            None => store::load(&inner.db, id).await?.ok_or(ApiError::Internal)?,
        };
        self.view_of(order).await
    }
}
