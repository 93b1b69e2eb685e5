//! The catalog's part of the schema, against `CatalogApi`.

use crate::graphql::support::{caller, connection, gql_error, modules, page_request};
use async_graphql::connection::Connection;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use catalog_contract::{CatalogApi, CategoryView, NewCategory, NewProduct, ProductPatch, ProductQuery, ProductView, SetStock};
use shared_kernel::{ApiError, Caller, CategoryId, Currency, ProductId};
use std::collections::HashMap;
use std::sync::Arc;

/// An amount of money in minor units (cents) and its ISO 4217 currency.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Money")]
pub struct MoneyObject {
    /// Minor units: 1999 is 19.99.
    pub amount: i64,
    pub currency: String,
}

impl From<shared_kernel::Money> for MoneyObject {
    fn from(money: shared_kernel::Money) -> Self {
        Self { amount: money.amount(), currency: money.currency().to_string() }
    }
}

/// Money as input.
#[derive(InputObject)]
pub struct MoneyInput {
    pub amount: i64,
    pub currency: String,
}

impl MoneyInput {
    fn into_money(self, field: &str) -> Result<shared_kernel::Money> {
        let currency = Currency::parse(&self.currency)
            .map_err(|_| gql_error(ApiError::invalid_field(format!("{field}.currency"), "is not an ISO 4217 code")))?;
        Ok(shared_kernel::Money::new(self.amount, currency))
    }
}

pub(crate) fn product_id(id: &ID) -> Result<ProductId> {
    ProductId::parse(id).map_err(|_| gql_error(ApiError::not_found("product not found")))
}

fn category_id(id: &ID, field: &str) -> Result<CategoryId> {
    CategoryId::parse(id).map_err(|_| gql_error(ApiError::invalid_field(field, "must be a category id")))
}

/// Products by id, one `get_products` call per batch.
pub struct ProductLoader {
    pub catalog: Arc<dyn CatalogApi>,
    pub caller: Caller,
}

impl Loader<ProductId> for ProductLoader {
    type Value = ProductView;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[ProductId]) -> Result<HashMap<ProductId, ProductView>, Self::Error> {
        let found = self.catalog.get_products(&self.caller, keys.to_vec()).await.map_err(gql_error)?;
        Ok(found.into_iter().map(|product| (product.id, product)).collect())
    }
}

/// Categories by id, one `get_categories` call per batch.
pub struct CategoryLoader {
    pub catalog: Arc<dyn CatalogApi>,
    pub caller: Caller,
}

impl Loader<CategoryId> for CategoryLoader {
    type Value = CategoryView;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[CategoryId]) -> Result<HashMap<CategoryId, CategoryView>, Self::Error> {
        let found = self.catalog.get_categories(&self.caller, keys.to_vec()).await.map_err(gql_error)?;
        Ok(found.into_iter().map(|category| (category.id, category)).collect())
    }
}

/// A product with its price and stock.
pub struct Product(pub ProductView);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn price(&self) -> MoneyObject {
        self.0.price.into()
    }
    /// On hand minus reserved: what can be ordered now.
    async fn stock_available(&self) -> i64 {
        self.0.stock_available
    }
    /// Units sold by confirmed orders (kept from orders' events).
    async fn units_sold(&self) -> i64 {
        self.0.units_sold
    }
    /// The current version, for `updateProduct`.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.created_at
    }
    /// Batched: one catalog call for every product's category in the response.
    async fn category(&self, ctx: &Context<'_>) -> Result<Option<Category>> {
        let Some(id) = self.0.category_id else { return Ok(None) };
        Ok(ctx.data_unchecked::<DataLoader<CategoryLoader, HashMapCache>>().load_one(id).await?.map(Category))
    }
}

/// A category of products.
pub struct Category(pub CategoryView);

