//! What an order is and the rules it keeps, free of HTTP and the database: the lines a customer
//! may ask for, how they are priced, the idempotency key, and the order aggregate that carries
//! its saga. Everything here is checked once, when it is made, and trusted after.

use crate::saga::{self, Outcome, Saga, SagaError, SagaParts, Step};
use chrono::{DateTime, Utc};
use payments_contract::{PaymentMethod, PaymentMethodToken};
use sha2::{Digest, Sha256};
use shared_kernel::{Currency, FieldError, Money, OrderId, ProductId, UserId};
use std::collections::BTreeSet;

/// Lines per order.
pub const MAX_LINES: usize = 50;
/// Units per line.
pub const MAX_QUANTITY: u32 = 1000;
/// Characters of an `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Units of one product in an order: 1 to [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(units: u32) -> Option<Self> {
        (1..=MAX_QUANTITY).contains(&units).then_some(Self(units))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A line as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

/// The lines of a placement: 1 to [`MAX_LINES`], each product once, each quantity in range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(Vec<OrderLine>);

impl OrderLines {
    /// `(product, units)` as sent, in order.
    ///
    /// # Errors
    /// Every rule broken, each naming its field (`items`, `items[i].quantity`,
    /// `items[i].product_id`).
    pub fn parse(lines: impl IntoIterator<Item = (ProductId, u32)>) -> Result<Self, Vec<FieldError>> {
        let lines: Vec<(ProductId, u32)> = lines.into_iter().collect();
        let mut violations = Vec::new();
        if lines.is_empty() || lines.len() > MAX_LINES {
            violations.push(FieldError::new("items", format!("must have 1 to {MAX_LINES} lines")));
        }
        let mut seen = BTreeSet::new();
        let mut parsed = Vec::with_capacity(lines.len());
        for (i, (product_id, units)) in lines.into_iter().enumerate() {
            match Quantity::new(units) {
                Some(quantity) => parsed.push(OrderLine { product_id, quantity }),
                None => violations.push(FieldError::new(format!("items[{i}].quantity"), format!("must be 1 to {MAX_QUANTITY}"))),
            }
            if !seen.insert(product_id) {
                violations.push(FieldError::new(format!("items[{i}].product_id"), "appears more than once"));
            }
        }
        if violations.is_empty() { Ok(Self(parsed)) } else { Err(violations) }
    }

    pub fn iter(&self) -> impl Iterator<Item = &OrderLine> {
        self.0.iter()
    }

    pub fn product_ids(&self) -> Vec<ProductId> {
        self.0.iter().map(|line| line.product_id).collect()
    }

    /// Prices every line with `price_of` (the catalog's price now: the price charged).
    ///
    /// # Errors
    /// Every line whose product has no price, else the first rule of the total it breaks.
    pub fn price(&self, price_of: impl Fn(ProductId) -> Option<Money>) -> Result<PricedLines, Vec<FieldError>> {
        let mut violations = Vec::new();
        let mut priced = Vec::with_capacity(self.0.len());
        for (i, line) in self.0.iter().enumerate() {
            match price_of(line.product_id) {
                Some(unit_price) => priced.push(PricedLine { product_id: line.product_id, quantity: line.quantity, unit_price }),
                None => violations.push(FieldError::new(format!("items[{i}].product_id"), "no such product")),
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        PricedLines::new(priced).map_err(|violation| vec![violation])
    }
}

/// A line with the unit price charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub unit_price: Money,
}

impl PricedLine {
    /// The unit price times the quantity; within range for every line of a [`PricedLines`].
    pub fn total(&self) -> Money {
        self.unit_price.checked_mul(self.quantity.get()).unwrap_or(self.unit_price)
    }
}

/// An order's priced lines and their total: one currency, a positive total that fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLines {
    lines: Vec<PricedLine>,
    total: Money,
}

impl PricedLines {
    /// # Errors
    /// No lines, mixed currencies, a total that does not fit, or one that is not positive.
    pub fn new(lines: Vec<PricedLine>) -> Result<Self, FieldError> {
        let items = |message: &str| FieldError::new("items", message);
        let currency = lines.first().ok_or_else(|| items("must have 1 to 50 lines"))?.unit_price.currency();
        if lines.iter().any(|line| line.unit_price.currency() != currency) {
            return Err(items("all products of an order must be priced in one currency"));
        }
        let total = lines
            .iter()
            .try_fold(Money::zero(currency), |sum, line| {
                line.unit_price.checked_mul(line.quantity.get()).and_then(|line_total| sum.checked_add(line_total))
            })
            .map_err(|_| items("the order total is too large"))?;
        if total.amount() <= 0 {
            return Err(items("the order total must be positive"));
        }
        Ok(Self { lines, total })
    }

    pub fn lines(&self) -> &[PricedLine] {
        &self.lines
    }

    pub fn total(&self) -> Money {
        self.total
    }

    pub fn currency(&self) -> Currency {
        self.total.currency()
    }
}

