//! The orders (and payments) part of the schema, against `OrdersApi` and `PaymentsApi`.

use crate::modules::catalog::graphql::{MoneyObject, Product, ProductLoader};
use crate::graphql::support::{caller, connection, gql_error, modules, page_request};
use crate::edge::ClientId;
use async_graphql::connection::Connection;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result};
use orders_contract::{CardNumber, OrderItemView, OrderLineInput, OrderStatus, OrderView, PaymentInput, PlaceOrder};
use payments_contract::{PaymentStatus, PaymentView};
use shared_kernel::{ApiError, OrderId};

#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(name = "OrderStatus")]
pub enum OrderStatusObject {
    Pending,
    Confirmed,
    Rejected,
    Cancelled,
}

impl From<OrderStatus> for OrderStatusObject {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending => Self::Pending,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::Rejected => Self::Rejected,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Enum, Copy, Clone, PartialEq, Eq)]
#[graphql(name = "PaymentStatus")]
pub enum PaymentStatusObject {
    Pending,
    Captured,
    Declined,
    Failed,
    PartiallyRefunded,
    Refunded,
}

/// An order's payment.
pub struct Payment(pub PaymentView);

#[Object]
impl Payment {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> PaymentStatusObject {
        match self.0.status {
            PaymentStatus::Pending => PaymentStatusObject::Pending,
            PaymentStatus::Captured => PaymentStatusObject::Captured,
            PaymentStatus::Declined => PaymentStatusObject::Declined,
            PaymentStatus::Failed => PaymentStatusObject::Failed,
            PaymentStatus::PartiallyRefunded => PaymentStatusObject::PartiallyRefunded,
            PaymentStatus::Refunded => PaymentStatusObject::Refunded,
        }
    }
    async fn amount(&self) -> MoneyObject {
        self.0.amount.into()
    }
    async fn refunded_amount(&self) -> MoneyObject {
        self.0.refunded_amount.into()
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    /// The last four digits of the card.
    async fn card_last4(&self) -> &str {
        &self.0.card_last4
    }
}

/// A line of an order, with the unit price charged.
pub struct OrderItem(pub OrderItemView);

#[Object]
impl OrderItem {
    async fn quantity(&self) -> u32 {
        self.0.quantity
    }
    async fn unit_price(&self) -> MoneyObject {
        self.0.unit_price.into()
    }
    async fn line_total(&self) -> MoneyObject {
        self.0.line_total.into()
    }
    /// The product's name as orders knows it (kept current from the catalog's events).
    async fn product_name(&self) -> &str {
        &self.0.product_name
    }
    /// The product now. Batched: one catalog call for every item in the response.
    async fn product(&self, ctx: &Context<'_>) -> Result<Option<Product>> {
        Ok(ctx.data_unchecked::<DataLoader<ProductLoader>>().load_one(self.0.product_id).await?.map(Product))
    }
}

/// An order.
pub struct Order(pub OrderView);

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> OrderStatusObject {
        self.0.status.into()
    }
    async fn total(&self) -> MoneyObject {
        self.0.total.into()
    }
    async fn items(&self) -> Vec<OrderItem> {
        self.0.items.iter().cloned().map(OrderItem).collect()
    }
    /// Why the order was rejected.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.created_at
    }
    /// The order's payment (none when it was rejected before any charge). Batched: one
    /// payments call for every order in the response.
    async fn payment(&self, ctx: &Context<'_>) -> Result<Option<Payment>> {
        Ok(ctx.data_unchecked::<DataLoader<PaymentLoader>>().load_one(self.0.id).await?.map(Payment))
    }
}

/// Payments by order, one `get_payments` call per batch.
pub struct PaymentLoader {
    pub payments: std::sync::Arc<dyn payments_contract::PaymentsApi>,
    pub caller: shared_kernel::Caller,
}

impl async_graphql::dataloader::Loader<OrderId> for PaymentLoader {
    type Value = PaymentView;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[OrderId]) -> Result<std::collections::HashMap<OrderId, PaymentView>, Self::Error> {
        let found = self.payments.get_payments(&self.caller, keys.to_vec()).await.map_err(gql_error)?;
        Ok(found.into_iter().map(|payment| (payment.order_id, payment)).collect())
    }
}

#[derive(InputObject)]
pub struct OrderLine {
    pub product_id: ID,
    pub quantity: u32,
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    pub items: Vec<OrderLine>,
    /// A card number passing the Luhn check (the API reference lists the test numbers).
    pub card_number: String,
}

#[derive(Default)]
pub struct OrdersQuery;

#[Object]
impl OrdersQuery {
    /// One order: its owner or an admin (anyone else gets `null`).
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let id = ClientId::<OrderId>::new(&id);
        match id.explain(modules(ctx).orders.get_order(caller(ctx), id.get()).await) {
            Ok(order) => Ok(Some(Order(order))),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(error) => Err(gql_error(error)),
        }
    }

    /// The caller's orders, newest first.
    #[graphql(complexity = "first.unwrap_or(20).max(1) as usize * child_complexity")]
    async fn my_orders(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Connection<String, Order>> {
        let had_cursor = after.is_some();
        let page = page_request(first, after)?;
        let found = modules(ctx).orders.list_orders(caller(ctx), page).await.map_err(gql_error)?;
        Ok(connection(found, had_cursor, |o| o.id.to_string(), Order))
    }
}

#[derive(Default)]
pub struct OrdersMutation;

#[Object]
impl OrdersMutation {
    /// Places an order; the same `idempotencyKey` and input again answers the same order and
    /// charges nothing more. Answers when the order is settled, or `PENDING` if it is still running.
    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput, idempotency_key: String) -> Result<Order> {
        let card_number =
            CardNumber::parse(&input.card_number).map_err(|message| gql_error(ApiError::invalid_field("input.cardNumber", message)))?;
        let mut items = Vec::with_capacity(input.items.len());
        for (i, line) in input.items.iter().enumerate() {
            let product_id = shared_kernel::ProductId::parse(&line.product_id)
                .map_err(|_| gql_error(ApiError::invalid_field(format!("input.items[{i}].productId"), "is not a product id")))?;
            items.push(OrderLineInput { product_id, quantity: line.quantity });
        }
        let order = PlaceOrder { items, payment: PaymentInput { card_number } };
        let placement = super::place(modules(ctx), caller(ctx), idempotency_key, order).await.map_err(gql_error)?;
        Ok(Order(placement.order))
    }

    /// Cancels a confirmed order: refunded and restocked. Its owner or an admin.
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> Result<Order> {
        let id = ClientId::<OrderId>::new(&id);
        Ok(Order(id.explain(modules(ctx).orders.cancel_order(caller(ctx), id.get()).await).map_err(gql_error)?))
    }
}

/// Its part of the GraphQL queries.
pub type Query = OrdersQuery;
/// Its part of the GraphQL mutations.
pub type Mutation = OrdersMutation;
