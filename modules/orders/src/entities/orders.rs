use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: String,
    pub step: String,
    pub stock_reserved: bool,
    pub stock_committed: bool,
    pub payment_captured: bool,
    pub failure_reason: Option<String>,
    pub total_amount: i64,
    pub currency: String,
    pub card_last4: String,
    /// The token payments issued for the card, which the saga charges (never the card).
    pub payment_method: Option<String>,
    /// Bumped by every saga transition: a write that does not see the version it read loses
    /// (another driver moved the saga on).
    pub saga_version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
