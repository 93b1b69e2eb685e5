//! Money: integer minor units and an ISO 4217 currency. No floats, anywhere.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Active ISO 4217 alphabetic codes (fund and precious-metal codes left out).
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// An ISO 4217 currency code such as `EUR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");

    /// # Errors
    /// [`MoneyError::UnknownCurrency`] when `code` is not an active ISO 4217 code (upper case).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) && ISO_4217.split(' ').any(|known| known == code) {
            Ok(Self([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(MoneyError::UnknownCurrency(code.chars().take(8).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::parse(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a money value or operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not an ISO 4217 currency code")]
    UnknownCurrency(String),
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
    #[error("amount must not be negative")]
    Negative,
}

/// An amount of money in integer minor units (cents for EUR), `{"amount": 1999, "currency": "EUR"}`
/// on the wire. Arithmetic is checked: overflow and mixing currencies are errors, never wraps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Integer minor units (e.g. cents); prices and charges are never negative.
    #[schema(example = 1999, minimum = 0)]
    amount: i64,
    /// ISO 4217 code.
    #[schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")]
    currency: Currency,
}

impl Money {
    pub const fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }
    pub const fn zero(currency: Currency) -> Self {
        Self { amount: 0, currency }
    }
    /// A non-negative amount, as prices and charges must be.
    ///
    /// # Errors
    /// [`MoneyError::Negative`] for an amount below zero.
    pub fn non_negative(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount < 0 { Err(MoneyError::Negative) } else { Ok(Self { amount, currency }) }
    }
    pub const fn amount(&self) -> i64 {
        self.amount
    }
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// # Errors
    /// Mismatched currencies or overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self.amount.checked_add(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// # Errors
    /// Mismatched currencies or overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self.amount.checked_sub(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Multiplies by a whole quantity (a line total).
    ///
    /// # Errors
    /// Overflow.
    pub fn checked_mul(self, quantity: u32) -> Result<Money, MoneyError> {
        let amount = self.amount.checked_mul(i64::from(quantity)).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Sums amounts of one currency; an empty sum is zero in `currency`.
    ///
    /// # Errors
    /// Mismatched currencies or overflow.
    pub fn sum(currency: Currency, items: impl IntoIterator<Item = Money>) -> Result<Money, MoneyError> {
        items.into_iter().try_fold(Money::zero(currency), Money::checked_add)
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency { Ok(()) } else { Err(MoneyError::CurrencyMismatch(self.currency, other.currency)) }
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert_eq!(Currency::parse("EUR").unwrap(), Currency::EUR);
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EU").is_err());
        assert!(Currency::parse("ABC").is_err());
    }

    #[test]
    fn money_serializes_as_amount_and_currency() {
        let price = Money::new(1999, Currency::EUR);
        assert_eq!(serde_json::to_value(price).unwrap(), serde_json::json!({"amount": 1999, "currency": "EUR"}));
        let back: Money = serde_json::from_str(r#"{"amount": 5, "currency": "USD"}"#).unwrap();
        assert_eq!(back, Money::new(5, Currency::USD));
        assert!(serde_json::from_str::<Money>(r#"{"amount": 1.5, "currency": "USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount": 1, "currency": "XYZ"}"#).is_err());
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let euros = Money::new(1, Currency::EUR);
        let dollars = Money::new(1, Currency::USD);
        assert_eq!(euros.checked_add(dollars), Err(MoneyError::CurrencyMismatch(Currency::EUR, Currency::USD)));
    }

    #[test]
    fn negative_prices_are_refused() {
        assert_eq!(Money::non_negative(-1, Currency::EUR), Err(MoneyError::Negative));
    }

    proptest! {
        #[test]
        fn addition_is_commutative_and_never_wraps(a in any::<i64>(), b in any::<i64>()) {
            let x = Money::new(a, Currency::EUR);
            let y = Money::new(b, Currency::EUR);
            let sum = x.checked_add(y);
            prop_assert_eq!(sum.clone(), y.checked_add(x));
            match a.checked_add(b) {
                Some(expected) => prop_assert_eq!(sum.unwrap().amount(), expected),
                None => prop_assert_eq!(sum, Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn subtraction_undoes_addition(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let x = Money::new(a, Currency::USD);
            let y = Money::new(b, Currency::USD);
            prop_assert_eq!(x.checked_add(y).unwrap().checked_sub(y).unwrap(), x);
        }

        #[test]
        fn multiplication_matches_repeated_addition(price in 0i64..10_000_000, quantity in 0u32..50) {
            let unit = Money::new(price, Currency::EUR);
            let repeated = Money::sum(Currency::EUR, std::iter::repeat_n(unit, quantity as usize)).unwrap();
            prop_assert_eq!(unit.checked_mul(quantity).unwrap(), repeated);
        }

        #[test]
        fn multiplication_overflow_is_reported(price in (i64::MAX / 2)..i64::MAX, quantity in 3u32..1000) {
            prop_assert_eq!(Money::new(price, Currency::EUR).checked_mul(quantity), Err(MoneyError::Overflow));
        }

        #[test]
        fn serde_round_trips(amount in any::<i64>()) {
            let money = Money::new(amount, Currency::EUR);
            let json = serde_json::to_string(&money).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
        }
    }
}
