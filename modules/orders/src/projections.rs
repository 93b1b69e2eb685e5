//! Orders' read models of other modules' data, kept from their events (choreography):
//! customers' account status from users, product names from the catalog. Each handler records
//! the event in orders' inbox in the same transaction as its effect, so a redelivery changes
//! nothing.

use crate::entities::{customer_status, product_names};
use catalog_contract::events::ProductChangedV1;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use shared_kernel::events::{Consumer, DeadLetterSink, EventEnvelope, EventHandler, HandlerError, IntegrationEvent};
use shared_kernel::outbox::Inbox;
use shared_kernel::{Clock, ProductId};
use std::sync::Arc;
use users_contract::events::{UserDeactivatedV1, UserRegisteredV1};

/// Users' account status as orders knows it: a deactivated customer cannot place orders, and
/// orders learns it without a call per order.
#[derive(Debug, Clone)]
pub struct CustomerStatusProjection {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl CustomerStatusProjection {
    pub const CONSUMER: &'static str = "orders.customer_status";

    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// This handler as a durable consumer of users' events.
    pub fn consumer(self, dead_letters: Arc<dyn DeadLetterSink>) -> Consumer {
        Consumer {
            name: Self::CONSUMER.to_owned(),
            event_types: vec![UserRegisteredV1::TYPE.to_owned(), UserDeactivatedV1::TYPE.to_owned()],
            handler: Arc::new(self),
            dead_letters,
            each_process: false,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for CustomerStatusProjection {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let Some(transaction) = Inbox::begin(&self.db, &*self.clock, Self::CONSUMER, event.id).await.map_err(HandlerError::new)? else {
            return Ok(());
        };
        let (user_id, active, at) = if event.event_type == UserRegisteredV1::TYPE {
            let registered: UserRegisteredV1 = event.decode().map_err(HandlerError::new)?;
            (registered.user_id, true, registered.registered_at)
        } else {
            let deactivated: UserDeactivatedV1 = event.decode().map_err(HandlerError::new)?;
            (deactivated.user_id, false, deactivated.deactivated_at)
        };
        let row = customer_status::ActiveModel { user_id: Set(user_id.as_uuid()), active: Set(active), updated_at: Set(at) };
        // Registration never reactivates: if a deactivation got here first (a replayed dead
        // letter), it stands.
        let on_conflict = if active {
            OnConflict::column(customer_status::Column::UserId).do_nothing().to_owned()
        } else {
            OnConflict::column(customer_status::Column::UserId)
                .update_columns([customer_status::Column::Active, customer_status::Column::UpdatedAt])
                .to_owned()
        };
        customer_status::Entity::insert(row)
            .on_conflict(on_conflict)
            .exec_without_returning(&transaction)
            .await
            .map_err(HandlerError::new)?;
        transaction.commit().await.map_err(HandlerError::new)
    }
}

/// Product names for order views, kept current from the catalog's events.
#[derive(Debug, Clone)]
pub struct ProductNamesProjection {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl ProductNamesProjection {
    pub const CONSUMER: &'static str = "orders.product_names";

    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// This handler as a durable consumer of the catalog's events.
    pub fn consumer(self, dead_letters: Arc<dyn DeadLetterSink>) -> Consumer {
        Consumer {
            name: Self::CONSUMER.to_owned(),
            event_types: vec![ProductChangedV1::TYPE.to_owned()],
            handler: Arc::new(self),
            dead_letters,
            each_process: false,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for ProductNamesProjection {
    async fn handle(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let changed: ProductChangedV1 = event.decode().map_err(HandlerError::new)?;
        let Some(transaction) = Inbox::begin(&self.db, &*self.clock, Self::CONSUMER, event.id).await.map_err(HandlerError::new)? else {
            return Ok(());
        };
        upsert_product_name(&transaction, changed.product_id, &changed.sku, &changed.name, changed.version)
            .await
            .map_err(HandlerError::new)?;
        transaction.commit().await.map_err(HandlerError::new)
    }
}

/// Records a product's name unless a newer version of it is known already (events and
/// placement can arrive in any order).
pub(crate) async fn upsert_product_name(
    db: &impl ConnectionTrait,
    id: ProductId,
    sku: &str,
    name: &str,
    version: i32,
) -> Result<(), DbErr> {
    let updated = product_names::Entity::update_many()
        .col_expr(product_names::Column::Sku, Expr::value(sku))
        .col_expr(product_names::Column::Name, Expr::value(name))
        .col_expr(product_names::Column::Version, Expr::value(version))
        .filter(product_names::Column::ProductId.eq(id.as_uuid()))
        .filter(product_names::Column::Version.lt(version))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        let row = product_names::ActiveModel {
            product_id: Set(id.as_uuid()),
            sku: Set(sku.to_owned()),
            name: Set(name.to_owned()),
            version: Set(version),
        };
        product_names::Entity::insert(row)
            .on_conflict(OnConflict::column(product_names::Column::ProductId).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}