/// A client's `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// # Errors
    /// A key that is empty, too long, or holds anything but visible ASCII.
    pub fn parse(key: String) -> Result<Self, FieldError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new("Idempotency-Key", "must be 1 to 255 visible ASCII characters"));
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies a placement request under its key: its lines as sent and the card's last four
/// digits. The full card number is deliberately left out: a hash of it could be brute-forced,
/// and no form of it is ever stored. (Another card with the same last four digits counts as the
/// same request.)
pub fn request_fingerprint(lines: &OrderLines, card_last4: &str) -> String {
    let mut hasher = Sha256::new();
    for line in lines.iter() {
        hasher.update(line.product_id.as_uuid().as_bytes());
        hasher.update(line.quantity.get().to_be_bytes());
    }
    hasher.update(card_last4.as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An order: who placed it, what it holds at which prices, and where its saga stands. Private
/// fields: it is made by [`Order::place`] or restored from storage, and changes only through
/// its saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    id: OrderId,
    customer_id: UserId,
    lines: PricedLines,
    card_last4: String,
    /// What the saga charges: the token payments issued for the card (none on orders placed
    /// before tokens existed).
    payment_method: Option<PaymentMethodToken>,
    saga: Saga,
    /// Bumped by every saga transition that is saved: a write that does not find the version it
    /// read loses (another driver moved the saga on).
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// An order's stored form, field by field, as the store reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderParts {
    pub id: OrderId,
    pub customer_id: UserId,
    pub lines: PricedLines,
    pub card_last4: String,
    pub payment_method: Option<PaymentMethodToken>,
    pub saga: SagaParts,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// A new order, pending, its saga at the first step.
    pub fn place(id: OrderId, customer_id: UserId, lines: PricedLines, payment: PaymentMethod, now: DateTime<Utc>) -> Self {
        Self {
            id,
            customer_id,
            lines,
            card_last4: payment.card_last4,
            payment_method: Some(payment.token),
            saga: Saga::new(),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn restore(parts: OrderParts) -> Self {
        Self {
            id: parts.id,
            customer_id: parts.customer_id,
            lines: parts.lines,
            card_last4: parts.card_last4,
            payment_method: parts.payment_method,
            saga: Saga::restore(parts.saga),
            version: parts.version,
            created_at: parts.created_at,
            updated_at: parts.updated_at,
        }
    }

    pub fn id(&self) -> OrderId {
        self.id
    }
    pub fn customer_id(&self) -> UserId {
        self.customer_id
    }
    pub fn lines(&self) -> &[PricedLine] {
        self.lines.lines()
    }
    pub fn total(&self) -> Money {
        self.lines.total()
    }
    pub fn card_last4(&self) -> &str {
        &self.card_last4
    }
    pub fn payment_method(&self) -> Option<&PaymentMethodToken> {
        self.payment_method.as_ref()
    }
    pub fn saga(&self) -> &Saga {
        &self.saga
    }
    pub fn status(&self) -> saga::OrderStatus {
        self.saga.status()
    }
    pub fn next_step(&self) -> Step {
        self.saga.next_step()
    }
    pub fn failure_reason(&self) -> Option<&str> {
        self.saga.failure_reason()
    }
    pub fn version(&self) -> i32 {
        self.version
    }
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// Whether the saga has nothing left to do.
    pub fn is_done(&self) -> bool {
        self.saga.next_step() == Step::Done
    }

    /// The order with `outcome` recorded, as it will be once saved at `now`.
    ///
    /// # Errors
    /// An outcome that does not follow the saga's step: a bug in the driver.
    pub fn record(&self, outcome: Outcome, now: DateTime<Utc>) -> Result<Self, SagaError> {
        let mut next = self.clone();
        next.saga.record(outcome)?;
        next.saved_at(now);
        Ok(next)
    }

    /// What a cancellation asks of this order: `Ok(None)` when it is already cancelled (or its
    /// cancellation is under way) and there is nothing to change, else the order as cancelled.
    ///
    /// # Errors
    /// Only a confirmed order can be cancelled.
    pub fn cancel(&self, now: DateTime<Utc>) -> Result<Option<Self>, SagaError> {
        match (self.status(), self.next_step()) {
            (saga::OrderStatus::Cancelled, _) => Ok(None),
            (saga::OrderStatus::Confirmed, step) if step != Step::Done => Ok(None),
            _ => {
                let mut next = self.clone();
                next.saga.cancel()?;
                next.saved_at(now);
                Ok(Some(next))
            }
        }
    }

    fn saved_at(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn euros(cents: i64) -> Money {
        Money::new(cents, Currency::EUR)
    }

    fn fields(violations: &[FieldError]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn quantities_are_one_to_a_thousand() {
        assert_eq!(Quantity::new(0), None);
        assert_eq!(Quantity::new(1).map(Quantity::get), Some(1));
        assert_eq!(Quantity::new(1000).map(Quantity::get), Some(1000));
        assert_eq!(Quantity::new(1001), None);
    }

    #[test]
    fn lines_name_every_broken_rule_by_field() {
        let a = ProductId::new();
        assert_eq!(fields(&OrderLines::parse([]).unwrap_err()), ["items"]);
        let broken = OrderLines::parse([(a, 0), (a, 2), (ProductId::new(), 1001)]).unwrap_err();
        assert_eq!(fields(&broken), ["items[0].quantity", "items[1].product_id", "items[2].quantity"]);
        let too_many = OrderLines::parse((0..51).map(|_| (ProductId::new(), 1))).unwrap_err();
        assert_eq!(fields(&too_many), ["items"]);
        let fine = OrderLines::parse([(a, 2), (ProductId::new(), 1000)]).unwrap();
        assert_eq!(fine.iter().map(|line| line.quantity.get()).collect::<Vec<_>>(), [2, 1000]);
        assert_eq!(OrderLines::parse((0..50).map(|_| (ProductId::new(), 1))).unwrap().iter().count(), 50);
    }

    #[test]
    fn pricing_needs_every_product_one_currency_and_a_total_that_fits() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let lines = OrderLines::parse([(a, 2), (b, 3)]).unwrap();
        let priced = lines.price(|id| Some(if id == a { euros(150) } else { euros(1000) })).unwrap();
        assert_eq!(priced.total(), euros(3300));
        assert_eq!(priced.lines()[1].total(), euros(3000));
        assert_eq!(fields(&lines.price(|id| (id == a).then(|| euros(1))).unwrap_err()), ["items[1].product_id"]);
        let mixed = lines.price(|id| Some(if id == a { euros(1) } else { Money::new(1, Currency::USD) })).unwrap_err();
        assert_eq!(mixed[0].message, "all products of an order must be priced in one currency");
        let huge = lines.price(|_| Some(euros(i64::MAX / 2))).unwrap_err();
        assert_eq!(huge[0].message, "the order total is too large");
        let free = lines.price(|_| Some(euros(0))).unwrap_err();
        assert_eq!(free[0].message, "the order total must be positive");
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_255() {
        assert!(IdempotencyKey::parse("key-1".into()).is_ok());
        assert!(IdempotencyKey::parse("k".repeat(255)).is_ok());
        for bad in [String::new(), "k".repeat(256), "with space".into(), "clé".into()] {
            assert_eq!(IdempotencyKey::parse(bad).unwrap_err().field, "Idempotency-Key");
        }
    }

    #[test]
    fn the_fingerprint_covers_the_lines_and_the_last_four_digits_only() {
        let a = ProductId::new();
        let lines = OrderLines::parse([(a, 2)]).unwrap();
        let same = request_fingerprint(&lines, "4242");
        assert_eq!(same, request_fingerprint(&OrderLines::parse([(a, 2)]).unwrap(), "4242"));
        assert_ne!(same, request_fingerprint(&OrderLines::parse([(a, 3)]).unwrap(), "4242"));
        assert_ne!(same, request_fingerprint(&lines, "0002"));
        assert_eq!(same.len(), 64);
    }

    #[test]
    fn an_order_moves_only_through_its_saga_and_counts_its_saves() {
        let a = ProductId::new();
        let priced = OrderLines::parse([(a, 2)]).unwrap().price(|_| Some(euros(500))).unwrap();
        let now = Utc::now();
        let method = PaymentMethod { token: PaymentMethodToken::parse("pm_test").unwrap(), card_last4: "4242".into() };
        let order = Order::place(OrderId::new(), UserId::new(), priced, method, now);
        assert_eq!((order.card_last4(), order.payment_method().map(PaymentMethodToken::expose)), ("4242", Some("pm_test")));
        assert_eq!((order.status(), order.next_step(), order.version()), (saga::OrderStatus::Pending, Step::ReserveStock, 0));
        assert!(order.cancel(now).is_err(), "a pending order cannot be cancelled");
        let later = now + chrono::Duration::seconds(1);
        let reserved = order.record(Outcome::StockReserved, later).unwrap();
        assert_eq!((reserved.next_step(), reserved.version(), reserved.updated_at()), (Step::ChargePayment, 1, later));
        assert_eq!(order.version(), 0, "recording makes a new order; the one read stays as read");
        assert!(reserved.record(Outcome::StockCommitted, later).is_err(), "an outcome out of turn is refused");
        let confirmed = reserved.record(Outcome::PaymentCaptured, later).unwrap().record(Outcome::StockCommitted, later).unwrap();
        assert_eq!((confirmed.status(), confirmed.is_done()), (saga::OrderStatus::Confirmed, true));
        let cancelling = confirmed.cancel(later).unwrap().expect("a confirmed order is cancelled");
        assert_eq!((cancelling.next_step(), cancelling.version()), (Step::RefundPayment, 4));
        assert_eq!(cancelling.cancel(later).unwrap(), None, "a cancellation under way is helped along, not restarted");
        let cancelled = cancelling.record(Outcome::PaymentRefunded, later).unwrap().record(Outcome::Restocked, later).unwrap();
        assert_eq!(cancelled.status(), saga::OrderStatus::Cancelled);
        assert_eq!(cancelled.cancel(later).unwrap(), None, "cancelling a cancelled order changes nothing");
        assert_eq!(cancelled.total(), euros(1000));
    }
}
