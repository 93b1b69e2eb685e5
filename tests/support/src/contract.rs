//! The contract suites' transports, written once: every module's suite runs each of its cases in
//! process and over both wires on SQLite, and in process on PostgreSQL.
//!
//! A module's suite implements [`Transports`] for its harness and lists its cases:
//!
//! ```text
//! cleave_test_support::contract_suite!(Harness: each_test_card_has_its_published_outcome, refunds_never_exceed_the_capture);
//! ```

use shared_kernel::db::DatabaseTarget;
use std::future::Future;
use tempfile::TempDir;

/// How a module's contract suite reaches the module: one harness type, four ways to make it.
pub trait Transports: Sized + Send + 'static {
    /// What one test's module is made of: its service, and whatever the test watches beside it.
    type Parts: Send;

    /// The module on `target`, migrated.
    fn parts_on(target: DatabaseTarget) -> impl Future<Output = Self::Parts> + Send;

    /// Calls go straight to the service. `temp` (its SQLite files) lives as long as the harness.
    fn in_process(parts: Self::Parts, temp: Option<TempDir>) -> impl Future<Output = Self> + Send;

    /// Calls go through the module's HTTP wire, served on a free port.
    fn over_http(parts: Self::Parts, temp: Option<TempDir>) -> impl Future<Output = Self> + Send;

    /// Calls go through the module's NATS wire; `None` when there is no NATS server (never
    /// under `CI=true`: [`crate::nats::client`] fails the test there).
    fn over_nats(parts: Self::Parts, temp: Option<TempDir>) -> impl Future<Output = Option<Self>> + Send;
}

async fn on_sqlite<H: Transports>() -> (H::Parts, TempDir) {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let parts = H::parts_on(DatabaseTarget::SqliteDir(temp.path().to_owned())).await;
    (parts, temp)
}

/// In process, on SQLite files of its own.
pub async fn in_process_sqlite<H: Transports>() -> H {
    let (parts, temp) = on_sqlite::<H>().await;
    H::in_process(parts, Some(temp)).await
}

/// Over HTTP, on SQLite files of its own.
pub async fn over_http_sqlite<H: Transports>() -> H {
    let (parts, temp) = on_sqlite::<H>().await;
    H::over_http(parts, Some(temp)).await
}

/// Over NATS, on SQLite files of its own.
pub async fn over_nats_sqlite<H: Transports>() -> Option<H> {
    let (parts, temp) = on_sqlite::<H>().await;
    H::over_nats(parts, Some(temp)).await
}

/// In process, on a fresh PostgreSQL database; `None` when there is no server (never under
/// `CI=true`: [`crate::postgres`] fails the test there).
pub async fn in_process_postgres<H: Transports>() -> Option<H> {
    let server = crate::postgres()?;
    let url = server.fresh_database().await.expect("a fresh PostgreSQL database");
    Some(H::in_process(H::parts_on(DatabaseTarget::Url(url)).await, None).await)
}

/// The suite: each case (an `async fn(Harness)` beside the macro call) as four tests, in the
/// modules `in_process_sqlite`, `over_http_sqlite`, `over_nats_sqlite` and `in_process_postgres`.
#[macro_export]
macro_rules! contract_suite {
    ($harness:ident: $($case:ident),* $(,)?) => {
        mod in_process_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::contract::in_process_sqlite::<super::$harness>().await).await;
                }
            )*
        }
        mod over_http_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::contract::over_http_sqlite::<super::$harness>().await).await;
                }
            )*
        }
        mod over_nats_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(harness) = $crate::contract::over_nats_sqlite::<super::$harness>().await else { return };
                    super::$case(harness).await;
                }
            )*
        }
        mod in_process_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(harness) = $crate::contract::in_process_postgres::<super::$harness>().await else { return };
                    super::$case(harness).await;
                }
            )*
        }
    };
}