#[Object]
impl Category {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The category's products, oldest first.
    #[graphql(complexity = "first.unwrap_or(20).max(1) as usize * child_complexity")]
    async fn products(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Connection<String, Product>> {
        list_products(ctx, first, after, Some(self.0.id), None).await
    }
}

async fn list_products(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    category: Option<CategoryId>,
    q: Option<String>,
) -> Result<Connection<String, Product>> {
    let had_cursor = after.is_some();
    let page = page_request(first, after)?;
    if q.as_ref().is_some_and(|q| q.chars().count() > 100) {
        return Err(gql_error(ApiError::invalid_field("q", "must be at most 100 characters")));
    }
    let q = q.filter(|q| !q.trim().is_empty());
    let found = modules(ctx).catalog.list_products(caller(ctx), ProductQuery { category, q, page }).await.map_err(gql_error)?;
    if ctx.look_ahead().field("edges").field("node").field("category").exists() {
        prefetch_categories(ctx, &found.items).await?;
    }
    Ok(connection(found, had_cursor, |p| p.id.to_string(), Product))
}

/// Puts the categories of `products` in the request's category loader with one `get_categories`
/// call, so each product's `category` is answered from it at once. Without this, each of them
/// would wait for the loader's batching delay (1 ms, then one batch), which was most of a product
/// list's latency.
async fn prefetch_categories(ctx: &Context<'_>, products: &[ProductView]) -> Result<()> {
    let mut ids: Vec<CategoryId> = products.iter().filter_map(|p| p.category_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let found = modules(ctx).catalog.get_categories(caller(ctx), ids).await.map_err(gql_error)?;
    ctx.data_unchecked::<DataLoader<CategoryLoader, HashMapCache>>().feed_many(found.into_iter().map(|c| (c.id, c))).await;
    Ok(())
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// One product. Public.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        let id = match ProductId::parse(&id) {
            Ok(id) => id,
            Err(_) => return Ok(None),
        };
        match modules(ctx).catalog.get_product(caller(ctx), id).await {
            Ok(product) => Ok(Some(Product(product))),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(error) => Err(gql_error(error)),
        }
    }

    /// Products, oldest first, filtered by category and text (name, SKU, description). Public.
    #[graphql(complexity = "first.unwrap_or(20).max(1) as usize * child_complexity")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        category: Option<ID>,
        q: Option<String>,
    ) -> Result<Connection<String, Product>> {
        let category = category.as_ref().map(|id| category_id(id, "category")).transpose()?;
        list_products(ctx, first, after, category, q).await
    }

    /// Every category, by name. Public.
    #[graphql(complexity = "first.unwrap_or(20).max(1) as usize * child_complexity")]
    async fn categories(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Connection<String, Category>> {
        let had_cursor = after.is_some();
        let page = page_request(first, after)?;
        let found = modules(ctx).catalog.list_categories(caller(ctx), page).await.map_err(gql_error)?;
        Ok(connection(found, had_cursor, |c| c.name.to_lowercase(), Category))
    }
}

#[derive(InputObject)]
pub struct NewProductInput {
    pub sku: String,
    pub name: String,
    #[graphql(default)]
    pub description: String,
    pub price: MoneyInput,
    pub category_id: Option<ID>,
    #[graphql(default)]
    pub stock_on_hand: i64,
}

#[derive(InputObject)]
pub struct ProductPatchInput {
    /// The product's current version (a stale one is a conflict).
    pub version: i32,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<MoneyInput>,
    /// A category id; absent leaves it, `null` removes it.
    pub category_id: async_graphql::MaybeUndefined<ID>,
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Admin.
    async fn create_category(&self, ctx: &Context<'_>, name: String) -> Result<Category> {
        let created = modules(ctx).catalog.create_category(caller(ctx), NewCategory { name }).await.map_err(gql_error)?;
        Ok(Category(created))
    }

    /// Admin.
    async fn create_product(&self, ctx: &Context<'_>, input: NewProductInput) -> Result<Product> {
        let input = NewProduct {
            sku: input.sku,
            name: input.name,
            description: input.description,
            price: input.price.into_money("price")?,
            category_id: input.category_id.as_ref().map(|id| category_id(id, "category_id")).transpose()?,
            stock_on_hand: input.stock_on_hand,
        };
        Ok(Product(modules(ctx).catalog.create_product(caller(ctx), input).await.map_err(gql_error)?))
    }

    /// Admin. Optimistic concurrency: `input.version` must be current.
    async fn update_product(&self, ctx: &Context<'_>, id: ID, input: ProductPatchInput) -> Result<Product> {
        let category_id = match input.category_id {
            async_graphql::MaybeUndefined::Undefined => None,
            async_graphql::MaybeUndefined::Null => Some(None),
            async_graphql::MaybeUndefined::Value(id) => Some(Some(category_id(&id, "category_id")?)),
        };
        let patch = ProductPatch {
            version: input.version,
            name: input.name,
            description: input.description,
            price: input.price.map(|price| price.into_money("price")).transpose()?,
            category_id,
        };
        Ok(Product(modules(ctx).catalog.update_product(caller(ctx), product_id(&id)?, patch).await.map_err(gql_error)?))
    }

    /// Admin. Sets stock on hand.
    async fn set_stock(&self, ctx: &Context<'_>, id: ID, on_hand: i64) -> Result<Product> {
        Ok(Product(modules(ctx).catalog.set_stock(caller(ctx), product_id(&id)?, SetStock { on_hand }).await.map_err(gql_error)?))
    }
}

/// Its part of the GraphQL queries.
pub type Query = CatalogQuery;
/// Its part of the GraphQL mutations.
pub type Mutation = CatalogMutation;
