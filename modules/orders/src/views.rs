//! Orders as the contract shows them.

use crate::domain::Order;
use crate::saga;
use orders_contract::{OrderItemView, OrderStatus, OrderView};
use shared_kernel::ProductId;
use std::collections::HashMap;

/// The contract's status for the saga's.
pub(crate) fn contract_status(status: saga::OrderStatus) -> OrderStatus {
    match status {
        saga::OrderStatus::Pending => OrderStatus::Pending,
        saga::OrderStatus::Confirmed => OrderStatus::Confirmed,
        saga::OrderStatus::Rejected => OrderStatus::Rejected,
        saga::OrderStatus::Cancelled => OrderStatus::Cancelled,
    }
}

/// The contract's view of `order`; `names` are the products' current names (a product orders
/// has no name for yet shows an empty one).
pub(crate) fn view(order: &Order, names: &HashMap<ProductId, String>) -> OrderView {
    let items = order
        .lines()
        .iter()
        .map(|line| OrderItemView {
            product_id: line.product_id,
            product_name: names.get(&line.product_id).cloned().unwrap_or_default(),
            quantity: line.quantity.get(),
            unit_price: line.unit_price,
            line_total: line.total(),
        })
        .collect();
    OrderView {
        id: order.id(),
        customer_id: order.customer_id(),
        status: contract_status(order.status()),
        items,
        total: order.total(),
        failure_reason: order.failure_reason().map(str::to_owned),
        card_last4: order.card_last4().to_owned(),
        created_at: order.created_at(),
        updated_at: order.updated_at(),
    }
}
