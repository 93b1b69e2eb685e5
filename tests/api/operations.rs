//! Health, metrics, the OpenAPI document and the offline API reference page.

use cleave_tests::{TestApp, Topology};
use serde_json::Value;

async fn health_reports_each_check(app: TestApp) {
    let live = app.get("/health/live", None).await;
    assert_eq!(live.status(), 200);
    let check = if app.topology.edge_hosts_users() { "users.database" } else { "users.remote" };
    // A remote module is probed in the background, the first time as the process starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ready = app.get("/health/ready", None).await;
        assert_eq!(ready.status(), 200);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready");
        if body["checks"][check] == "ok" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{check} never ok: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The value of one `http_requests_total` series in a scrape (0 when absent).
fn requests_total(scrape: &str, route: &str, status: u16) -> u64 {
    let series = format!("http_requests_total{{method=\"PATCH\",route=\"{route}\",status=\"{status}\"}} ");
    scrape.lines().find_map(|line| line.strip_prefix(&series)).and_then(|value| value.trim().parse().ok()).unwrap_or(0)
}

async fn metrics_are_prometheus_text_with_red_per_route(app: TestApp) {
    // The recorder is process-wide and tests run in parallel: count a series before and after
    // requests of our own, and expect at least our three (no other test sends PATCH).
    let before = requests_total(&app.get("/metrics", None).await.text().await.unwrap(), "/api/users/me", 405);
    for _ in 0..3 {
        assert_eq!(app.request(reqwest::Method::PATCH, "/api/users/me").send().await.unwrap().status(), 405);
    }
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(requests_total(&text, "/api/users/me", 405) >= before + 3, "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket{method=\"PATCH\",route=\"/api/users/me\""), "{text}");
}

async fn the_openapi_document_and_the_docs_page_work_offline(app: TestApp) {
    let document: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(document["paths"]["/api/v1/auth/login"]["post"].is_object());
    // The document served is the one committed (docs/openapi.json), which the contract check
    // keeps current.
    let committed: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(document, committed);
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://") && !html.contains("http://"), "the page must load nothing from outside: {html}");
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-initializer.js"] {
        let response = app.get(&format!("/docs/{asset}"), None).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 100, "{asset}");
    }
    let initializer = app.get("/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
}

/// How the process serving the public API reaches `module` in `topology`: `None` when it hosts
/// it, else the wire.
fn reached_over(topology: Topology, module: &str) -> Option<&'static str> {
    use cleave_tests::Layout;
    let wire = if topology.wire() == cleave::config::Wire::Nats { "nats" } else { "http" };
    match topology {
        Topology::Monolith(_) | Topology::Processes(Layout::Monolith) => None,
        Topology::Processes(Layout::PaymentsApart) => (module == "payments").then_some(wire),
        Topology::Processes(Layout::OrdersAndPaymentsApart) => matches!(module, "orders" | "payments").then_some(wire),
        _ => Some(wire),
    }
}

async fn the_status_says_where_each_module_runs_and_how_it_fares(app: TestApp) {
    let admin = app.admin_token().await;
    let response = app.get("/api/admin/status", Some(&admin)).await;
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    let modules = status["modules"].as_array().unwrap();
    let names: Vec<&str> = modules.iter().map(|module| module["name"].as_str().unwrap()).collect();
    let composed: Vec<&str> = cleave::modules::infos().iter().map(|module| module.name).collect();
    assert_eq!(names, composed, "every module, in composition order: {status}");
    assert!(names.len() >= 5 && names[..4] == ["users", "catalog", "payments", "orders"], "{status}");
    for module in modules {
        let name = module["name"].as_str().unwrap();
        match reached_over(app.topology, name) {
            None => {
                assert_eq!(module["runs"], "local", "{module}");
                assert_eq!(module["instances"], 1, "{module}");
                assert!(module["circuit"].is_null(), "{module}");
            }
            Some(wire) => {
                assert_eq!(module["runs"], wire, "{module}");
                assert!(module["instances"].as_u64().unwrap() >= 1, "{module}");
                assert_eq!(module["circuit"], "closed", "{module}");
                assert_eq!(module["in_flight"], 0, "{module}");
            }
        }
        assert_eq!(module["dead_letters_pending"], 0, "{module}");
        assert!(module["error"].is_null(), "{module}");
    }
    assert_eq!(app.get("/api/admin/status", None).await.status(), 401);
    let customer = app.mint_customer_token();
    assert_eq!(app.get("/api/admin/status", Some(&customer)).await.status(), 403);
}

