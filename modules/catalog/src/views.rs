//! Rows as the contract shows them. A stored value that does not read back (an unknown currency)
//! is an error naming the row, never a default.

use crate::entities::{categories, products};
use catalog_contract::{CategoryView, ProductView};
use shared_kernel::{ApiError, CategoryId, Currency, Money, ProductId};

pub(crate) fn category_view(row: &categories::Model) -> CategoryView {
    CategoryView { id: CategoryId::from_uuid(row.id), name: row.name.clone(), created_at: row.created_at }
}

pub(crate) fn product_view(row: &products::Model) -> Result<ProductView, ApiError> {
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

/// A price read back from a row; a currency the code does not know is an error naming the row.
pub(crate) fn stored_price(amount: i64, currency: &str, row: &'static str, id: uuid::Uuid) -> Result<Money, ApiError> {
    match Currency::parse(currency) {
        Ok(currency) => Ok(Money::new(amount, currency)),
        Err(_) => {
            tracing::error!(row, %id, currency, "a stored price has an unknown currency");
            Err(ApiError::Internal)
        }
    }
}
