//! Value checks of the catalog, each reported per field.

use shared_kernel::{FieldError, Money};

/// A field that failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl From<InvalidField> for FieldError {
    fn from(invalid: InvalidField) -> Self {
        FieldError { field: invalid.field.to_owned(), message: invalid.message }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField { field, message: message.into() }
}

/// Collects every invalid field of one command.
#[derive(Debug, Default)]
pub struct Checks(pub Vec<InvalidField>);

impl Checks {
    pub fn check<T>(&mut self, result: Result<T, InvalidField>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

pub const MAX_STOCK: i64 = 1_000_000_000;
pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: u32 = 10_000;

/// A SKU: 1–64 letters, digits, `-`, `_`, `.`; unique case-insensitively.
pub fn sku(text: &str) -> Result<String, InvalidField> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return Err(invalid("sku", "must be 1 to 64 characters"));
    }
    if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(invalid("sku", "may contain only letters, digits, '-', '_' and '.'"));
    }
    Ok(text.to_owned())
}

pub fn text(field: &'static str, value: &str, max: usize, required: bool) -> Result<String, InvalidField> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(invalid(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A price: not negative.
pub fn price(value: Money) -> Result<Money, InvalidField> {
    Money::non_negative(value.amount(), value.currency()).map_err(|_| invalid("price", "must not be negative"))
}

pub fn stock(field: &'static str, value: i64) -> Result<i64, InvalidField> {
    if (0..=MAX_STOCK).contains(&value) { Ok(value) } else { Err(invalid(field, format!("must be between 0 and {MAX_STOCK}"))) }
}

/// The lower-cased text a product is found by.
pub fn search_text(sku: &str, name: &str, description: &str) -> String {
    format!("{} {} {}", sku, name, description).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_kernel::Currency;

    #[test]
    fn skus_are_checked() {
        assert_eq!(sku(" BK-001.a_b ").unwrap(), "BK-001.a_b");
        assert!(sku("").is_err());
        assert!(sku("has space").is_err());
        assert!(sku(&"x".repeat(65)).is_err());
    }

    #[test]
    fn negative_prices_and_stock_are_refused() {
        assert!(price(Money::new(-1, Currency::EUR)).is_err());
        assert!(price(Money::new(0, Currency::EUR)).is_ok());
        assert!(stock("on_hand", -1).is_err());
        assert!(stock("on_hand", MAX_STOCK + 1).is_err());
    }

    #[test]
    fn every_invalid_field_is_collected() {
        let mut checks = Checks::default();
        checks.check(sku(""));
        checks.check(text("name", "", 200, true));
        assert_eq!(checks.0.iter().map(|e| e.field).collect::<Vec<_>>(), ["sku", "name"]);
    }
}
