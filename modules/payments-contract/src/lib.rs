//! The payments module's contract. **API Boundary**: orders and the edge see payments only
//! through what is here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
pub use shared_kernel::{ApiError, Caller, Money, OrderId, Secret, UserId};

/// A card number that passed the Luhn check: 12 to 19 digits (spaces and dashes dropped).
/// Its `Debug` shows only the last four digits; it is never logged whole.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CardNumber(Secret<String>);

impl CardNumber {
    /// # Errors
    /// A message for the `card_number` field.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must contain only digits");
        }
        if !(12..=19).contains(&digits.len()) {
            return Err("must have 12 to 19 digits");
        }
        if !luhn(&digits) {
            return Err("is not a valid card number");
        }
        Ok(Self(Secret::new(digits)))
    }

    /// The digits. Only a payment provider adapter may read them.
    pub fn expose_digits(&self) -> &str {
        self.0.expose()
    }

    pub fn last4(&self) -> &str {
        let digits = self.0.expose();
        &digits[digits.len() - 4..]
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber(**** {})", self.last4())
    }
}

impl TryFrom<String> for CardNumber {
    type Error = &'static str;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<CardNumber> for String {
    fn from(card: CardNumber) -> Self {
        card.0.into_inner()
    }
}

/// An opaque, single-use reference to a card payments holds: what [`PaymentsApi::tokenize`]
/// answers and what a charge names instead of the card. It opens nothing by itself: only the
/// orders service may charge, only for the customer it was issued to, only once, and only
/// within an hour of its issue. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PaymentMethodToken(Secret<String>);

impl PaymentMethodToken {
    /// The prefix of every token.
    pub const PREFIX: &'static str = "pm_";
    /// The longest token accepted.
    pub const MAX_LEN: usize = 128;

    /// # Errors
    /// Text that is not shaped like a token (the prefix, then URL-safe characters).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let body = text.strip_prefix(Self::PREFIX).ok_or("is not a payment method token")?;
        if body.is_empty() || text.len() > Self::MAX_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("is not a payment method token");
        }
        Ok(Self(Secret::new(text.to_owned())))
    }

    /// The token's text: for the wire and the orders table, never for a log.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl std::fmt::Debug for PaymentMethodToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentMethodToken([redacted])")
    }
}

impl TryFrom<String> for PaymentMethodToken {
    type Error = &'static str;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<PaymentMethodToken> for String {
    fn from(token: PaymentMethodToken) -> Self {
        token.0.into_inner()
    }
}

/// What [`PaymentsApi::tokenize`] answers: the token and what may be shown of the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub token: PaymentMethodToken,
    /// The last four digits of the card.
    pub card_last4: String,
}

/// Charge an order's total (orders calls this as a service).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub order_id: OrderId,
    /// The order's owner: the one who may see the payment besides admins. It must be the
    /// customer the payment method was issued to.
    pub customer_id: UserId,
    pub amount: Money,
    /// The card, as [`PaymentsApi::tokenize`] issued it to the customer.
    pub payment_method: PaymentMethodToken,
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Sent to the provider, no answer recorded yet.
    Pending,
    Captured,
    /// The card was refused (`failure_reason` says why); nothing was charged.
    Declined,
    /// The provider failed; nothing was charged, and trying again may succeed.
    Failed,
    PartiallyRefunded,
    Refunded,
}

/// `GET /api/orders/{id}/payment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentView {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    pub status: PaymentStatus,
    pub amount: Money,
    pub refunded_amount: Money,
    pub failure_reason: Option<String>,
    /// The last four digits of the card.
    pub card_last4: String,
    pub created_at: DateTime<Utc>,
}

/// What [`PaymentsApi::charge`] did, in payments' words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "payment", rename_all = "snake_case")]
pub enum ChargeOutcome {
    /// The amount is captured (now, or by an earlier charge of the order; it may since have been
    /// refunded, in part or whole).
    Captured(PaymentView),
    /// The card was refused: nothing was charged. `failure_reason` says why.
    Declined(PaymentView),
    /// The order was already charged with another amount: nothing more was charged. The view
    /// is the earlier payment.
    AmountMismatch(PaymentView),
    /// The payment method cannot pay for this order (unknown, expired, issued to another
    /// customer, or already used for another order): nothing was charged and no payment exists.
    MethodRefused { reason: String },
    /// The order's charge was voided (its saga gave up on it): nothing was or will be charged.
    Voided,
}

/// What [`PaymentsApi::void_charge`] did: either way, nothing is left captured for the order
/// and no later charge of it captures anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum VoidOutcome {
    /// Nothing was captured (no charge came, or it was declined or failed), and a charge that
    /// comes later is refused.
    Voided,
    /// The charge had captured: the whole amount is refunded.
    Refunded { payment: PaymentView },
}

