//! `cleave data move <module>`, run as users run it (the binary), on a monolith's real data:
//! SQLite to PostgreSQL, PostgreSQL to PostgreSQL and back to SQLite, each table's row count and
//! checksum the same at every step; a move that fails half-way leaves the target as it was and
//! runs again; a target that holds data is refused unless told.

use cleave_tests::processes::preset_binary;
use cleave_tests::{Database, Preset, TestApp, Topology, spawn_app};
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const MODULES: [&str; 4] = ["users", "catalog", "orders", "payments"];

/// Runs `cleave data move <module>` from `from` to `to` (through the environment, as a password
/// in a URL should travel); its exit status and standard output and error.
fn move_data(module: &str, from: &str, to: &str, replace: bool) -> (bool, String) {
    let mut command = std::process::Command::new(preset_binary(Preset::Monolith));
    command.args(["data", "move", module]).env("SOURCE_DATABASE_URL", from).env("TARGET_DATABASE_URL", to).env("NO_COLOR", "1");
    if replace {
        command.arg("--replace");
    }
    let output = command.output().expect("the binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The `<table>: <rows> rows, checksum <hex>` lines a move printed, by table.
fn checksums(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter(|line| line.contains(" rows, checksum "))
        .filter_map(|line| {
            let (table, rest) = line.split_once(": ")?;
            Some((table.to_owned(), rest.split(" (").next()?.to_owned()))
        })
        .collect()
}

/// A monolith on SQLite with a customer, a product and a confirmed order: rows in every module,
/// their outboxes and the catalog's inbox.
async fn populated_monolith() -> TestApp {
    let app = spawn_app(Topology::Monolith(Database::Sqlite)).await.expect("SQLite needs nothing");
    let admin = app.admin_token().await;
    let body = json!({"sku": "MOVE-1", "name": "Moved lamp", "price": {"amount": 1500, "currency": "EUR"}, "stock_on_hand": 9});
    let product: Value = app.post_json("/api/catalog/products", &body, Some(&admin)).await.json().await.unwrap();
    let buyer = app.customer("mover@example.com").await;
    let buyer = buyer["access_token"].as_str().unwrap();
    let order = json!({"items": [{"product_id": product["id"], "quantity": 2}], "payment": {"card_number": "4242424242424242"}});
    let response = app
        .request(reqwest::Method::POST, "/api/orders")
        .bearer_auth(buyer)
        .header("idempotency-key", "move")
        .json(&order)
        .send()
        .await
        .unwrap();
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    // The order's events reach the catalog's inbox.
    for _ in 0..50 {
        let view: Value = app.get(&format!("/api/catalog/products/{}", product["id"].as_str().unwrap()), None).await.json().await.unwrap();
        if view["units_sold"] == 2 {
            return app;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the sale was never counted");
}

fn sqlite_url(dir: &Path, module: &str) -> String {
    format!("sqlite://{}", dir.join(format!("{module}.db")).display())
}

async fn rows(url: &str, module: &str, table: &str) -> i64 {
    let target = shared_kernel::db::DatabaseTarget::Url(url.to_owned());
    let db = shared_kernel::db::connect_module(module, &target, 1).await.unwrap();
    let row =
        db.query_one_raw(Statement::from_string(db.get_database_backend(), format!("SELECT COUNT(*) AS n FROM {table}"))).await.unwrap();
    row.unwrap().try_get::<i64>("", "n").unwrap()
}

/// Every module, SQLite → PostgreSQL → another PostgreSQL → SQLite: the same rows and checksums
/// at every step, and every table of the module moved (its event tables too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_moves_between_sqlite_and_postgres_unchanged() {
    let Some(server) = cleave_test_support::postgres() else { return };
    let app = populated_monolith().await;
    let scratch = tempfile::tempdir().unwrap();
    for module in MODULES {
        let sqlite = sqlite_url(&app.users_data_dir, module);
        let first = server.fresh_database().await.unwrap();
        let second = server.fresh_database().await.unwrap();
        let back = sqlite_url(scratch.path(), module);

        let (ok, to_postgres) = move_data(module, &sqlite, &first, false);
        assert!(ok, "{module} SQLite → PostgreSQL:\n{to_postgres}");
        let expected = checksums(&to_postgres);
        for table in ["outbox_events", "inbox_events", "dead_letters"] {
            assert!(expected.contains_key(&format!("{module}.{table}")), "{module}'s {table} was moved:\n{to_postgres}");
        }
        assert!(to_postgres.contains("the target matches the source"), "{to_postgres}");
        let (ok, to_postgres_again) = move_data(module, &first, &second, false);
        assert!(ok, "{module} PostgreSQL → PostgreSQL:\n{to_postgres_again}");
        assert_eq!(checksums(&to_postgres_again), expected, "{module}: PostgreSQL to PostgreSQL");
        let (ok, to_sqlite) = move_data(module, &second, &back, false);
        assert!(ok, "{module} PostgreSQL → SQLite:\n{to_sqlite}");
        assert_eq!(checksums(&to_sqlite), expected, "{module}: back on SQLite");
        assert_eq!(rows(&back, module, "outbox_events").await, rows(&sqlite, module, "outbox_events").await);
    }
    // The rows are really there, read without the move's own code: the order and its items.
    let orders_back = sqlite_url(scratch.path(), "orders");
    assert_eq!(rows(&orders_back, "orders", "orders").await, 1);
    assert_eq!(rows(&orders_back, "orders", "order_items").await, 1);
    assert!(rows(&sqlite_url(scratch.path(), "catalog"), "catalog", "inbox_events").await >= 1);
}

/// A move that fails half-way (the target refuses an insert into the order items, after the
/// orders went in) commits nothing and says so; run again once the fault is gone, it moves
/// everything. Run a third time, it refuses the now full target, unless told to replace it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_leaves_the_target_as_it_was_and_runs_again() {
    let Some(server) = cleave_test_support::postgres() else { return };
    let app = populated_monolith().await;
    let source = sqlite_url(&app.users_data_dir, "orders");
    let target = server.fresh_database().await.unwrap();
    {
        let db = shared_kernel::db::connect_module("orders", &shared_kernel::db::DatabaseTarget::Url(target.clone()), 1).await.unwrap();
        <migrations::orders::Migrator as sea_orm_migration::MigratorTrait>::up(&db, None).await.unwrap();
        db.execute_unprepared(
            "CREATE FUNCTION refuse_items() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'the disk is full (simulated)'; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER interrupt BEFORE INSERT ON order_items FOR EACH ROW EXECUTE FUNCTION refuse_items();",
        )
        .await
        .unwrap();
    }
    let (ok, failed) = move_data("orders", &source, &target, false);
    assert!(!ok, "the move fails:\n{failed}");
    assert!(failed.contains("order_items"), "it names the table it could not write:\n{failed}");
    assert!(!failed.contains("moved"), "{failed}");
    assert_eq!(rows(&target, "orders", "orders").await, 0, "the orders written before the failure were rolled back");
    assert_eq!(rows(&target, "orders", "outbox_events").await, 0);

    {
        let db = shared_kernel::db::connect_module("orders", &shared_kernel::db::DatabaseTarget::Url(target.clone()), 1).await.unwrap();
        db.execute_unprepared("DROP TRIGGER interrupt ON order_items").await.unwrap();
    }
    let (ok, moved) = move_data("orders", &source, &target, false);
    assert!(ok, "run again, it moves everything:\n{moved}");
    assert_eq!(rows(&target, "orders", "orders").await, 1);
    assert_eq!(rows(&target, "orders", "order_items").await, 1);

    let (ok, refused) = move_data("orders", &source, &target, false);
    assert!(!ok, "{refused}");
    assert!(refused.contains("already holds") && refused.contains("--replace"), "{refused}");
    let (ok, replaced) = move_data("orders", &source, &target, true);
    assert!(ok, "{replaced}");
    assert_eq!(checksums(&replaced), checksums(&moved));
    assert_eq!(rows(&target, "orders", "orders").await, 1, "replaced, not added to");
    // The sequence of the outbox moved past the copied events: the module can write its next.
    let db = shared_kernel::db::connect_module("orders", &shared_kernel::db::DatabaseTarget::Url(target.clone()), 1).await.unwrap();
    let next = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT nextval(pg_get_serial_sequence('outbox_events', 'seq')) AS n, (SELECT MAX(seq) FROM outbox_events) AS top",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(next.try_get::<i64>("", "n").unwrap() > next.try_get::<i64>("", "top").unwrap());
}

/// Bad requests change nothing and say what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_refuses_what_it_cannot_do() {
    let scratch = tempfile::tempdir().unwrap();
    let (ok, unknown) = move_data("shipping", &sqlite_url(scratch.path(), "a"), &sqlite_url(scratch.path(), "b"), false);
    assert!(!ok && unknown.contains("no module named `shipping`"), "{unknown}");
    let (ok, empty) = move_data("payments", &sqlite_url(scratch.path(), "empty"), &sqlite_url(scratch.path(), "payments"), false);
    assert!(!ok && empty.contains("no payments schema"), "{empty}");
    let (ok, same) = move_data("payments", &sqlite_url(scratch.path(), "x"), &sqlite_url(scratch.path(), "x"), false);
    assert!(!ok && same.contains("the same database"), "{same}");
}
