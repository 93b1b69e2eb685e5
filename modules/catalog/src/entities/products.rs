use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub sku: String,
    pub sku_key: String,
    pub name: String,
    pub description: String,
    pub search_text: String,
    pub price_amount: i64,
    pub price_currency: String,
    pub category_id: Option<Uuid>,
    pub on_hand: i64,
    pub reserved: i64,
    pub version: i32,
    /// Units sold by confirmed orders (not cancelled), from orders' events.
    pub units_sold: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
