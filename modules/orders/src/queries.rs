//! Reading orders: one for its owner or an admin, and a customer's own, newest first, with the
//! product names orders keeps from the catalog's events.

use crate::context::Context;
use crate::domain::Order;
use crate::entities::{orders, product_names};
use crate::store;
use crate::views::view;
use orders_contract::OrderView;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use shared_kernel::{ApiError, Caller, OrderId, Page, PageRequest, ProductId, UserId};
use std::collections::{BTreeSet, HashMap};

impl Context {
    pub(crate) async fn get(&self, caller: &Caller, id: OrderId) -> Result<OrderView, ApiError> {
        let order = self.load_for(caller, id).await?;
        self.view_of(order).await
    }

    pub(crate) async fn list(&self, caller: &Caller, page: PageRequest) -> Result<Page<OrderView>, ApiError> {
        let customer = caller.require_user()?.id;
        let mut select = orders::Entity::find()
            .filter(orders::Column::CustomerId.eq(customer.as_uuid()))
            .order_by_desc(orders::Column::Id)
            .limit(u64::from(page.limit()) + 1);
        if let Some(before) = page.after_key()? {
            let before =
                uuid::Uuid::parse_str(&before).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
            select = select.filter(orders::Column::Id.lt(before));
        }
        let rows = select.all(&self.inner.db).await?;
        let page = Page::from_overfetched(rows, page.limit(), |row| row.id.to_string());
        let orders = store::load_all(&self.inner.db, page.items).await?;
        Ok(Page { items: self.views(&orders).await?, next_cursor: page.next_cursor })
    }

    /// The order, for its owner or an admin; 404 for anyone else, as for an order that does not
    /// exist (the check runs either way, so nobody learns which).
    pub(crate) async fn load_for(&self, caller: &Caller, id: OrderId) -> Result<Order, ApiError> {
        let order = store::load(&self.inner.db, id).await?;
        let owner = order.as_ref().map_or(UserId::from_uuid(uuid::Uuid::nil()), Order::customer_id);
        caller.require_self_or_admin(owner, "order")?;
        order.ok_or_else(|| ApiError::not_found("order not found"))
    }

    pub(crate) async fn view_of(&self, order: Order) -> Result<OrderView, ApiError> {
        self.views(std::slice::from_ref(&order)).await?.pop().ok_or(ApiError::Internal)
    }

    /// Views of `orders` with the current product names, in the same order.
    async fn views(&self, orders: &[Order]) -> Result<Vec<OrderView>, ApiError> {
        let products: BTreeSet<uuid::Uuid> = orders.iter().flat_map(Order::lines).map(|line| line.product_id.as_uuid()).collect();
        let names: HashMap<ProductId, String> = product_names::Entity::find()
            .filter(product_names::Column::ProductId.is_in(products))
            .all(&self.inner.db)
            .await?
            .into_iter()
            .map(|row| (ProductId::from_uuid(row.product_id), row.name))
            .collect();
        Ok(orders.iter().map(|order| view(order, &names)).collect())
    }
}
