//! The payment endpoint of api.md. (Payments are made by orders, which comes next; here: the
//! endpoint exists in every topology, needs a caller and never reveals another's payment.)

use cleave_tests::{TestApp, problem};

async fn a_payment_needs_a_caller_and_is_not_found_for_someone_else(app: TestApp) {
    let order = uuid::Uuid::now_v7();
    problem(app.get(&format!("/api/orders/{order}/payment"), None).await, 401).await;
    let customer = app.customer("payer@example.com").await;
    problem(app.get(&format!("/api/orders/{order}/payment"), customer["access_token"].as_str()).await, 404).await;
    problem(app.get("/api/orders/not-an-id/payment", customer["access_token"].as_str()).await, 404).await;
    let admin = app.admin_token().await;
    problem(app.get(&format!("/api/orders/{order}/payment"), Some(&admin)).await, 404).await;
}

crate::topologies!(a_payment_needs_a_caller_and_is_not_found_for_someone_else);
