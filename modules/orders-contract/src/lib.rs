//! The orders module's contract. **API Boundary**: the edge and remote callers see orders only
//! through what is here.

use chrono::{DateTime, Utc};
pub use payments_contract::{CardNumber, PaymentMethod, PaymentMethodToken};
use serde::{Deserialize, Serialize};
pub use shared_kernel::{ApiError, Caller, Money, OrderId, Page, PageRequest, ProductId, UserId};

/// One line of `POST /api/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineInput {
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    /// 1 to 1000.
    #[schema(example = 2, minimum = 1, maximum = 1000)]
    pub quantity: u32,
}

/// How the order is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentInput {
    /// A card number passing the Luhn check (test numbers in the API reference).
    #[schema(value_type = String, example = "4242424242424242", min_length = 12, max_length = 64, pattern = r"^[0-9 -]+$")]
    pub card_number: CardNumber,
}

/// `POST /api/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// 1 to 50 lines; a product at most once.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<OrderLineInput>,
    pub payment: PaymentInput,
}

/// What the edge asks orders to place: a client's [`PlaceOrder`] with its card exchanged for the
/// payment method payments issued (`PaymentsApi::tokenize`). The card goes no further than
/// payments; orders, its saga, its tables and its events hold the token only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub items: Vec<OrderLineInput>,
    pub payment_method: PaymentMethod,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// The saga is still running.
    Pending,
    Confirmed,
    /// Stock or payment refused: nothing is kept reserved or charged; `failure_reason` says why.
    Rejected,
    /// Cancelled after confirmation: refunded and restocked.
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the order has reached an end state for its placement.
    pub fn is_settled(self) -> bool {
        self != Self::Pending
    }
}

/// A line as ordered, with the unit price charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItemView {
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    /// The product's current name (kept up to date from the catalog's events).
    pub product_name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    #[schema(value_type = String, format = Uuid)]
    pub id: OrderId,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: UserId,
    pub status: OrderStatus,
    pub items: Vec<OrderItemView>,
    pub total: Money,
    /// Why the order was rejected (or why a cancellation is still being compensated).
    pub failure_reason: Option<String>,
    /// The last four digits of the card.
    pub card_last4: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What placement answers: the order, and whether it was placed by an earlier request with the
/// same idempotency key (a replay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub order: OrderView,
    pub replayed: bool,
}

shared_kernel::contract! {
    /// What orders offers.
    ///
    /// # Errors
    /// The contract's [`ApiError`]: 401 without a user; 403 for a deactivated account; 404 for
    /// an unknown order or one that is not the caller's; 409 for an idempotency key reused with
    /// another body, or a cancellation of an order that is not confirmed; 422 for invalid input
    /// (an unknown product, mixed currencies); 503 when the catalog or payments cannot be reached
    /// before the order exists.
    pub trait OrdersApi as "orders" {
        /// Places an order and runs its saga. Idempotent per `(caller, idempotency_key)`: the same
        /// key and body give the same order and charge nothing more; another body is 409. Returns
        /// once the order is settled, or `pending` if the saga is still running after the
        /// placement wait (it finishes in the background).
        fn place_order(idempotency_key: String, order: OrderRequest) -> Placement;
        /// One order: its owner or an admin.
        fn get_order(id: OrderId) -> OrderView, idempotent;
        /// The caller's orders, newest first.
        fn list_orders(page: PageRequest) -> Page<OrderView>, idempotent;
        /// Cancels a confirmed order: refunds the payment and puts the stock back. Its owner or an
        /// admin. Cancelling a cancelled order answers it unchanged.
        fn cancel_order(id: OrderId) -> OrderView;
    }
}

/// The orders module's integration events.
pub mod events {
    use super::OrderStatus;
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};
    use shared_kernel::events::IntegrationEvent;

    /// The JSON Schema of every event type this module publishes, by type (`docs/events/`, kept
    /// compatible by the contract check).
    pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            shared_kernel::events::json_schema::<OrderStatusChangedV1>(),
            shared_kernel::events::json_schema::<OrderConfirmedV1>(),
            shared_kernel::events::json_schema::<OrderCancelledV1>(),
        ]
    }
    use shared_kernel::{Money, OrderId, ProductId, UserId};

    /// A product and quantity in an order event.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct OrderedLine {
        #[schema(value_type = String, format = Uuid)]
        pub product_id: ProductId,
        pub quantity: u32,
    }

    /// An order's status changed (placed, confirmed, rejected, cancelled).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct OrderStatusChangedV1 {
        #[schema(value_type = String, format = Uuid)]
        pub order_id: OrderId,
        #[schema(value_type = String, format = Uuid)]
        pub customer_id: UserId,
        pub status: OrderStatus,
        pub failure_reason: Option<String>,
        pub changed_at: DateTime<Utc>,
    }

    impl IntegrationEvent for OrderStatusChangedV1 {
        const TYPE: &'static str = "orders.order_status_changed.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.order_id.to_string()
        }
    }

    /// An order was confirmed: its stock is sold and its payment captured.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct OrderConfirmedV1 {
        #[schema(value_type = String, format = Uuid)]
        pub order_id: OrderId,
        #[schema(value_type = String, format = Uuid)]
        pub customer_id: UserId,
        pub lines: Vec<OrderedLine>,
        pub total: Money,
        pub confirmed_at: DateTime<Utc>,
    }

    impl IntegrationEvent for OrderConfirmedV1 {
        const TYPE: &'static str = "orders.order_confirmed.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.order_id.to_string()
        }
    }

    /// A confirmed order was cancelled: refunded and restocked.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct OrderCancelledV1 {
        #[schema(value_type = String, format = Uuid)]
        pub order_id: OrderId,
        #[schema(value_type = String, format = Uuid)]
        pub customer_id: UserId,
        pub lines: Vec<OrderedLine>,
        pub cancelled_at: DateTime<Utc>,
    }

    impl IntegrationEvent for OrderCancelledV1 {
        const TYPE: &'static str = "orders.order_cancelled.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.order_id.to_string()
        }
    }
}
