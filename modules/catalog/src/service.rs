//! The catalog's use cases, behind [`CatalogApi`].

use crate::cache::{CacheSettings, CacheStore, Cached, InProcessCache, Key, Lookup, Tag};
use crate::domain::{self, Checks};
use crate::entities::{categories, products, reservation_orders, reservations};
use catalog_contract::events::{CategoryCreatedV1, ProductChangedV1, StockChange, StockChangedV1};
use catalog_contract::{
    CatalogApi, CategoryView, CommitOutcome, NewCategory, NewProduct, ProductPatch, ProductQuery, ProductView, Reservation,
    ReservationStatus, ReserveLine, ReserveOutcome, ReservedLine, RestockOutcome, SetStock, StockRefusal,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    SqlErr,
};
use shared_kernel::outbox::{Outbox, UnitOfWork};
use shared_kernel::{ApiError, Caller, CategoryId, Clock, Currency, Money, OrderId, Page, PageRequest, ProductId, ServiceName};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A reservation status as its rows store it (every match is exhaustive, so a new status must
/// be given a name here).
const fn stored_status(status: ReservationStatus) -> &'static str {
    match status {
        ReservationStatus::Reserved => "reserved",
        ReservationStatus::Committed => "committed",
        ReservationStatus::Released => "released",
        ReservationStatus::Restocked => "restocked",
    }
}

fn parse_stored_status(name: &str) -> Option<ReservationStatus> {
    [ReservationStatus::Reserved, ReservationStatus::Committed, ReservationStatus::Released, ReservationStatus::Restocked]
        .into_iter()
        .find(|status| stored_status(*status) == name)
}

/// How the catalog holds stock for orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSettings {
    /// A reservation not committed within this time is released (the last line of defence when
    /// an order never finishes).
    pub reservation_ttl: chrono::Duration,
    /// The read cache's TTL and size (its adapter is given by [`CatalogService::with_cache`]).
    pub cache: CacheSettings,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self { reservation_ttl: chrono::Duration::minutes(15), cache: CacheSettings::default() }
    }
}

/// The catalog module. Cheap to clone.
#[derive(Clone)]
pub struct CatalogService {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    outbox: Outbox,
    settings: CatalogSettings,
    cache: Arc<dyn CacheStore>,
}

