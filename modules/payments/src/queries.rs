//! Reading payments: an order's payment for its owner, an admin, orders or the edge; many orders' at once
//! for their owner, an admin or the orders service.

use crate::context::Context;
use crate::entities::payments;
use crate::store::{self, Stored};
use crate::views::view;
use payments_contract::{PaymentView, services_allowed};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use shared_kernel::{ApiError, Caller, OrderId, UserId};

impl Context {
    pub(crate) async fn get_payment(&self, caller: &Caller, order_id: OrderId) -> Result<PaymentView, ApiError> {
        let as_service = caller.service_allowed(services_allowed::get_payment, "payments.get_payment")?;
        // A voided charge is no payment.
        let payment = store::payment_of(&self.db, order_id).await?.filter(|payment| payment.status != Stored::Voided.as_str());
        if !as_service {
            let owner = payment.as_ref().map_or(UserId::from_uuid(uuid::Uuid::nil()), |p| UserId::from_uuid(p.customer_id));
            caller.require_self_or_admin(owner, "payment")?;
        }
        match payment {
            Some(payment) => view(&self.settle_if_stale(payment).await?),
            None => Err(ApiError::not_found("payment not found")),
        }
    }

    pub(crate) async fn get_payments(&self, caller: &Caller, order_ids: Vec<OrderId>) -> Result<Vec<PaymentView>, ApiError> {
        let sees_all = caller.service_allowed(services_allowed::get_payments, "payments.get_payments")? || caller.is_admin();
        if order_ids.len() > 1000 {
            return Err(ApiError::invalid_field("order_ids", "at most 1000 at once"));
        }
        let user = if sees_all { None } else { Some(caller.require_user()?.id) };
        if order_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = payments::Entity::find()
            .filter(payments::Column::OrderId.is_in(order_ids.iter().map(OrderId::as_uuid)))
            .filter(payments::Column::Status.ne(Stored::Voided.as_str()));
        if let Some(user) = user {
            select = select.filter(payments::Column::CustomerId.eq(user.as_uuid()));
        }
        let rows = select.all(&self.db).await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(view(&self.settle_if_stale(row).await?)?);
        }
        Ok(views)
    }
}
