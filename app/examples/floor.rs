//! The benchmark floor: a bare axum server answering one fixed JSON document, with none of
//! cleave's edge, modules or database. `tests/bench/load.py` measures it beside cleave so the
//! figures say how much of the machine's HTTP capacity cleave keeps.
//!
//! `cargo run --release --example floor -- 127.0.0.1:9090`

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

async fn product() -> Json<Value> {
    Json(json!({
        "id": "01936f5e-7c4e-7a51-9c1b-6f2d8e4b3a10",
        "sku": "BENCH-1",
        "name": "Benchmark product",
        "description": "",
        "price": {"amount": 1999, "currency": "EUR"},
        "category_id": null,
        "stock_available": 1000000,
        "stock_on_hand": 1000000,
        "stock_reserved": 0,
        "units_sold": 0,
        "version": 1,
        "created_at": "2026-11-24T00:00:00Z",
        "updated_at": "2026-11-24T00:00:00Z"
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9090".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, Router::new().route("/product", get(product))).await
}
