//! The catalog module's contract. **API Boundary**: other modules, the edge and remote callers
//! see the catalog only through what is here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
pub use shared_kernel::{ApiError, Caller, CategoryId, Money, OrderId, Page, PageRequest, ProductId};

/// `POST /api/catalog/categories`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    /// Unique across the catalog; surrounding spaces are trimmed.
    #[schema(example = "Books", min_length = 1, max_length = 100)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CategoryView {
    #[schema(value_type = String, format = Uuid)]
    pub id: CategoryId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/catalog/products`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Unique across the catalog (compared case-insensitively): letters, digits, `-`, `_`, `.`.
    #[schema(example = "BK-0001", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    #[schema(example = "The Analytical Engine", min_length = 1, max_length = 200)]
    pub name: String,
    /// No control characters other than newline and tab.
    #[serde(default)]
    #[schema(example = "A history of the first computer.", max_length = 5000)]
    pub description: String,
    /// Not negative.
    pub price: Money,
    /// An existing category.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub category_id: Option<CategoryId>,
    /// Initial stock on hand (default 0).
    #[serde(default)]
    #[schema(example = 25, minimum = 0, maximum = 1_000_000_000)]
    pub stock_on_hand: i64,
}

/// `PATCH /api/catalog/products/{id}`: only the fields present change. `version` must be the
/// product's current version (optimistic concurrency): a stale one is 409.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    /// The version the client last read.
    #[schema(example = 1)]
    pub version: i32,
    #[serde(default)]
    #[schema(example = "The Analytical Engine, 2nd edition", min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[serde(default)]
    pub price: Option<Money>,
    /// `null` removes the category; absent leaves it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub category_id: Option<Option<CategoryId>>,
}

/// `PUT /api/catalog/products/{id}/stock`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// Not below what is reserved for orders (else 409).
    #[schema(example = 40, minimum = 0, maximum = 1_000_000_000)]
    pub on_hand: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductView {
    #[schema(value_type = String, format = Uuid)]
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub category_id: Option<CategoryId>,
    /// On hand minus reserved: what can be ordered now.
    pub stock_available: i64,
    pub stock_on_hand: i64,
    pub stock_reserved: i64,
    /// Units sold by confirmed orders (cancelled ones taken back); kept from orders' events, so
    /// it may trail a confirmation by a moment.
    pub units_sold: i64,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product search: `GET /api/catalog/products?category&q&limit&cursor`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductQuery {
    pub category: Option<CategoryId>,
    /// Case-insensitive text in the name, SKU or description.
    pub q: Option<String>,
    pub page: PageRequest,
}

/// One line to reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReserveLine {
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    pub quantity: u32,
}

/// A line as reserved, with the unit price at reservation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReservedLine {
    #[schema(value_type = String, format = Uuid)]
    pub product_id: ProductId,
    pub quantity: u32,
    pub unit_price: Money,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    Reserved,
    Committed,
    Released,
    /// Committed, then put back on hand (the order was cancelled).
    Restocked,
}

/// The stock held for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reservation {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    pub status: ReservationStatus,
    pub lines: Vec<ReservedLine>,
    pub expires_at: DateTime<Utc>,
}

/// What [`CatalogApi::reserve`] did, in the catalog's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReserveOutcome {
    /// Every line is held for the order (now, or by an earlier call for the same order and
    /// lines: the reservation as it stands, which may since have been released or committed).
    Reserved { reservation: Reservation },
    /// Nothing is held, and asking again will not change that.
    Refused { refusal: StockRefusal },
}

/// Why the catalog holds nothing for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StockRefusal {
    /// A line asks for more than is available now.
    #[error("not enough stock of product {product_id}")]
    OutOfStock { product_id: ProductId },
    /// A line names no product.
    #[error("a product in the order does not exist")]
    UnknownProduct,
    /// The order already reserved other lines (a reservation is made once per order).
    #[error("this order already reserved other lines")]
    OtherLinesReserved,
}

/// What [`CatalogApi::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitOutcome {
    /// The stock is sold (now, or already).
    Committed,
    /// The reservation was released, or expired, before the commit: nothing is sold.
    Lapsed,
    /// No reservation exists for the order.
    NoReservation,
}

/// What [`CatalogApi::restock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestockOutcome {
    /// The order's committed stock is back on hand (now, or already).
    Restocked,
    /// The reservation was never committed: there is nothing to put back.
    NotCommitted,
    /// No reservation exists for the order.
    NoReservation,
}

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &Option<Option<T>>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