impl std::fmt::Debug for CatalogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl CatalogService {
    /// `db` must be the catalog's own database, already migrated. Reads are cached in this
    /// process ([`InProcessCache`]); [`CatalogService::with_cache`] gives another adapter.
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, outbox: Outbox, settings: CatalogSettings) -> Self {
        let cache = Arc::new(InProcessCache::new(settings.cache));
        Self { db, clock, outbox, settings, cache }
    }

    /// The same catalog reading through `cache` (Redis, shared by every instance).
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<dyn CacheStore>) -> Self {
        self.cache = cache;
        self
    }

    /// The read cache, for readiness (whether its store answers).
    pub fn cache(&self) -> Arc<dyn CacheStore> {
        self.cache.clone()
    }

    /// The sales counter consumer for this catalog (it invalidates the cached products it counts).
    pub fn sales_counter(&self) -> crate::SalesCounter {
        crate::SalesCounter::new(self.db.clone(), self.outbox.clone(), self.cache.clone(), self.clock.clone())
    }

    /// The consumer that keeps this process's cache in step with every instance's writes.
    pub fn cache_invalidator(&self) -> crate::CacheInvalidator {
        crate::CacheInvalidator::new(self.cache.clone())
    }

    /// Reads `key` through the cache: `load` runs on a miss, and what it gives is stored.
    async fn cached<T>(
        &self,
        key: Option<Key>,
        unwrap: impl Fn(Cached) -> Option<T>,
        wrap: impl Fn(&T) -> Cached,
        load: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let Some(key) = key else { return load.await };
        let stamp = match self.cache.get(&key).await {
            Lookup::Hit(value) => {
                if let Some(found) = unwrap(value) {
                    return Ok(found);
                }
                // Another type under this key cannot happen (keys are typed); read afresh.
                None
            }
            Lookup::Miss(stamp) => Some(stamp),
        };
        let value = load.await?;
        if let Some(stamp) = stamp {
            self.cache.put(&key, wrap(&value), stamp).await;
        }
        Ok(value)
    }

    /// Whether this module's database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// Releases reservations past their time; returns how many orders' reservations it released.
    ///
    /// # Errors
    /// The database is unavailable.
    #[tracing::instrument(skip_all)]
    pub async fn expire_reservations(&self) -> Result<usize, ApiError> {
        let now = self.clock.now();
        let expired: Vec<uuid::Uuid> = reservations::Entity::find()
            .select_only()
            .column(reservations::Column::OrderId)
            .distinct()
            .filter(reservations::Column::Status.eq(stored_status(ReservationStatus::Reserved)))
            .filter(reservations::Column::ExpiresAt.lt(now))
            .limit(100)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for order in &expired {
            self.release_order(OrderId::from_uuid(*order)).await?;
            tracing::info!(order_id = %order, "released an expired reservation");
        }
        Ok(expired.len())
    }

    async fn load_product(&self, id: ProductId) -> Result<products::Model, ApiError> {
        products::Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("product not found"))
    }

    /// A page of products, from the database.
    async fn load_products(&self, query: ProductQuery) -> Result<Page<ProductView>, ApiError> {
        let page = &query.page;
        let mut select = products::Entity::find().order_by_asc(products::Column::Id).limit(u64::from(page.limit()) + 1);
        if let Some(category) = query.category {
            select = select.filter(products::Column::CategoryId.eq(category.as_uuid()));
        }
        if let Some(text) = query.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            select = select.filter(Expr::col(products::Column::SearchText).like(LikeExpr::new(format!("%{escaped}%")).escape('\\')));
        }
        if let Some(after) = page.after_key()? {
            let after = uuid::Uuid::parse_str(&after).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
            select = select.filter(products::Column::Id.gt(after));
        }
        let rows = select.all(&self.db).await.map_err(db_error)?;
        let page = Page::from_overfetched(rows, page.limit(), |row| row.id.to_string());
        Ok(Page { items: page.items.iter().map(product_view).collect::<Result<_, _>>()?, next_cursor: page.next_cursor })
    }

    /// A product as its transaction now sees it. Not `UPDATE … RETURNING`: SQLite has been seen
    /// to return NULL there for `units_sold`, a column added by a later migration.
    async fn reread(connection: &impl ConnectionTrait, id: uuid::Uuid) -> Result<products::Model, ApiError> {
        products::Entity::find_by_id(id).one(connection).await.map_err(db_error)?.ok_or_else(|| ApiError::not_found("product not found"))
    }

    async fn category_exists(&self, id: CategoryId) -> Result<bool, ApiError> {
        Ok(categories::Entity::find_by_id(id.as_uuid()).one(&self.db).await.map_err(db_error)?.is_some())
    }

    async fn reservation_of(&self, order_id: OrderId) -> Result<Option<Reservation>, ApiError> {
        let rows = reservations::Entity::find()
            .filter(reservations::Column::OrderId.eq(order_id.as_uuid()))
            .order_by_asc(reservations::Column::ProductId)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let Some(first) = rows.first() else { return Ok(None) };
        let status = parse_stored_status(&first.status).ok_or_else(|| {
            tracing::error!(order_id = %order_id, status = %first.status, "a reservation row holds an unknown status");
            ApiError::Internal
        })?;
        Ok(Some(Reservation {
            order_id,
            status,
            expires_at: first.expires_at,
            lines: rows
                .iter()
                .map(|row| {
                    Ok(ReservedLine {
                        product_id: ProductId::from_uuid(row.product_id),
                        quantity: u32::try_from(row.quantity).unwrap_or(u32::MAX),
                        unit_price: stored_price(row.unit_price_amount, &row.unit_price_currency, "reservation", row.order_id)?,
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        }))
    }

    /// Moves an order's rows from `from` to `to` and returns them: the status change comes first,
    /// so the transaction takes its write lock at once and a second caller finds nothing to move.
    async fn move_reservation(
        connection: &impl ConnectionTrait,
        order_id: OrderId,
        from: ReservationStatus,
        to: ReservationStatus,
        now: DateTime<Utc>,
        unexpired_only: bool,
    ) -> Result<Vec<reservations::Model>, DbErr> {
        let mut update = reservations::Entity::update_many()
            .col_expr(reservations::Column::Status, Expr::value(stored_status(to)))
            .filter(reservations::Column::OrderId.eq(order_id.as_uuid()))
            .filter(reservations::Column::Status.eq(stored_status(from)));
        if unexpired_only {
            update = update.filter(reservations::Column::ExpiresAt.gt(now));
        }
        update.exec_with_returning(connection).await
    }

    async fn release_order(&self, order_id: OrderId) -> Result<(), ApiError> {
        self.transition(order_id, RELEASE).await.map(|_| ())
    }

    /// Moves an order's rows along `change` and adjusts each product's stock to match, in one
    /// transaction. Returns whether anything moved (nothing: the order was not in `change.from`).
    async fn transition(&self, order_id: OrderId, change: Transition) -> Result<bool, ApiError> {
        let now = self.clock.now();
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await.map_err(db_error)?;
        let moved = Self::move_reservation(&*unit, order_id, change.from, change.to, now, change.unexpired_only).await.map_err(db_error)?;
        if moved.is_empty() {
            unit.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        let touched: Vec<uuid::Uuid> = moved.iter().map(|row| row.product_id).collect();
        for row in sorted(moved) {
            products::Entity::update_many()
                .col_expr(products::Column::OnHand, Expr::col(products::Column::OnHand).add(change.on_hand * row.quantity))
                .col_expr(products::Column::Reserved, Expr::col(products::Column::Reserved).add(change.reserved * row.quantity))
                .filter(products::Column::Id.eq(row.product_id))
                .exec(&*unit)
                .await
                .map_err(db_error)?;
        }
        Self::publish_stock_changed(&mut unit, &touched, change.change, Some(order_id), now).await?;
        unit.commit().await.map_err(db_error)?;
        self.cache.invalidate(&Tag::products(touched)).await;
        Ok(true)
    }

    /// Tells every instance (and any consumer) that these products' stock changed.
    async fn publish_stock_changed(
        unit: &mut UnitOfWork,
        products: &[uuid::Uuid],
        change: StockChange,
        order_id: Option<OrderId>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let event =
            StockChangedV1 { product_ids: products.iter().copied().map(ProductId::from_uuid).collect(), change, order_id, changed_at: now };
        unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await.map_err(db_error)?;
        Ok(())
    }

    async fn publish_changed(unit: &mut UnitOfWork, product: &products::Model, now: DateTime<Utc>) -> Result<(), ApiError> {
        let event = ProductChangedV1 {
            product_id: ProductId::from_uuid(product.id),
            sku: product.sku.clone(),
            name: product.name.clone(),
            price: stored_price(product.price_amount, &product.price_currency, "product", product.id)?,
            version: product.version,
            changed_at: now,
        };
        unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await.map_err(db_error)?;
        Ok(())
    }
}

/// A reservation status change and what it does to each product's stock (per unit reserved).
#[derive(Debug, Clone, Copy)]
struct Transition {
    from: ReservationStatus,
    to: ReservationStatus,
    /// Only reservations not yet expired move (a commit must not revive an expired one).
    unexpired_only: bool,
    on_hand: i64,
    reserved: i64,
    /// What the event says.
    change: StockChange,
}

/// Stock held for an order goes back to available.
const RELEASE: Transition = Transition {
    from: ReservationStatus::Reserved,
    to: ReservationStatus::Released,
    unexpired_only: false,
    on_hand: 0,
    reserved: -1,
    change: StockChange::Released,
};
/// Held stock is sold: it leaves on hand and reserved alike.
const COMMIT: Transition = Transition {
    from: ReservationStatus::Reserved,
    to: ReservationStatus::Committed,
    unexpired_only: true,
    on_hand: -1,
    reserved: -1,
    change: StockChange::Committed,
};
/// Sold stock of a cancelled order comes back on hand.
const RESTOCK: Transition = Transition {
    from: ReservationStatus::Committed,
    to: ReservationStatus::Restocked,
    unexpired_only: false,
    on_hand: 1,
    reserved: 0,
    change: StockChange::Restocked,
};

/// Rows in product-id order: every transaction locks products in the same order, so two
/// reservations can never deadlock each other.
fn sorted(mut rows: Vec<reservations::Model>) -> Vec<reservations::Model> {
    rows.sort_by_key(|row| row.product_id);
    rows
}

/// Reserving, releasing and committing stock: the orders service, or an admin.
fn require_service_or_admin(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Service(ServiceName::Orders) => Ok(()),
        Caller::Service(_) => Err(ApiError::forbidden("only the orders service may hold stock")),
        _ => caller.require_admin().map(|_| ()),
    }
}

#[async_trait::async_trait]
impl CatalogApi for CatalogService {
    async fn list_categories(&self, _caller: &Caller, page: PageRequest) -> Result<Page<CategoryView>, ApiError> {
        let after = page.after_key()?;
        let key = Key::category_page(after.as_deref(), page.limit());
        let load = async {
            let mut query = categories::Entity::find().order_by_asc(categories::Column::NameKey).limit(u64::from(page.limit()) + 1);
            if let Some(after) = after.clone() {
                query = query.filter(categories::Column::NameKey.gt(after));
            }
            let rows = query.all(&self.db).await.map_err(db_error)?;
            Ok(Page::from_overfetched(rows, page.limit(), |row| row.name_key.clone()).map(|row| category_view(&row)))
        };
        let unwrap = |value| if let Cached::Categories(page) = value { Some(page) } else { None };
        self.cached(key, unwrap, |page: &Page<CategoryView>| Cached::Categories(page.clone()), load).await
    }

    #[tracing::instrument(skip_all)]
    async fn create_category(&self, caller: &Caller, input: NewCategory) -> Result<CategoryView, ApiError> {
        caller.require_admin()?;
        let name = domain::text("name", &input.name, 100, true).map_err(|e| ApiError::invalid(vec![e.into()]))?;
        // Lower-casing can lengthen text (`İ` becomes two characters); the key must fit too.
        if name.to_lowercase().chars().count() > 100 {
            return Err(ApiError::invalid_field("name", "must be at most 100 characters"));
        }
        let now = self.clock.now();
        let row = categories::ActiveModel {
            id: Set(CategoryId::new().as_uuid()),
            name_key: Set(name.to_lowercase()),
            name: Set(name),
            created_at: Set(now),
        };
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await.map_err(db_error)?;
        let created = match row.insert(&*unit).await {
            Ok(created) => created,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(ApiError::conflict("a category with this name exists"));
            }
            Err(error) => return Err(db_error(error)),
        };
        let event = CategoryCreatedV1 { category_id: CategoryId::from_uuid(created.id), name: created.name.clone(), created_at: now };
        unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await.map_err(db_error)?;
        unit.commit().await.map_err(db_error)?;
        self.cache.invalidate(&[Tag::Categories]).await;
        Ok(category_view(&created))
    }

    async fn get_categories(&self, _caller: &Caller, ids: Vec<CategoryId>) -> Result<Vec<CategoryView>, ApiError> {
        if ids.len() > 1000 {
            return Err(ApiError::invalid_field("ids", "at most 1000 at once"));
        }
        let unique: BTreeSet<uuid::Uuid> = ids.iter().map(CategoryId::as_uuid).collect();
        let mut found = Vec::with_capacity(unique.len());
        let mut missing = Vec::new();
        for id in unique {
            match self.cache.get(&Key::Category(id)).await {
                Lookup::Hit(Cached::Category(view)) => found.push(view),
                Lookup::Hit(_) => missing.push((id, None)),
                Lookup::Miss(stamp) => missing.push((id, Some(stamp))),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = categories::Entity::find()
            .filter(categories::Column::Id.is_in(missing.iter().map(|(id, _)| *id)))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for row in rows {
            let view = category_view(&row);
            if let Some((_, Some(stamp))) = missing.iter().find(|(id, _)| *id == row.id) {
                self.cache.put(&Key::Category(row.id), Cached::Category(view.clone()), *stamp).await;
            }
            found.push(view);
        }
        Ok(found)
    }

    async fn list_products(&self, _caller: &Caller, query: ProductQuery) -> Result<Page<ProductView>, ApiError> {
        let after = query.page.after_key()?;
        let text = query.q.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
        let key = Key::product_page(query.category.map(|c| c.as_uuid()), text.as_deref(), after.as_deref(), query.page.limit());
        let unwrap = |value| if let Cached::Products(page) = value { Some(page) } else { None };
        self.cached(key, unwrap, |page: &Page<ProductView>| Cached::Products(page.clone()), self.load_products(query)).await
    }

    async fn get_product(&self, _caller: &Caller, id: ProductId) -> Result<ProductView, ApiError> {
        let load = async { product_view(&self.load_product(id).await?) };
        let unwrap = |value| if let Cached::Product(view) = value { Some(view) } else { None };
        self.cached(Some(Key::Product(id.as_uuid())), unwrap, |view: &ProductView| Cached::Product(view.clone()), load).await
    }

    async fn get_products(&self, _caller: &Caller, ids: Vec<ProductId>) -> Result<Vec<ProductView>, ApiError> {
        if ids.len() > 1000 {
            return Err(ApiError::invalid_field("ids", "at most 1000 at once"));
        }
        let unique: BTreeSet<uuid::Uuid> = ids.iter().map(ProductId::as_uuid).collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let rows = products::Entity::find().filter(products::Column::Id.is_in(unique)).all(&self.db).await.map_err(db_error)?;
        rows.iter().map(product_view).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn create_product(&self, caller: &Caller, input: NewProduct) -> Result<ProductView, ApiError> {
        caller.require_admin()?;
        let mut checks = Checks::default();
        let sku = checks.check(domain::sku(&input.sku));
        let name = checks.check(domain::text("name", &input.name, 200, true));
        let description = checks.check(domain::text("description", &input.description, 5000, false));
        let price = checks.check(domain::price(input.price));
        let on_hand = checks.check(domain::stock("stock_on_hand", input.stock_on_hand));
        let (Some(sku), Some(name), Some(description), Some(price), Some(on_hand)) = (sku, name, description, price, on_hand) else {
            return Err(ApiError::invalid(checks.0.into_iter().map(Into::into).collect()));
        };
        if let Some(category) = input.category_id
            && !self.category_exists(category).await?
        {
            return Err(ApiError::invalid_field("category_id", "no such category"));
        }
        let now = self.clock.now();
        let row = products::ActiveModel {
            id: Set(ProductId::new().as_uuid()),
            sku_key: Set(sku.to_lowercase()),
            search_text: Set(domain::search_text(&sku, &name, &description)),
            sku: Set(sku),
            name: Set(name),
            description: Set(description),
            price_amount: Set(price.amount()),
            price_currency: Set(price.currency().to_string()),
            category_id: Set(input.category_id.map(|c| c.as_uuid())),
            on_hand: Set(on_hand),
            reserved: Set(0),
            version: Set(1),
            units_sold: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await.map_err(db_error)?;
        let created = match row.insert(&*unit).await {
            Ok(created) => created,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(ApiError::conflict("a product with this SKU exists"));
            }
            Err(error) => return Err(db_error(error)),
        };
        Self::publish_changed(&mut unit, &created, now).await?;
        unit.commit().await.map_err(db_error)?;
        self.cache.invalidate(&Tag::products([created.id])).await;
        tracing::info!(product_id = %created.id, "created a product");
        product_view(&created)
    }

    #[tracing::instrument(skip_all, fields(product_id = %id))]
    async fn update_product(&self, caller: &Caller, id: ProductId, patch: ProductPatch) -> Result<ProductView, ApiError> {
        caller.require_admin()?;
        let current = self.load_product(id).await?;
        let mut checks = Checks::default();
        let name = patch.name.as_deref().map(|n| checks.check(domain::text("name", n, 200, true)));
        let description = patch.description.as_deref().map(|d| checks.check(domain::text("description", d, 5000, false)));
        let price = patch.price.map(|p| checks.check(domain::price(p)));
        if !checks.0.is_empty() {
            return Err(ApiError::invalid(checks.0.into_iter().map(Into::into).collect()));
        }
        if let Some(Some(category)) = patch.category_id
            && !self.category_exists(category).await?
        {
            return Err(ApiError::invalid_field("category_id", "no such category"));
        }
        let name = name.flatten().unwrap_or_else(|| current.name.clone());
        let description = description.flatten().unwrap_or_else(|| current.description.clone());
        let price = match price.flatten() {
            Some(price) => price,
            None => stored_price(current.price_amount, &current.price_currency, "product", current.id)?,
        };
        let category = match patch.category_id {
            Some(category) => category.map(|c| c.as_uuid()),
            None => current.category_id,
        };
        let now = self.clock.now();
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await.map_err(db_error)?;
        // The version check is in the WHERE: a concurrent edit makes this match nothing.
        let updated = products::Entity::update_many()
            .col_expr(products::Column::Name, Expr::value(name.clone()))
            .col_expr(products::Column::Description, Expr::value(description.clone()))
            .col_expr(products::Column::SearchText, Expr::value(domain::search_text(&current.sku, &name, &description)))
            .col_expr(products::Column::PriceAmount, Expr::value(price.amount()))
            .col_expr(products::Column::PriceCurrency, Expr::value(price.currency().to_string()))
            .col_expr(products::Column::CategoryId, Expr::value(category))
            .col_expr(products::Column::Version, Expr::value(patch.version + 1))
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(id.as_uuid()))
            .filter(products::Column::Version.eq(patch.version))
            .exec(&*unit)
            .await
            .map_err(db_error)?;
        if updated.rows_affected == 0 {
            return Err(ApiError::conflict(format!("the product changed meanwhile: the current version is {}", current.version)));
        }
        let product = Self::reread(&*unit, id.as_uuid()).await?;
        Self::publish_changed(&mut unit, &product, now).await?;
        unit.commit().await.map_err(db_error)?;
        self.cache.invalidate(&Tag::products([product.id])).await;
        product_view(&product)
    }

    #[tracing::instrument(skip_all, fields(product_id = %id))]
    async fn set_stock(&self, caller: &Caller, id: ProductId, stock: SetStock) -> Result<ProductView, ApiError> {
        caller.require_admin()?;
        let on_hand = domain::stock("on_hand", stock.on_hand).map_err(|e| ApiError::invalid(vec![e.into()]))?;
        let now = self.clock.now();
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await.map_err(db_error)?;
        let updated = products::Entity::update_many()
            .col_expr(products::Column::OnHand, Expr::value(on_hand))
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(id.as_uuid()))
            .filter(products::Column::Reserved.lte(on_hand))
            .exec(&*unit)
            .await
            .map_err(db_error)?;
        match updated.rows_affected {
            1.. => {
                let product = Self::reread(&*unit, id.as_uuid()).await?;
                Self::publish_stock_changed(&mut unit, &[product.id], StockChange::Set, None, now).await?;
                unit.commit().await.map_err(db_error)?;
                self.cache.invalidate(&Tag::products([product.id])).await;
                product_view(&product)
            }
            0 => {
                unit.rollback().await.map_err(db_error)?;
                let current = self.load_product(id).await?;
                Err(ApiError::conflict(format!("{} units are reserved for orders: stock on hand cannot go below that", current.reserved)))
            }
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn reserve(&self, caller: &Caller, order_id: OrderId, lines: Vec<ReserveLine>) -> Result<ReserveOutcome, ApiError> {
        require_service_or_admin(caller)?;
        if lines.is_empty() || lines.len() > domain::MAX_LINES {
            return Err(ApiError::invalid_field("lines", format!("must hold 1 to {} lines", domain::MAX_LINES)));
        }
        if lines.iter().any(|l| l.quantity == 0 || l.quantity > domain::MAX_QUANTITY) {
            return Err(ApiError::invalid_field("quantity", format!("must be between 1 and {}", domain::MAX_QUANTITY)));
        }
        let ids: BTreeSet<uuid::Uuid> = lines.iter().map(|l| l.product_id.as_uuid()).collect();
        if ids.len() != lines.len() {
            return Err(ApiError::invalid_field("lines", "each product may appear once"));
        }
        let lines_key = {
            let mut sorted: Vec<String> = lines.iter().map(|l| format!("{}x{}", l.product_id, l.quantity)).collect();
            sorted.sort();
            sorted.join(",")
        };
        let refused = |refusal| Ok(ReserveOutcome::Refused { refusal });
        // A repeat for the order is found by the header's primary key below.
        let products = products::Entity::find().filter(products::Column::Id.is_in(ids.clone())).all(&self.db).await.map_err(db_error)?;
        if products.len() != ids.len() {
            return refused(StockRefusal::UnknownProduct);
        }
        let now = self.clock.now();
        // Microseconds: what both databases store, so the answer equals what a read gives back.
        let expires_at = chrono::SubsecRound::trunc_subsecs(now + self.settings.reservation_ttl, 6);
        let mut sorted_lines = lines.clone();
        sorted_lines.sort_by_key(|l| l.product_id);
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await.map_err(db_error)?;
        // The order's header goes in first: on SQLite that takes the write lock at once, and a
        // concurrent reserve for the same order (whatever its lines) fails on the primary key
        // instead of holding stock twice.
        let header =
            reservation_orders::ActiveModel { order_id: Set(order_id.as_uuid()), lines_key: Set(lines_key.clone()), created_at: Set(now) };
        if let Err(error) = header.insert(&*unit).await {
            unit.rollback().await.map_err(db_error)?;
            if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                let header = reservation_orders::Entity::find_by_id(order_id.as_uuid()).one(&self.db).await.map_err(db_error)?;
                if header.is_some_and(|header| header.lines_key != lines_key) {
                    return refused(StockRefusal::OtherLinesReserved);
                }
                return match self.reservation_of(order_id).await? {
                    Some(reservation) => Ok(ReserveOutcome::Reserved { reservation }),
                    None => Err(ApiError::unavailable("the reservation is being made; try again", 1)),
                };
            }
            return Err(db_error(error));
        }
        for line in &sorted_lines {
            let product = products.iter().find(|p| p.id == line.product_id.as_uuid()).ok_or(ApiError::Internal)?;
            let row = reservations::ActiveModel {
                order_id: Set(order_id.as_uuid()),
                product_id: Set(product.id),
                quantity: Set(i64::from(line.quantity)),
                unit_price_amount: Set(product.price_amount),
                unit_price_currency: Set(product.price_currency.clone()),
                status: Set(stored_status(ReservationStatus::Reserved).to_owned()),
                expires_at: Set(expires_at),
                created_at: Set(now),
            };
            row.insert(&*unit).await.map_err(db_error)?;
        }
        for line in &sorted_lines {
            let quantity = i64::from(line.quantity);
            let held = products::Entity::update_many()
                .col_expr(products::Column::Reserved, Expr::col(products::Column::Reserved).add(quantity))
                .filter(products::Column::Id.eq(line.product_id.as_uuid()))
                .filter(Expr::col(products::Column::OnHand).sub(Expr::col(products::Column::Reserved)).gte(quantity))
                .exec(&*unit)
                .await
                .map_err(db_error)?;
            if held.rows_affected != 1 {
                unit.rollback().await.map_err(db_error)?;
                return refused(StockRefusal::OutOfStock { product_id: line.product_id });
            }
        }
        let touched: Vec<uuid::Uuid> = sorted_lines.iter().map(|line| line.product_id.as_uuid()).collect();
        Self::publish_stock_changed(&mut unit, &touched, StockChange::Reserved, Some(order_id), now).await?;
        unit.commit().await.map_err(db_error)?;
        self.cache.invalidate(&Tag::products(touched)).await;
        tracing::info!(lines = lines.len(), "reserved stock");
        // What was just written, as `reservation_of` would read it back.
        let reserved = sorted_lines
            .iter()
            .map(|line| {
                let product = products.iter().find(|p| p.id == line.product_id.as_uuid()).ok_or(ApiError::Internal)?;
                Ok(ReservedLine {
                    product_id: line.product_id,
                    quantity: line.quantity,
                    unit_price: stored_price(product.price_amount, &product.price_currency, "product", product.id)?,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(ReserveOutcome::Reserved {
            reservation: Reservation { order_id, status: ReservationStatus::Reserved, lines: reserved, expires_at },
        })
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn release(&self, caller: &Caller, order_id: OrderId) -> Result<(), ApiError> {
        require_service_or_admin(caller)?;
        self.release_order(order_id).await
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn commit(&self, caller: &Caller, order_id: OrderId) -> Result<CommitOutcome, ApiError> {
        require_service_or_admin(caller)?;
        if self.transition(order_id, COMMIT).await? {
            return Ok(CommitOutcome::Committed);
        }
        Ok(match self.reservation_of(order_id).await? {
            Some(reservation) if reservation.status == ReservationStatus::Committed => CommitOutcome::Committed,
            // Released, expired, or committed and then restocked: not a sale now.
            Some(_) => CommitOutcome::Lapsed,
            None => CommitOutcome::NoReservation,
        })
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    async fn restock(&self, caller: &Caller, order_id: OrderId) -> Result<RestockOutcome, ApiError> {
        require_service_or_admin(caller)?;
        if self.transition(order_id, RESTOCK).await? {
            return Ok(RestockOutcome::Restocked);
        }
        Ok(match self.reservation_of(order_id).await? {
            Some(reservation) if reservation.status == ReservationStatus::Restocked => RestockOutcome::Restocked,
            Some(_) => RestockOutcome::NotCommitted,
            None => RestockOutcome::NoReservation,
        })
    }
}

fn category_view(row: &categories::Model) -> CategoryView {
    CategoryView { id: CategoryId::from_uuid(row.id), name: row.name.clone(), created_at: row.created_at }
}

/// A price read back from a row; a currency the code does not know is an error naming the row.
fn stored_price(amount: i64, currency: &str, row: &'static str, id: uuid::Uuid) -> Result<Money, ApiError> {
    match Currency::parse(currency) {
        Ok(currency) => Ok(Money::new(amount, currency)),
        Err(_) => {
            tracing::error!(row, %id, currency, "a stored price has an unknown currency");
            Err(ApiError::Internal)
        }
    }
}

fn product_view(row: &products::Model) -> Result<ProductView, ApiError> {
    Ok(ProductView {
        id: ProductId::from_uuid(row.id),
        sku: row.sku.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        price: stored_price(row.price_amount, &row.price_currency, "product", row.id)?,
        category_id: row.category_id.map(CategoryId::from_uuid),
        stock_available: row.on_hand - row.reserved,
        stock_on_hand: row.on_hand,
        stock_reserved: row.reserved,
        units_sold: row.units_sold,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// A database failure: 503 when the database cannot be reached, else a logged 500.
fn db_error(error: DbErr) -> ApiError {
    shared_kernel::db::api_error("catalog", error)
}