crate::topologies!(
    the_status_says_where_each_module_runs_and_how_it_fares,
    health_reports_each_check,
    metrics_are_prometheus_text_with_red_per_route,
    the_openapi_document_and_the_docs_page_work_offline
);

/// Over NATS, a stranger with any NATS client finds every module of a split deployment: each is
/// a service of the micro-service protocol, with one endpoint per operation (and one more
/// service per module for its dead letters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_nats_every_module_answers_the_micro_service_protocol() {
    use futures::StreamExt as _;
    let Some(app) = cleave_tests::spawn_app(Topology::ExtractedOverNats(cleave_tests::Database::Sqlite)).await else { return };
    // As the gateway's broker user (discovery is open to every process kind).
    let client = app.trust().nats_client("gateway", &app.nats_url().expect("a NATS topology")).await.expect("the topology's broker");
    let gather = |subject: String| {
        let client = client.clone();
        async move {
            let inbox = client.new_inbox();
            let mut replies = client.subscribe(inbox.clone()).await.unwrap();
            client.publish_with_reply(subject, inbox, "".into()).await.unwrap();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
            let mut found = Vec::new();
            while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
                found.push(serde_json::from_slice::<Value>(&message.payload).unwrap());
            }
            found
        }
    };
    let prefix = format!("{}.rpc.", app.nats_subject_prefix().expect("a NATS topology"));
    let ours: std::collections::BTreeSet<String> = gather("$SRV.INFO".to_owned())
        .await
        .into_iter()
        .filter(|info| info["endpoints"][0]["subject"].as_str().is_some_and(|subject| subject.starts_with(&prefix)))
        .map(|info| info["name"].as_str().unwrap().to_owned())
        .collect();
    let modules: Vec<&str> = cleave::modules::infos().iter().map(|module| module.name).collect();
    assert!(modules.len() >= 5, "{modules:?}");
    let expected = modules.iter().flat_map(|module| [module.to_string(), format!("{module}_dead_letters")]).collect();
    assert_eq!(ours, expected, "every module is a NATS service, and so are its dead letters");
    for name in modules {
        assert!(!gather(format!("$SRV.PING.{name}")).await.is_empty(), "{name} answers PING");
    }
}