shared_kernel::contract! {
    /// What the catalog offers to the edge and to other modules.
    ///
    /// # Errors
    /// The contract's [`ApiError`]: 401/403 for admin operations without an admin; 404 for an
    /// unknown product or category; 409 for a duplicate SKU or category name or a stale
    /// `version`; 422 for invalid input. The stock operations the order saga depends on
    /// (`reserve`, `commit`, `restock`) answer what happened as an outcome; their errors are
    /// only the caller's mistakes and unavailability.
    pub trait CatalogApi as "catalog" {
        /// Every category, by name. Public.
        fn list_categories(page: PageRequest) -> Page<CategoryView>, idempotent;
        /// Admin. 409 for a name already used (case-insensitive).
        fn create_category(input: NewCategory) -> CategoryView;
        /// Many categories at once, in no particular order; unknown ids are left out. Public.
        fn get_categories(ids: Vec<CategoryId>) -> Vec<CategoryView>, idempotent;
        /// Products, newest last, filtered by category and text. Public.
        fn list_products(query: ProductQuery) -> Page<ProductView>, idempotent;
        /// One product. Public.
        fn get_product(id: ProductId) -> ProductView, idempotent;
        /// Many products at once, in no particular order; unknown ids are left out. For other
        /// modules (orders reads prices, GraphQL batches).
        fn get_products(ids: Vec<ProductId>) -> Vec<ProductView>, idempotent, services [orders];
        /// Admin. 409 for a duplicate SKU; 404 for an unknown category.
        fn create_product(input: NewProduct) -> ProductView;
        /// Admin. 409 when `patch.version` is not the current version.
        fn update_product(id: ProductId, patch: ProductPatch) -> ProductView;
        /// Admin. Sets stock on hand; 409 below what is reserved now.
        fn set_stock(id: ProductId, stock: SetStock) -> ProductView;
        /// Reserves every line or none. Idempotent per order: asking again with the same lines
        /// returns the same reservation and holds nothing more. The orders service or an admin.
        ///
        /// # Errors
        /// 403 for anyone else (another service included); 422 for lines the catalog never accepts (none, more than 100, a
        /// quantity outside 1 to 10,000, a product twice); 503 while a concurrent call for the
        /// same order is making the reservation (ask again). A refusal is an outcome, not an error.
        fn reserve(order_id: OrderId, lines: Vec<ReserveLine>) -> ReserveOutcome, services [orders];
        /// Gives a reservation's stock back. Idempotent; nothing happens for an unknown order or a
        /// committed reservation.
        ///
        /// # Errors
        /// 403 for a caller that is neither the orders service nor an admin.
        fn release(order_id: OrderId) -> (), services [orders];
        /// Turns a reservation into a sale: stock on hand goes down. Idempotent.
        ///
        /// # Errors
        /// 403 for a caller that is neither the orders service nor an admin. A lapsed or missing
        /// reservation is an outcome, not an error.
        fn commit(order_id: OrderId) -> CommitOutcome, services [orders];
        /// Puts a committed order's stock back on hand (the order was cancelled). Idempotent.
        ///
        /// # Errors
        /// 403 for a caller that is neither the orders service nor an admin. A reservation never committed,
        /// or none, is an outcome, not an error.
        fn restock(order_id: OrderId) -> RestockOutcome, services [orders];
    }
}

/// The catalog's integration events.
pub mod events {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};
    use shared_kernel::events::IntegrationEvent;

    /// The JSON Schema of every event type this module publishes, by type (`docs/events/`, kept
    /// compatible by the contract check).
    pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            shared_kernel::events::json_schema::<ProductChangedV1>(),
            shared_kernel::events::json_schema::<StockChangedV1>(),
            shared_kernel::events::json_schema::<CategoryCreatedV1>(),
        ]
    }
    use shared_kernel::{CategoryId, Money, OrderId, ProductId};

    /// A product was created or its name or price changed (read models keep names current).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct ProductChangedV1 {
        #[schema(value_type = String, format = Uuid)]
        pub product_id: ProductId,
        pub sku: String,
        pub name: String,
        pub price: Money,
        pub version: i32,
        pub changed_at: DateTime<Utc>,
    }

    impl IntegrationEvent for ProductChangedV1 {
        const TYPE: &'static str = "catalog.product_changed.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.product_id.to_string()
        }
    }

    /// Why stock changed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum StockChange {
        /// Held for an order.
        Reserved,
        /// Held stock went back to available (the order failed, or its hold expired).
        Released,
        /// Held stock was sold: it left on hand.
        Committed,
        /// Sold stock of a cancelled order came back on hand.
        Restocked,
        /// An admin set the stock on hand.
        Set,
        /// The units sold of these products were counted (an order confirmed or cancelled).
        Sold,
    }

    /// Stock or sales figures of some products changed. A thin event: it names the products; a
    /// consumer that needs the figures reads them (the catalog's caches drop what they hold).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct StockChangedV1 {
        #[schema(value_type = Vec<String>)]
        pub product_ids: Vec<ProductId>,
        pub change: StockChange,
        /// The order the change was made for, if any.
        #[schema(value_type = Option<String>, format = Uuid)]
        pub order_id: Option<OrderId>,
        pub changed_at: DateTime<Utc>,
    }

    impl IntegrationEvent for StockChangedV1 {
        const TYPE: &'static str = "catalog.stock_changed.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            // Per-aggregate order is kept per order (or per product for an admin's change).
            match (self.order_id, self.product_ids.first()) {
                (Some(order), _) => order.to_string(),
                (None, Some(product)) => product.to_string(),
                (None, None) => String::new(),
            }
        }
    }

    /// A category was created.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
    pub struct CategoryCreatedV1 {
        #[schema(value_type = String, format = Uuid)]
        pub category_id: CategoryId,
        pub name: String,
        pub created_at: DateTime<Utc>,
    }

    impl IntegrationEvent for CategoryCreatedV1 {
        const TYPE: &'static str = "catalog.category_created.v1";
        const VERSION: u32 = 1;
        fn aggregate_id(&self) -> String {
            self.category_id.to_string()
        }
    }
}
