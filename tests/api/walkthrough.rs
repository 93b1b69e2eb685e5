//! docs/migration-walkthrough.md, executed. Every shell block marked `<!-- walkthrough -->` runs,
//! in order, in one bash session (as a reader's terminal would: variables and functions carry
//! over, and standard error shows with standard output), in an empty directory, with the
//! monolith binary as `cleave` and the preset binaries as `cleave-<preset>` on the `PATH`. The
//! text block marked `<!-- walkthrough-expect -->` after a step lists the lines that step prints:
//! every one of them, in order, each compared with its printed line exactly, except that [`ANY`]
//! (`…`) in an expected line stands for any text (a value that differs from run to run: a
//! checksum, an id, a count that depends on timing). A step with no such block must print
//! nothing. A step that fails, hangs or prints anything else fails the test.

use cleave_tests::Preset;
use cleave_tests::processes::preset_binary;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DOCUMENT: &str = include_str!("../../docs/migration-walkthrough.md");
const DONE: &str = "__walkthrough_step_done__";
/// In an expected line, any text (none included): a value that differs from run to run.
const ANY: &str = "…";
/// Ports the walkthrough's processes listen on.
const PORTS: [u16; 10] = [8080, 8081, 8082, 8083, 8084, 8085, 9080, 9081, 9082, 4223];
/// The databases the walkthrough makes: `$SHOP_DB` followed by each of these.
const DATABASES: [&str; 6] = ["", "_users", "_catalog", "_orders", "_payments", "_notifications"];
/// The preset binaries step 6 runs, as the document names them.
const PRESETS: [(Preset, &str); 6] = [
    (Preset::Service("users"), "cleave-users-service"),
    (Preset::Service("catalog"), "cleave-catalog-service"),
    (Preset::Service("orders"), "cleave-orders-service"),
    (Preset::Service("payments"), "cleave-payments-service"),
    (Preset::Service("notifications"), "cleave-notifications-service"),
    (Preset::Gateway, "cleave-gateway"),
];

#[derive(Debug)]
struct Step {
    /// The line of the document the block starts on.
    line: usize,
    script: String,
    /// Every line the step prints, in order (see [`ANY`]); empty when the document shows no
    /// output for it.
    expect: Vec<String>,
}

/// The marked blocks of `document`, in order.
fn steps(document: &str) -> Vec<Step> {
    let lines: Vec<&str> = document.lines().collect();
    let mut steps: Vec<Step> = Vec::new();
    let mut expected_after: Option<usize> = None;
    let mut at = 0;
    while at < lines.len() {
        let marker = lines[at].trim();
        if marker == "<!-- walkthrough -->" || marker == "<!-- walkthrough-expect -->" {
            let open = at + 1;
            assert!(lines.get(open).is_some_and(|line| line.starts_with("```")), "line {}: a marker not followed by a block", at + 1);
            let close = (open + 1..lines.len()).find(|&i| lines[i].starts_with("```")).expect("a block that ends");
            let body: Vec<&str> = lines[open + 1..close].to_vec();
            if marker == "<!-- walkthrough -->" {
                steps.push(Step { line: open + 1, script: body.join("\n"), expect: Vec::new() });
            } else {
                let count = steps.len();
                assert!(count > 0, "line {}: expected output before any step", at + 1);
                assert!(expected_after != Some(count), "line {}: a second block of expected output for one step", at + 1);
                expected_after = Some(count);
                let step = steps.last_mut().expect("a step");
                step.expect = body.iter().map(|line| (*line).to_owned()).collect();
            }
            at = close;
        }
        at += 1;
    }
    steps
}