/// What [`PaymentsApi::refund`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RefundOutcome {
    /// The amount is given back (for a full refund: everything not yet refunded, which may be
    /// nothing when an earlier refund gave it all back).
    Refunded { payment: PaymentView },
    /// The charge captured nothing (declined or failed): there is nothing to give back.
    NothingCaptured { payment: PaymentView },
    /// The order has no payment.
    NoPayment,
    /// The amount asked for is more than is left to refund (another refund may have just
    /// taken it): nothing was refunded.
    ExceedsCapture { payment: PaymentView },
}

shared_kernel::contract! {
    /// What payments offers.
    ///
    /// # Errors
    /// The contract's [`ApiError`]: 401/403 for callers that are neither a service nor an admin
    /// (charge, refund); 404 for an unknown payment or one that is not the caller's; 422 for
    /// invalid amounts; 503 when the provider fails (retryable: a retry never charges twice).
    /// The operations the order saga depends on (`charge`, `refund`) answer what happened as an
    /// outcome; their errors are only the caller's mistakes and unavailability.
    pub trait PaymentsApi as "payments" {
        /// Exchanges a signed-in customer's card for a single-use payment method token (the edge
        /// calls it before it places an order, so the card goes no further than payments).
        /// Payments keeps what its provider needs to charge the card, never the number.
        ///
        /// # Errors
        /// 401 without a user; 503 when the provider cannot take the card (retryable).
        fn tokenize(card: CardNumber) -> PaymentMethod;
        /// Charges the order's total. Idempotent per order: asking again returns the same payment
        /// and never captures twice.
        ///
        /// # Errors
        /// 401/403 for a caller that is neither the orders service nor an admin; 422 for an amount that is
        /// not positive; 503 when the provider fails or the charge is still in flight (retryable:
        /// a retry never charges twice). A declined card is an outcome, not an error.
        fn charge(request: ChargeRequest) -> ChargeOutcome, services [orders];
        /// Refunds `amount`, or everything not yet refunded. The refunded total never exceeds
        /// what was captured.
        ///
        /// # Errors
        /// 401/403 for a caller that is neither the orders service nor an admin; 422 for an amount that is
        /// not positive or not in the payment's currency; 503 while the charge is still with the
        /// provider, or when the provider fails the refund. No payment, or nothing captured, is
        /// an outcome, not an error.
        fn refund(order_id: OrderId, amount: Option<Money>) -> RefundOutcome, services [orders];
        /// Gives up on an order's charge, whatever became of it: a charge not yet made is refused
        /// from now on (a payment row `voided` takes its place), a failed one is voided, a
        /// capture is refunded in full. The saga calls it when it compensates an order whose
        /// charge outcome it does not know, and calls the order rejected only once it answers.
        ///
        /// # Errors
        /// 401/403 for a caller that is neither the orders service nor an admin; 422 for an
        /// amount that is not positive; 503 while a charge of the order is still with the
        /// provider, or when the provider fails the refund (ask again).
        fn void_charge(order_id: OrderId, customer_id: UserId, amount: Money) -> VoidOutcome, services [orders];
        /// The order's payment: its owner, an admin, or the orders service.
        fn get_payment(order_id: OrderId) -> PaymentView, idempotent, services [orders];
        /// The payments of many orders at once (at most 1000), in no particular order: the ones
        /// the caller may see (a user their own; an admin or the orders service all). Unknown orders
        /// are left out.
        fn get_payments(order_ids: Vec<OrderId>) -> Vec<PaymentView>, idempotent, services [orders];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_numbers_pass_luhn_and_others_do_not() {
        for good in ["4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119", "4242 4242 4242 4242"] {
            assert!(CardNumber::parse(good).is_ok(), "{good}");
        }
        for bad in ["4242424242424241", "1234", "abcd efgh ijkl", "", "42424242424242424242"] {
            assert!(CardNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_card_number_never_prints_whole() {
        let card = CardNumber::parse("4242424242424242").unwrap();
        assert_eq!(format!("{card:?}"), "CardNumber(**** 4242)");
        assert!(!format!("{:?}", vec![card]).contains("424242424242"), "nor inside another value");
    }

    #[test]
    fn a_token_never_prints_and_only_token_shaped_text_parses() {
        let token = PaymentMethodToken::parse("pm_AbC-d_9").unwrap();
        assert_eq!(format!("{token:?}"), "PaymentMethodToken([redacted])");
        let request = ChargeRequest {
            order_id: OrderId::new(),
            customer_id: UserId::new(),
            amount: Money::new(1, shared_kernel::Currency::EUR),
            payment_method: token.clone(),
        };
        assert!(!format!("{request:?}").contains("AbC"));
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"pm_AbC-d_9\"");
        for bad in ["", "pm_", "AbC", "pm_a b", "pm_a/b", &format!("pm_{}", "a".repeat(200)), "4242424242424242"] {
            assert!(PaymentMethodToken::parse(bad).is_err(), "{bad}");
            assert!(serde_json::from_value::<PaymentMethodToken>(serde_json::json!(bad)).is_err(), "{bad}");
        }
    }
}