/// `/metrics` passes `promtool check metrics` (Debian's `prometheus` package): every series has
/// its help text and a name Prometheus's conventions accept. Scraped from a gateway whose
/// modules are remote, so the contract-call and circuit series are there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics() {
    let Some(promtool) =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|dir| dir.join("promtool")).find(|path| path.is_file())
    else {
        assert!(std::env::var("CI").is_err(), "CI needs promtool (Debian's prometheus package) for this test");
        eprintln!("promtool is not installed (Debian package `prometheus`): skipping the metrics lint");
        return;
    };
    let app = cleave_tests::spawn_app(Topology::Extracted(cleave_tests::Database::Sqlite)).await.expect("SQLite needs nothing");
    assert_eq!(app.get("/api/catalog/products", None).await.status(), 200);
    assert_eq!(app.get("/api/users/me", None).await.status(), 401);
    // And a monolith beside it (the recorder is per OS process: one scrape shows both).
    let monolith = cleave_tests::spawn_app(Topology::Monolith(cleave_tests::Database::Sqlite)).await.expect("SQLite needs nothing");
    assert_eq!(monolith.get("/api/catalog/products", None).await.status(), 200);
    let scrape = app.get("/metrics", None).await.text().await.unwrap();
    let remote = "contract_calls_total{module=\"catalog\",operation=\"list_products\",transport=\"http\",outcome=\"ok\"}";
    // The monolith called its own catalog: counted as local.
    let local = "contract_calls_total{module=\"catalog\",operation=\"list_products\",transport=\"local\",outcome=\"ok\"}";
    for series in [remote, local, "upstream_circuit_state{", "upstream_in_flight{", "http_requests_total{"] {
        assert!(scrape.contains(series), "{series} in:\n{scrape}");
    }
    let mut check = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = check.stdin.take().unwrap();
        stdin.write_all(scrape.as_bytes()).await.unwrap();
    }
    let output = check.wait_with_output().await.unwrap();
    assert!(output.status.success(), "promtool: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}

/// No `CLEAVE_` name that is not a configuration key, where people read or run one: the loader
/// (`Settings::load`) takes every `CLEAVE_*` variable as a key and every section refuses a key
/// it does not know, so a helper variable named so stops start-up for whoever exports it.
mod cleave_variables {
    use std::path::{Path, PathBuf};

    /// What people read and run, besides the code: the README, the image, the docs, the
    /// deployment files, CI and the scripts.
    const SCANNED: &[&str] = &["README.md", "Dockerfile", "docs", "deploy", ".ci", "tests/bench", "tests/schemathesis"];

    /// Where Rust code reads a variable by name.
    const READS_IN_CODE: &[&str] = &["var(\"CLEAVE_", "var_os(\"CLEAVE_", "env = \"CLEAVE_"];

    /// Every file under `path` (or `path` itself), recursively.
    fn files_under(path: &Path, found: &mut Vec<PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display())) {
                files_under(&entry.expect("a directory entry").path(), found);
            }
        } else if path.is_file() {
            found.push(path.to_path_buf());
        }
    }

    /// Each `CLEAVE_…` name in `text` (upper case, digits and underscores), not part of a longer
    /// word.
    fn cleave_names(text: &str) -> Vec<&str> {
        text.match_indices("CLEAVE_")
            .filter(|(at, _)| !text[..*at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(rest.len());
                &rest[..end]
            })
            .collect()
    }

    /// Whether the loader takes `name` as a key: `CLEAVE_A__B` is key `a.b`, deserialized into
    /// the settings as the loader does, where an unknown key is an "unknown field" (a wrong
    /// value is not this test's business). `CLEAVE_CONFIG` (the CLI's `--config`) is the one
    /// variable the loader skips. A name ending in `__` stands for the keys under it
    /// (`CLEAVE_NOTIFICATIONS__SMTP__*`), and `CLEAVE_` alone for the scheme.
    fn is_configuration_key(name: &str) -> bool {
        if name == "CLEAVE_CONFIG" {
            return true;
        }
        let Some(key) = name.strip_prefix("CLEAVE_") else { return false };
        let key = key.trim_end_matches('_');
        if key.is_empty() {
            return true;
        }
        let mut value = serde_json::Value::Null;
        for part in key.rsplit("__") {
            let mut section = serde_json::Map::new();
            section.insert(part.to_lowercase(), value);
            value = serde_json::Value::Object(section);
        }
        match serde_json::from_value::<cleave::Settings>(value) {
            Ok(_) => true,
            Err(error) => !error.to_string().contains("unknown field"),
        }
    }

    #[test]
    fn every_cleave_variable_in_the_docs_deploy_files_and_scripts_is_a_configuration_key() {
        // The check itself: keys, sections and the scheme pass; anything else does not.
        for key in [
            "CLEAVE_SERVER__ADDR",
            "CLEAVE_DATA_DIR",
            "CLEAVE_MODULES__USERS__TIMEOUTS_MS__CHARGE",
            "CLEAVE_NOTIFICATIONS__SMTP__",
            "CLEAVE_",
        ] {
            assert!(is_configuration_key(key), "{key} is a configuration key");
        }
        for other in ["CLEAVE_PRESET_DIR", "CLEAVE_SERVICE_TOKEN", "CLEAVE_SERVER__ADRESS", "CLEAVE_ADMIN_BOOTSTRAP"] {
            assert!(!is_configuration_key(other), "{other} is not a configuration key");
        }

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
        let mut files = Vec::new();
        for scanned in SCANNED {
            files_under(&root.join(scanned), &mut files);
        }
        let mut code = Vec::new();
        for dir in ["app", "modules", "shared-kernel", "migrations", "tests"] {
            files_under(&root.join(dir), &mut code);
        }
        let mut seen = 0;
        let mut refused = Vec::new();
        for path in &files {
            // Not text (an image): nothing to read.
            let Ok(text) = std::fs::read_to_string(path) else { continue };
            for name in cleave_names(&text) {
                seen += 1;
                if !is_configuration_key(name) {
                    refused.push(format!("{}: {name}", path.strip_prefix(&root).unwrap_or(path).display()));
                }
            }
        }
        for path in code.iter().filter(|path| path.extension().is_some_and(|extension| extension == "rs")) {
            let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            for marker in READS_IN_CODE {
                for (at, _) in text.match_indices(marker) {
                    // The name starts after the marker's opening quote.
                    let name = cleave_names(&text[at + marker.len() - "CLEAVE_".len()..]).into_iter().next().unwrap_or_default();
                    seen += 1;
                    if !is_configuration_key(name) {
                        refused.push(format!("{}: {name}", path.strip_prefix(&root).unwrap_or(path).display()));
                    }
                }
            }
        }
        assert!(seen > 50, "the scan finds the documented keys ({seen} names)");
        refused.sort();
        refused.dedup();
        assert!(
            refused.is_empty(),
            "`CLEAVE_` names that are not configuration keys (start-up refuses them; name a variable of a script or a file without the prefix):\n{}",
            refused.join("\n")
        );
    }
}