/// Whether `line` is what `pattern` says: the same text, where each [`ANY`] in `pattern` stands
/// for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split(ANY);
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(found) => rest = &rest[found + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// How `output` differs from the lines `expected` lists, line by line; `None` when it does not.
fn difference(expected: &[String], output: &str) -> Option<String> {
    let mut printed: Vec<&str> = output.lines().collect();
    // The session ends each step's output with a newline of its own.
    while printed.last().is_some_and(|line| line.is_empty()) {
        printed.pop();
    }
    let same = |at: usize| matches!((expected.get(at), printed.get(at)), (Some(pattern), Some(line)) if line_matches(pattern, line));
    let count = expected.len().max(printed.len());
    if (0..count).all(same) {
        return None;
    }
    let shown = |line: Option<&str>| line.map_or_else(|| "nothing".to_owned(), |line| format!("`{line}`"));
    let mut report = String::new();
    for at in 0..count {
        let (pattern, line) = (expected.get(at).map(String::as_str), printed.get(at).copied());
        if same(at) {
            report.push_str(&format!("  line {}: {}\n", at + 1, shown(line)));
        } else {
            report.push_str(&format!("! line {}: expected {}, printed {}\n", at + 1, shown(pattern), shown(line)));
        }
    }
    Some(report)
}

/// One bash session, its output line by line, and its process group (every process it starts
/// in the background is in it).
struct Session {
    child: Child,
    input: ChildStdin,
    output: mpsc::Receiver<String>,
}

impl Session {
    fn start(dir: &std::path::Path, env: &[(&str, String)]) -> Self {
        use std::os::unix::process::CommandExt as _;
        let mut command = Command::new("bash");
        command
            .args(["--noprofile", "--norc", "-e", "-o", "pipefail"])
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(name, value)| (*name, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = command.spawn().expect("bash");
        let stdout = child.stdout.take().unwrap();
        let (send, output) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut input = child.stdin.take().unwrap();
        writeln!(input, "exec 2>&1").unwrap();
        Self { child, input, output }
    }

    /// Runs `script`; its output, or why it failed.
    fn run(&mut self, script: &str, within: Duration) -> Result<String, String> {
        writeln!(self.input, "{script}\nprintf '\\n{DONE}\\n'").map_err(|error| format!("the shell is gone: {error}"))?;
        let deadline = std::time::Instant::now() + within;
        let mut output = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.output.recv_timeout(left) {
                Ok(line) if line == DONE => return Ok(output),
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(format!("no end within {within:?}; it printed:\n{output}")),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    return Err(format!("a command failed (the shell exited, {status:?}); it printed:\n{output}"));
                }
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The shell and everything it started in the background.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// The tail of every log the walkthrough's processes wrote.
fn logs(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|extension| extension == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
            out.push_str(&format!("--- {}:\n{}\n", path.display(), tail.join("\n")));
        }
    }
    out
}

#[test]
fn the_document_marks_steps_and_what_they_show() {
    let steps = steps(DOCUMENT);
    assert!(steps.len() >= 12, "{steps:#?}");
    assert!(steps.iter().filter(|step| !step.expect.is_empty()).count() >= 11, "most steps say what they show");
    // Step 6 starts each service with `start <module> <port>`, which runs `cleave-<module>-service`.
    for (preset, binary) in PRESETS {
        let runs = match preset {
            Preset::Service(module) => DOCUMENT.contains("cleave-$1-service") && DOCUMENT.contains(&format!("start {module} ")),
            _ => DOCUMENT.contains(binary),
        };
        assert!(runs, "the walkthrough does not run {binary}, which the test provides");
    }
}

#[test]
fn expected_lines_match_exactly_but_for_the_marked_values() {
    assert!(line_matches("payment: captured", "payment: captured"));
    assert!(!line_matches("payment: captured", "payment: captured 7800 EUR"), "a line that says more");
    assert!(!line_matches("payment: captured", "old payment: captured"), "a line that says more before");
    assert!(line_matches(
        "users.users: 2 rows, checksum … (source and target agree)",
        "users.users: 2 rows, checksum 0af3 (source and target agree)"
    ));
    assert!(!line_matches(
        "users.users: 2 rows, checksum … (source and target agree)",
        "users.users: 3 rows, checksum 0af3 (source and target agree)"
    ));
    assert!(line_matches("a … b … c", "a x b y b c"));
    assert!(!line_matches("a…a", "a"), "the text on either side of a marker is not shared");
    assert!(line_matches("…", ""));

    let expect = |lines: &[&str]| lines.iter().map(|line| (*line).to_owned()).collect::<Vec<_>>();
    assert_eq!(difference(&expect(&["one", "two"]), "one\ntwo\n\n"), None, "the newline that ends a step is not a line");
    assert_eq!(difference(&[], "\n"), None);
    assert!(difference(&expect(&["one", "two"]), "two\none\n").is_some(), "the order counts");
    assert!(difference(&expect(&["one"]), "one\ntwo\n").is_some(), "a line more");
    assert!(difference(&expect(&["one", "two"]), "one\n").is_some(), "a line less");
    assert!(difference(&[], "a warning\n").is_some(), "a step the document shows no output for prints nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_walkthrough_runs_as_written() {
    let Some(server) = cleave_test_support::postgres() else { return };
    // Step 5 starts a broker of its own from `cleave trust init`'s nats.conf.
    let Some(nats_server) = cleave_test_support::nats::nats_server_binary() else {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "CI=true but nats-server is not installed");
        eprintln!("SKIPPING the walkthrough: it needs the nats-server binary");
        return;
    };
    for port in PORTS {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port}, which the walkthrough uses, is taken");
    }
    // The server's URL without a database, as the document's `PG`; a database name of the
    // test's own, as its `SHOP_DB`.
    let scratch = server.fresh_database().await.unwrap();
    let pg = scratch.rsplit_once('/').map(|(base, _)| base.to_owned()).unwrap();
    let shop = format!("walkthrough_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (preset, name) in PRESETS.into_iter().chain([(Preset::Monolith, "cleave")]) {
        let binary = tokio::task::spawn_blocking(move || preset_binary(preset)).await.unwrap();
        std::os::unix::fs::symlink(&binary, bin.join(name)).unwrap();
    }
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let broker_dir = nats_server.parent().expect("a directory").display().to_string();
    let path = format!("{}:{}:{broker_dir}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let env = [
        ("PATH", path),
        ("HOME", dir.path().display().to_string()),
        ("LANG", "C.UTF-8".to_owned()),
        ("NO_COLOR", "1".to_owned()),
        ("PG", pg.clone()),
        ("SHOP_DB", shop.clone()),
    ];
    let steps = steps(DOCUMENT);
    let outcome = tokio::task::spawn_blocking({
        let work = work.clone();
        move || {
            let mut session = Session::start(&work, &env);
            for (number, step) in steps.iter().enumerate() {
                let output = session
                    .run(&step.script, Duration::from_secs(120))
                    .map_err(|error| format!("step {} (line {} of the walkthrough) failed: {error}", number + 1, step.line))?;
                if let Some(report) = difference(&step.expect, &output) {
                    return Err(format!(
                        "step {} (line {} of the walkthrough) printed other lines than the document shows (`!` marks each that differs):\n{report}",
                        number + 1,
                        step.line
                    ));
                }
            }
            Ok(steps.len())
        }
    })
    .await
    .unwrap();
    // The walkthrough's databases go, whatever happened.
    let admin = sea_orm::Database::connect(scratch.as_str()).await.unwrap();
    for database in DATABASES.map(|suffix| format!("{shop}{suffix}")) {
        let _ = sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")).await;
    }
    match outcome {
        Ok(count) => eprintln!("the walkthrough's {count} steps ran as written"),
        Err(error) => panic!("{error}\n{}", logs(&work)),
    }
}
