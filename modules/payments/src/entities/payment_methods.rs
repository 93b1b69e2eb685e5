use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_methods")]
pub struct Model {
    /// The SHA-256 of the token, in hex: the token itself is never stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    pub customer_id: Uuid,
    pub card_last4: String,
    /// What the provider charges: its reference to the card, never the card number.
    pub provider_reference: String,
    pub created_at: DateTimeUtc,
    /// An unused method is refused after this.
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
