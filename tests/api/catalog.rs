//! Catalog endpoints of api.md, with their failure cases.

use cleave_tests::{TestApp, problem};
use reqwest::Method;
use serde_json::{Value, json};

async fn admin_creates(app: &TestApp, admin: &str, path: &str, body: Value) -> Value {
    let response = app.post_json(path, &body, Some(admin)).await;
    assert_eq!(response.status(), 201, "{path} {body}");
    response.json().await.unwrap()
}

async fn products_can_be_created_listed_searched_and_read_by_anyone(app: TestApp) {
    let admin = app.admin_token().await;
    let books = admin_creates(&app, &admin, "/api/catalog/categories", json!({"name": "Books"})).await;
    let product = admin_creates(
        &app,
        &admin,
        "/api/catalog/products",
        json!({"sku": "BK-1", "name": "The Rust Book", "description": "Ownership", "price": {"amount": 3999, "currency": "EUR"}, "category_id": books["id"], "stock_on_hand": 7}),
    )
    .await;
    admin_creates(
        &app,
        &admin,
        "/api/catalog/products",
        json!({"sku": "MUG-1", "name": "Mug", "price": {"amount": 999, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(product["price"], json!({"amount": 3999, "currency": "EUR"}));
    assert_eq!(product["stock_available"], 7);
    assert_eq!(product["version"], 1);
    let id = product["id"].as_str().unwrap();
    let fetched: Value = app.get(&format!("/api/catalog/products/{id}"), None).await.json().await.unwrap();
    assert_eq!(fetched, product);
    let in_books: Value =
        app.get(&format!("/api/catalog/products?category={}", books["id"].as_str().unwrap()), None).await.json().await.unwrap();
    assert_eq!(in_books["items"].as_array().unwrap().len(), 1);
    let found: Value = app.get("/api/catalog/products?q=rust%20BOOK", None).await.json().await.unwrap();
    assert_eq!(found["items"][0]["sku"], "BK-1");
    let first: Value = app.get("/api/catalog/products?limit=1", None).await.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second: Value = app.get(&format!("/api/catalog/products?limit=1&cursor={cursor}"), None).await.json().await.unwrap();
    assert_eq!(second["items"][0]["sku"], "MUG-1");
    assert!(second["next_cursor"].is_null());
    let categories: Value = app.get("/api/catalog/categories", None).await.json().await.unwrap();
    assert_eq!(categories["items"][0]["name"], "Books");
    let malformed = problem(app.get("/api/catalog/products/not-a-uuid", None).await, 404).await;
    assert_eq!(malformed["detail"], "the id is not a UUID, so it names nothing", "a malformed id says so");
    let unknown = problem(app.get(&format!("/api/catalog/products/{}", uuid::Uuid::now_v7()), None).await, 404).await;
    assert_ne!(unknown["detail"], malformed["detail"], "an unknown id is simply not found");
    problem(app.get("/api/catalog/products?category=nope", None).await, 422).await;
    problem(app.get("/api/catalog/products?limit=500", None).await, 422).await;
}

async fn catalog_writes_are_for_admins_and_validated(app: TestApp) {
    let customer = app.customer("shopper@example.com").await;
    let token = customer["access_token"].as_str();
    let body = json!({"sku": "X-1", "name": "X", "price": {"amount": 100, "currency": "EUR"}});
    problem(app.post_json("/api/catalog/products", &body, None).await, 401).await;
    problem(app.post_json("/api/catalog/products", &body, token).await, 403).await;
    problem(app.post_json("/api/catalog/categories", &json!({"name": "Toys"}), token).await, 403).await;
    let admin = app.admin_token().await;
    admin_creates(&app, &admin, "/api/catalog/products", body.clone()).await;
    problem(
        app.post_json(
            "/api/catalog/products",
            &json!({"sku": "x-1", "name": "Y", "price": {"amount": 1, "currency": "EUR"}}),
            Some(&admin),
        )
        .await,
        409,
    )
    .await;
    let invalid = problem(
        app.post_json(
            "/api/catalog/products",
            &json!({"sku": "bad sku", "name": "", "price": {"amount": -1, "currency": "EUR"}}),
            Some(&admin),
        )
        .await,
        422,
    )
    .await;
    let fields: Vec<&str> = invalid["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["sku", "name", "price"]);
    problem(
        app.post_json(
            "/api/catalog/products",
            &json!({"sku": "F-1", "name": "F", "price": {"amount": 1.5, "currency": "EUR"}}),
            Some(&admin),
        )
        .await,
        422,
    )
    .await;
    problem(
        app.post_json(
            "/api/catalog/products",
            &json!({"sku": "F-2", "name": "F", "price": {"amount": 1, "currency": "XYZ"}}),
            Some(&admin),
        )
        .await,
        422,
    )
    .await;
    admin_creates(&app, &admin, "/api/catalog/categories", json!({"name": "Toys"})).await;
    problem(app.post_json("/api/catalog/categories", &json!({"name": "TOYS"}), Some(&admin)).await, 409).await;
}

async fn a_stale_version_is_a_conflict_and_stock_is_set_by_admins(app: TestApp) {
    let admin = app.admin_token().await;
    let product = admin_creates(
        &app,
        &admin,
        "/api/catalog/products",
        json!({"sku": "V-1", "name": "Vase", "price": {"amount": 5000, "currency": "EUR"}}),
    )
    .await;
    let id = product["id"].as_str().unwrap();
    let patch = |version: i64, amount: i64| json!({"version": version, "price": {"amount": amount, "currency": "EUR"}});
    let response =
        app.request(Method::PATCH, &format!("/api/catalog/products/{id}")).bearer_auth(&admin).json(&patch(1, 4500)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!((updated["version"].as_i64(), updated["price"]["amount"].as_i64()), (Some(2), Some(4500)));
    let stale =
        app.request(Method::PATCH, &format!("/api/catalog/products/{id}")).bearer_auth(&admin).json(&patch(1, 4000)).send().await.unwrap();
    problem(stale, 409).await;
    let unknown_field = app
        .request(Method::PATCH, &format!("/api/catalog/products/{id}"))
        .bearer_auth(&admin)
        .json(&json!({"version": 2, "colour": "red"}))
        .send()
        .await
        .unwrap();
    problem(unknown_field, 422).await;
    let stock = app
        .request(Method::PUT, &format!("/api/catalog/products/{id}/stock"))
        .bearer_auth(&admin)
        .json(&json!({"on_hand": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(stock.status(), 200);
    assert_eq!(stock.json::<Value>().await.unwrap()["stock_available"], 12);
    let negative = app
        .request(Method::PUT, &format!("/api/catalog/products/{id}/stock"))
        .bearer_auth(&admin)
        .json(&json!({"on_hand": -1}))
        .send()
        .await
        .unwrap();
    problem(negative, 422).await;
    let customer = app.customer("sneaky@example.com").await;
    let as_customer = app
        .request(Method::PUT, &format!("/api/catalog/products/{id}/stock"))
        .bearer_auth(customer["access_token"].as_str().unwrap())
        .json(&json!({"on_hand": 99}))
        .send()
        .await
        .unwrap();
    problem(as_customer, 403).await;
}

crate::topologies!(
    products_can_be_created_listed_searched_and_read_by_anyone,
    catalog_writes_are_for_admins_and_validated,
    a_stale_version_is_a_conflict_and_stock_is_set_by_admins,
);

mod not_deployed {
    use cleave::config::ModuleMode;
    use cleave_tests::{Database, Topology, problem, spawn_app_with};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_module_not_deployed_answers_503_and_the_rest_works() {
        let configure = |settings: &mut cleave::Settings| settings.modules.catalog.mode = Some(ModuleMode::NotDeployed);
        let app = spawn_app_with(Topology::Monolith(Database::Sqlite), configure, None).await.unwrap();
        let response = app.get("/api/catalog/products", None).await;
        assert!(response.headers().get("retry-after").is_some());
        let body = problem(response, 503).await;
        assert_eq!(body["detail"], "the catalog module is not deployed with this service");
        assert_eq!(app.register("still@example.com").await.status(), 201);
    }
}

mod demo_seed {
    use cleave_tests::{Database, Topology, spawn_app};
    use serde_json::Value;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_seed_adds_fifty_products_once() {
        let app = spawn_app(Topology::Monolith(Database::Sqlite)).await.unwrap();
        let catalog = app.composition_catalog();
        let first = cleave::seed::seed_demo(catalog.as_ref()).await.unwrap();
        assert_eq!((first.categories_created, first.products_created), (5, 50));
        let again = cleave::seed::seed_demo(catalog.as_ref()).await.unwrap();
        assert_eq!((again.categories_created, again.products_created), (0, 0));
        let mut count = 0;
        let mut cursor = String::new();
        loop {
            let page: Value = app.get(&format!("/api/catalog/products?limit=100{cursor}"), None).await.json().await.unwrap();
            count += page["items"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        assert_eq!(count, 50);
        let books: Value = app.get("/api/catalog/products?q=rust", None).await.json().await.unwrap();
        assert_eq!(books["items"].as_array().unwrap().len(), 2);
    }
}
