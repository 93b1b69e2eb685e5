//! Payment methods: the edge exchanges a customer's card for a single-use token before it places
//! an order, so the card number goes no further than payments, and payments keeps only the
//! provider's reference to the card and its last four digits. The token is stored as its
//! SHA-256: a read of the table gives nothing to charge with.

use crate::context::Context;
use crate::entities::payment_methods;
use base64::Engine as _;
use payments_contract::{CardNumber, PaymentMethod, PaymentMethodToken};
use rand::RngCore as _;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use sha2::{Digest, Sha256};
use shared_kernel::{ApiError, Caller, UserId};

/// How long an unused method may still pay (a placement charges within seconds; the saga's
/// retries and recovery within minutes).
pub(crate) const METHOD_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// Why a method cannot pay, as the charge answers it: one reason for all, so a caller learns
/// nothing about tokens that are not theirs.
pub(crate) const REFUSED: &str = "the payment method is unknown, expired or already used";

impl Context {
    #[tracing::instrument(skip_all)]
    pub(crate) async fn tokenize(&self, caller: &Caller, card: CardNumber) -> Result<PaymentMethod, ApiError> {
        let customer = caller.require_user()?.id;
        let reference = self.provider.tokenize(&card).await.map_err(|error| {
            tracing::warn!(%error, "the payment provider did not take a card");
            ApiError::unavailable("the payment provider failed; try again", 2)
        })?;
        let mut secret = [0_u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = PaymentMethodToken::parse(&format!(
            "{}{}",
            PaymentMethodToken::PREFIX,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        ))
        .map_err(|_| ApiError::Internal)?;
        let now = self.clock.now();
        payment_methods::ActiveModel {
            token_hash: Set(token_hash(&token)),
            customer_id: Set(customer.as_uuid()),
            card_last4: Set(card.last4().to_owned()),
            provider_reference: Set(reference),
            created_at: Set(now),
            expires_at: Set(now + METHOD_LIFETIME),
        }
        .insert(&self.db)
        .await?;
        Ok(PaymentMethod { token, card_last4: card.last4().to_owned() })
    }

    /// The method `token` names if `customer` may pay with it now (an unused one must not have
    /// expired; a used one is checked against the order by the caller).
    pub(crate) async fn method_for(
        &self,
        token: &PaymentMethodToken,
        customer: UserId,
    ) -> Result<Option<payment_methods::Model>, ApiError> {
        let found = payment_methods::Entity::find_by_id(token_hash(token)).one(&self.db).await?;
        Ok(found.filter(|method| method.customer_id == customer.as_uuid()))
    }
}

/// The stored form of a token.
pub(crate) fn token_hash(token: &PaymentMethodToken) -> String {
    Sha256::digest(token.expose().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
