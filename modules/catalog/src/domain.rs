//! The catalog's values, each checked once when it is parsed and trusted after: a SKU, a name, a
//! price, a stock quantity, the lines of a reservation. A value that fails its check is the
//! kernel's [`FieldError`] naming the field as the client sent it.

use catalog_contract::{NewProduct, ProductPatch, ReserveLine};
use shared_kernel::{CategoryId, FieldError, FieldErrors, Money, ProductId};
use std::collections::BTreeSet;

/// Stock on hand a product may have.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Lines of one reservation.
pub const MAX_LINES: usize = 100;
/// Units of one line of a reservation.
pub const MAX_QUANTITY: u32 = 10_000;

/// A SKU: 1–64 letters, digits, `-`, `_`, `.` (surrounding space dropped); unique
/// case-insensitively, by [`Sku::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    /// # Errors
    /// A [`FieldError`] for `sku`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 64 {
            return Err(FieldError::new("sku", "must be 1 to 64 characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(FieldError::new("sku", "may contain only letters, digits, '-', '_' and '.'"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What uniqueness is decided on: the SKU in lower case.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Text a person typed: trimmed, at most `max` characters, no control characters but newlines
/// and tabs; `required` text is not empty.
fn text(field: &'static str, value: &str, max: usize, required: bool) -> Result<String, FieldError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A category's name: 1–100 characters, unique case-insensitively by [`CategoryName::key`]
/// (which must fit in 100 characters too: lower-casing can lengthen text, `İ` becomes two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryName(String);

impl CategoryName {
    /// # Errors
    /// A [`FieldError`] for `name`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let name = text("name", value, 100, true)?;
        if name.to_lowercase().chars().count() > 100 {
            return Err(FieldError::new("name", "must be at most 100 characters"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A product's name: 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    /// # Errors
    /// A [`FieldError`] for `name`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        text("name", value, 200, true).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's description: up to 5,000 characters, possibly empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// # Errors
    /// A [`FieldError`] for `description`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        text("description", value, 5000, false).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A price: not negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(Money);

impl Price {
    /// # Errors
    /// A [`FieldError`] for `price`.
    pub fn parse(value: Money) -> Result<Self, FieldError> {
        Money::non_negative(value.amount(), value.currency()).map(Self).map_err(|_| FieldError::new("price", "must not be negative"))
    }

    pub fn money(self) -> Money {
        self.0
    }
}

/// Units of stock on hand: 0 to [`MAX_STOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StockQuantity(i64);

impl StockQuantity {
    /// `field` names it in the error (`stock_on_hand` when a product is made, `on_hand` when stock
    /// is set).
    ///
    /// # Errors
    /// A [`FieldError`] for `field`.
    pub fn parse(field: &'static str, value: i64) -> Result<Self, FieldError> {
        if (0..=MAX_STOCK).contains(&value) {
            Ok(Self(value))
        } else {
            Err(FieldError::new(field, format!("must be between 0 and {MAX_STOCK}")))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// The lower-cased text a product is found by.
pub fn search_text(sku: &str, name: &str, description: &str) -> String {
    format!("{sku} {name} {description}").to_lowercase()
}

/// A new product, every field checked (all invalid fields reported at once).
#[derive(Debug, Clone)]
pub struct ProductDraft {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub price: Price,
    pub on_hand: StockQuantity,
    pub category_id: Option<CategoryId>,
}

impl ProductDraft {
    /// # Errors
    /// Every invalid field.
    pub fn parse(input: &NewProduct) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::default();
        let sku = errors.check(Sku::parse(&input.sku));
        let name = errors.check(ProductName::parse(&input.name));
        let description = errors.check(Description::parse(&input.description));
        let price = errors.check(Price::parse(input.price));
        let on_hand = errors.check(StockQuantity::parse("stock_on_hand", input.stock_on_hand));
        match (sku, name, description, price, on_hand) {
            (Some(sku), Some(name), Some(description), Some(price), Some(on_hand)) => {
                Ok(Self { sku, name, description, price, on_hand, category_id: input.category_id })
            }
            _ => Err(errors.into_vec()),
        }
    }
}

/// The fields a product edit changes, each checked; `None` leaves a field as it is.
#[derive(Debug, Clone)]
pub struct ProductChanges {
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub price: Option<Price>,
    /// `Some(None)` takes the product out of its category.
    pub category_id: Option<Option<CategoryId>>,
    /// The version the edit was made against.
    pub version: i32,
}

impl ProductChanges {
    /// # Errors
    /// Every invalid field.
    pub fn parse(patch: &ProductPatch) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::default();
        let name = patch.name.as_deref().map(|n| errors.check(ProductName::parse(n)));
        let description = patch.description.as_deref().map(|d| errors.check(Description::parse(d)));
        let price = patch.price.map(|p| errors.check(Price::parse(p)));
        if !errors.is_empty() {
            return Err(errors.into_vec());
        }
        Ok(Self {
            name: name.flatten(),
            description: description.flatten(),
            price: price.flatten(),
            category_id: patch.category_id,
            version: patch.version,
        })
    }
}

/// The lines of one reservation: 1 to [`MAX_LINES`], each product once, each quantity 1 to
/// [`MAX_QUANTITY`]; kept in product-id order, the order every transaction locks products in, so
/// two reservations can never deadlock each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationLines(Vec<ReserveLine>);

impl ReservationLines {
    /// # Errors
    /// A [`FieldError`] for `lines` or `quantity`.
    pub fn parse(mut lines: Vec<ReserveLine>) -> Result<Self, FieldError> {
        if lines.is_empty() || lines.len() > MAX_LINES {
            return Err(FieldError::new("lines", format!("must hold 1 to {MAX_LINES} lines")));
        }
        if lines.iter().any(|l| l.quantity == 0 || l.quantity > MAX_QUANTITY) {
            return Err(FieldError::new("quantity", format!("must be between 1 and {MAX_QUANTITY}")));
        }
        let ids: BTreeSet<ProductId> = lines.iter().map(|l| l.product_id).collect();
        if ids.len() != lines.len() {
            return Err(FieldError::new("lines", "each product may appear once"));
        }
        lines.sort_by_key(|l| l.product_id);
        Ok(Self(lines))
    }

    pub fn lines(&self) -> &[ReserveLine] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn product_ids(&self) -> Vec<uuid::Uuid> {
        self.0.iter().map(|line| line.product_id.as_uuid()).collect()
    }

    /// What a repeat of the reservation is recognised by: the same products and quantities,
    /// whatever their order.
    pub fn key(&self) -> String {
        let mut parts: Vec<String> = self.0.iter().map(|l| format!("{}x{}", l.product_id, l.quantity)).collect();
        parts.sort();
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_kernel::Currency;

    #[test]
    fn skus_are_checked() {
        assert_eq!(Sku::parse(" BK-001.a_b ").unwrap().as_str(), "BK-001.a_b");
        assert_eq!(Sku::parse("BK-1").unwrap().key(), "bk-1");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert_eq!(Sku::parse(&"x".repeat(65)).unwrap_err().field, "sku");
    }

    #[test]
    fn negative_prices_and_stock_are_refused() {
        assert!(Price::parse(Money::new(-1, Currency::EUR)).is_err());
        assert!(Price::parse(Money::new(0, Currency::EUR)).is_ok());
        assert_eq!(StockQuantity::parse("on_hand", -1).unwrap_err().field, "on_hand");
        assert!(StockQuantity::parse("on_hand", MAX_STOCK + 1).is_err());
        assert_eq!(StockQuantity::parse("on_hand", MAX_STOCK).unwrap().get(), MAX_STOCK);
    }

    #[test]
    fn a_category_name_must_fit_in_lower_case_too() {
        assert!(CategoryName::parse(&"İ".repeat(100)).is_err());
        assert!(CategoryName::parse(&"a".repeat(100)).is_ok());
        assert!(CategoryName::parse("  ").is_err());
        assert!(CategoryName::parse("bad\u{7}name").is_err());
    }

    #[test]
    fn every_invalid_field_of_a_new_product_is_reported() {
        let input = NewProduct {
            sku: String::new(),
            name: String::new(),
            description: String::new(),
            price: Money::new(-5, Currency::EUR),
            stock_on_hand: -1,
            category_id: None,
        };
        let errors = ProductDraft::parse(&input).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sku", "name", "price", "stock_on_hand"]);
    }

    #[test]
    fn reservation_lines_are_checked_and_keyed_whatever_their_order() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let line = |product_id, quantity| ReserveLine { product_id, quantity };
        let one = ReservationLines::parse(vec![line(a, 1), line(b, 2)]).unwrap();
        let other = ReservationLines::parse(vec![line(b, 2), line(a, 1)]).unwrap();
        assert_eq!(one.key(), other.key());
        assert_eq!(one, other, "kept in product order");
        assert_eq!(ReservationLines::parse(vec![]).unwrap_err().field, "lines");
        assert_eq!(ReservationLines::parse(vec![line(a, 0)]).unwrap_err().field, "quantity");
        assert_eq!(ReservationLines::parse(vec![line(a, MAX_QUANTITY + 1)]).unwrap_err().field, "quantity");
        assert_eq!(ReservationLines::parse(vec![line(a, 1), line(a, 2)]).unwrap_err().field, "lines");
    }
}
