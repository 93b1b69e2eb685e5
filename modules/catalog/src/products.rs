//! Products: read (through the cache), made and edited by an admin. Every write appends
//! `ProductChangedV1` to the outbox in its transaction and drops the product from the cache.

use crate::cache::{Cached, Key, Tag};
use crate::context::Context;
use crate::domain::{ProductChanges, ProductDraft, search_text};
use crate::entities::products;
use crate::store;
use crate::views::{product_view, stored_price};
use catalog_contract::events::ProductChangedV1;
use catalog_contract::{NewProduct, ProductPatch, ProductQuery, ProductView};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use shared_kernel::db::conflict_on_duplicate;
use shared_kernel::outbox::UnitOfWork;
use shared_kernel::{ApiError, Caller, ProductId};
use std::collections::BTreeSet;

impl Context {
    pub(crate) async fn list_products(&self, query: ProductQuery) -> Result<shared_kernel::Page<ProductView>, ApiError> {
        let after = query.page.after_key()?;
        let text = query.q.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
        let key = Key::product_page(query.category.map(|c| c.as_uuid()), text.as_deref(), after.as_deref(), query.page.limit());
        let unwrap = |value| if let Cached::Products(page) = value { Some(page) } else { None };
        let wrap = |page: &shared_kernel::Page<ProductView>| Cached::Products(page.clone());
        self.cached(key, unwrap, wrap, store::products_page(&self.db, query)).await
    }

    pub(crate) async fn get_product(&self, id: ProductId) -> Result<ProductView, ApiError> {
        let load = async { product_view(&store::product(&self.db, id.as_uuid()).await?) };
        let unwrap = |value| if let Cached::Product(view) = value { Some(view) } else { None };
        self.cached(Some(Key::Product(id.as_uuid())), unwrap, |view: &ProductView| Cached::Product(view.clone()), load).await
    }

    pub(crate) async fn get_products(&self, ids: Vec<ProductId>) -> Result<Vec<ProductView>, ApiError> {
        if ids.len() > 1000 {
            return Err(ApiError::invalid_field("ids", "at most 1000 at once"));
        }
        let unique: BTreeSet<uuid::Uuid> = ids.iter().map(ProductId::as_uuid).collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let rows = products::Entity::find().filter(products::Column::Id.is_in(unique)).all(&self.db).await?;
        rows.iter().map(product_view).collect()
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn create_product(&self, caller: &Caller, input: NewProduct) -> Result<ProductView, ApiError> {
        caller.require_admin()?;
        let draft = ProductDraft::parse(&input)?;
        if let Some(category) = draft.category_id
            && !store::category_exists(&self.db, category).await?
        {
            return Err(ApiError::invalid_field("category_id", "no such category"));
        }
        let now = self.clock.now();
        let price = draft.price.money();
        let row = products::ActiveModel {
            id: Set(ProductId::new().as_uuid()),
            sku_key: Set(draft.sku.key()),
            search_text: Set(search_text(draft.sku.as_str(), draft.name.as_str(), draft.description.as_str())),
            sku: Set(draft.sku.as_str().to_owned()),
            name: Set(draft.name.as_str().to_owned()),
            description: Set(draft.description.as_str().to_owned()),
            price_amount: Set(price.amount()),
            price_currency: Set(price.currency().to_string()),
            category_id: Set(draft.category_id.map(|c| c.as_uuid())),
            on_hand: Set(draft.on_hand.get()),
            reserved: Set(0),
            version: Set(1),
            units_sold: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await?;
        let created = conflict_on_duplicate(row.insert(&*unit).await, "a product with this SKU exists")?;
        publish_changed(&mut unit, &created, now).await?;
        unit.commit().await?;
        self.cache.invalidate(&Tag::products([created.id])).await;
        tracing::info!(product_id = %created.id, "created a product");
        product_view(&created)
    }

    #[tracing::instrument(skip_all, fields(product_id = %id))]
    pub(crate) async fn update_product(&self, caller: &Caller, id: ProductId, patch: ProductPatch) -> Result<ProductView, ApiError> {
        caller.require_admin()?;
        let current = store::product(&self.db, id.as_uuid()).await?;
        let changes = ProductChanges::parse(&patch)?;
        if let Some(Some(category)) = changes.category_id
            && !store::category_exists(&self.db, category).await?
        {
            return Err(ApiError::invalid_field("category_id", "no such category"));
        }
        let name = changes.name.map_or_else(|| current.name.clone(), |name| name.as_str().to_owned());
        let description = changes.description.map_or_else(|| current.description.clone(), |d| d.as_str().to_owned());
        let price = match changes.price {
            Some(price) => price.money(),
            None => stored_price(current.price_amount, &current.price_currency, "product", current.id)?,
        };
        let category = match changes.category_id {
            Some(category) => category.map(|c| c.as_uuid()),
            None => current.category_id,
        };
        let now = self.clock.now();
        let mut unit = UnitOfWork::begin(&self.db, &self.outbox).await?;
        // The version check is in the WHERE: a concurrent edit makes this match nothing.
        let updated = products::Entity::update_many()
            .col_expr(products::Column::Name, Expr::value(name.clone()))
            .col_expr(products::Column::Description, Expr::value(description.clone()))
            .col_expr(products::Column::SearchText, Expr::value(search_text(&current.sku, &name, &description)))
            .col_expr(products::Column::PriceAmount, Expr::value(price.amount()))
            .col_expr(products::Column::PriceCurrency, Expr::value(price.currency().to_string()))
            .col_expr(products::Column::CategoryId, Expr::value(category))
            .col_expr(products::Column::Version, Expr::value(changes.version + 1))
            .col_expr(products::Column::UpdatedAt, Expr::value(now))
            .filter(products::Column::Id.eq(id.as_uuid()))
            .filter(products::Column::Version.eq(changes.version))
            .exec(&*unit)
            .await?;
        if updated.rows_affected == 0 {
            return Err(ApiError::conflict(format!("the product changed meanwhile: the current version is {}", current.version)));
        }
        let product = store::product(&*unit, id.as_uuid()).await?;
        publish_changed(&mut unit, &product, now).await?;
        unit.commit().await?;
        self.cache.invalidate(&Tag::products([product.id])).await;
        product_view(&product)
    }
}

/// Appends `ProductChangedV1` for `product` to the write's outbox.
async fn publish_changed(unit: &mut UnitOfWork, product: &products::Model, now: DateTime<Utc>) -> Result<(), ApiError> {
    let event = ProductChangedV1 {
        product_id: ProductId::from_uuid(product.id),
        sku: product.sku.clone(),
        name: product.name.clone(),
        price: stored_price(product.price_amount, &product.price_currency, "product", product.id)?,
        version: product.version,
        changed_at: now,
    };
    unit.publish(&event, now, shared_kernel::current_request_context().as_ref()).await?;
    Ok(())
}
