//! The GraphQL playground in a real headless Chromium, driven over WebDriver (ChromeDriver):
//! the page loads with every request to anything but loopback sent to a dead proxy (so nothing
//! can come from a CDN), a query typed into GraphiQL runs, and its result shows.

use cleave_tests::{Database, Topology, spawn_app};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn binary(env: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

struct Driver {
    client: reqwest::Client,
    base: String,
    session: String,
}

impl Driver {
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let response = self.client.request(method, url).json(&body).send().await.expect("ChromeDriver answers");
        let value: Value = response.json().await.expect("JSON from ChromeDriver");
        assert!(value["value"]["error"].is_null(), "WebDriver error: {value}");
        value["value"].clone()
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Runs `script` until it returns something truthy; fails after `timeout`.
    async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let value = self.script(script, json!([])).await;
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            assert!(started.elapsed() < timeout, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_a_query_in_a_real_browser_without_the_internet() {
    let (Some(chromedriver), Some(chromium)) = (binary("CHROMEDRIVER", "/usr/bin/chromedriver"), binary("CHROMIUM", "/usr/bin/chromium"))
    else {
        assert!(std::env::var_os("CI").is_none(), "CI needs Debian's chromium and chromium-driver for the playground test");
        eprintln!("SKIPPED: the playground browser test needs chromium and chromedriver (apt-get install chromium chromium-driver)");
        return;
    };
    let app = spawn_app(Topology::Monolith(Database::Sqlite)).await.unwrap();
    let admin = app.admin_token().await;
    let created = app
        .graphql(
            "mutation { createProduct(input: {sku: \"PLAY-1\", name: \"Playground lamp\", price: {amount: 4200, currency: \"EUR\"}}) { id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert!(created["errors"].is_null(), "{created}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while client.get(format!("{base}/status")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 // Everything but loopback goes to a port nobody listens on.
                 "--proxy-server=127.0.0.1:9"],
    }}}});
    let session: Value = client.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
    let session_id = session["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_owned();
    let driver = Driver { client, base, session: session_id };

    driver.command(reqwest::Method::POST, "/url", json!({"url": app.url("/graphql")})).await;
    driver
        .wait_for(
            "GraphiQL to render",
            "var e = document.querySelector('.graphiql-query-editor .CodeMirror'); return !!(e && e.CodeMirror);",
            Duration::from_secs(30),
        )
        .await;
    let query = "{ products(first: 5) { edges { node { sku name price { amount } } } } }";
    driver
        .script(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(arguments[0]); return true;",
            json!([query]),
        )
        .await;
    driver.script("document.querySelector('.graphiql-execute-button').click(); return true;", json!([])).await;
    let result = driver
        .wait_for(
            "the result",
            "var e = document.querySelector('.result-window .CodeMirror'); var v = e && e.CodeMirror.getValue(); return v && v.indexOf('PLAY-1') >= 0 ? v : null;",
            Duration::from_secs(30),
        )
        .await;
    let result: Value = serde_json::from_str(result.as_str().unwrap()).expect("the result pane shows JSON");
    assert_eq!(
        result["data"]["products"]["edges"][0]["node"],
        json!({"sku": "PLAY-1", "name": "Playground lamp", "price": {"amount": 4200}})
    );

    driver.command(reqwest::Method::DELETE, "", json!({})).await;
    let _ = child.kill().await;
}
