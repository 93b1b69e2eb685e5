//! Sales counters, choreographed: the catalog counts units sold from orders' events, with no
//! call from orders. A confirmed order adds its quantities; a cancelled one takes them back.

use crate::cache::{CacheStore, Tag};
use crate::entities::products;
use catalog_contract::events::{StockChange, StockChangedV1};
use orders_contract::events::{OrderCancelledV1, OrderConfirmedV1, OrderedLine};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use shared_kernel::events::{Consumer, DeadLetterSink, EventEnvelope, EventHandler, HandlerError, IntegrationEvent};
use shared_kernel::outbox::{Inbox, Outbox, UnitOfWork};
use shared_kernel::{Clock, OrderId, ProductId};
use std::sync::Arc;

/// Keeps `units_sold` per product. Idempotent through the catalog's inbox; publishes
/// `StockChangedV1` (`sold`) in the same transaction, so every instance's cache drops the counts.
#[derive(Debug, Clone)]
pub struct SalesCounter {
    db: DatabaseConnection,
    outbox: Outbox,
    cache: Arc<dyn CacheStore>,
    clock: Arc<dyn Clock>,
}

impl SalesCounter {
    pub const CONSUMER: &'static str = "catalog.sales";

    /// Made by [`crate::CatalogService::sales_counter`], sharing its product cache.
    pub(crate) fn new(db: DatabaseConnection, outbox: Outbox, cache: Arc<dyn CacheStore>, clock: Arc<dyn Clock>) -> Self {
        Self { db, outbox, cache, clock }
    }

    /// This handler as a durable consumer of orders' events.
    pub fn consumer(self, dead_letters: Arc<dyn DeadLetterSink>) -> Consumer {
        Consumer {
            name: Self::CONSUMER.to_owned(),
            event_types: vec![OrderConfirmedV1::TYPE.to_owned(), OrderCancelledV1::TYPE.to_owned()],
            handler: Arc::new(self),
            dead_letters,
            each_process: false,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for SalesCounter {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let (order_id, lines, sign): (OrderId, Vec<OrderedLine>, i64) = if event.event_type == OrderConfirmedV1::TYPE {
            let confirmed = event.decode::<OrderConfirmedV1>().map_err(HandlerError::new)?;
            (confirmed.order_id, confirmed.lines, 1)
        } else {
            let cancelled = event.decode::<OrderCancelledV1>().map_err(HandlerError::new)?;
            (cancelled.order_id, cancelled.lines, -1)
        };
        let Some(transaction) = Inbox::begin(&self.db, &*self.clock, Self::CONSUMER, event.id).await.map_err(HandlerError::new)? else {
            return Ok(());
        };
        let touched: Vec<uuid::Uuid> = lines.iter().map(|line| line.product_id.as_uuid()).collect();
        for line in lines {
            // A product deleted meanwhile has no counter to keep: the update touches nothing.
            products::Entity::update_many()
                .col_expr(products::Column::UnitsSold, Expr::col(products::Column::UnitsSold).add(sign * i64::from(line.quantity)))
                .filter(products::Column::Id.eq(line.product_id.as_uuid()))
                .exec(&transaction)
                .await
                .map_err(HandlerError::new)?;
        }
        let now = self.clock.now();
        let mut unit = UnitOfWork::from_transaction(transaction, &self.outbox);
        let counted = StockChangedV1 {
            product_ids: touched.iter().copied().map(ProductId::from_uuid).collect(),
            change: StockChange::Sold,
            order_id: Some(order_id),
            changed_at: now,
        };
        unit.publish(&counted, now, None).await.map_err(HandlerError::new)?;
        unit.commit().await.map_err(HandlerError::new)?;
        self.cache.invalidate(&Tag::products(touched)).await;
        Ok(())
    }
}
