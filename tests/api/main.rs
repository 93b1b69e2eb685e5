//! Black-box suites over HTTP. One test binary; each suite runs in every topology (see
//! `cleave_tests::Topology`) through the `topologies!` macro.

mod architecture;
mod auth;
mod cache;
mod catalog;
mod data;
mod edge;
mod events;
mod graphql;
mod notifications;
mod operations;
mod orders;
mod outages;
mod payments;
mod playground;
mod traces;
mod users;
mod walkthrough;

/// Generates, for each named `async fn(TestApp)`, one test with orders in a process of its own
/// (on SQLite and on PostgreSQL): for the flows that need no events across processes.
#[macro_export]
macro_rules! orders_apart {
    ($($case:ident),* $(,)?) => {
        mod orders_apart_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let app = cleave_tests::spawn_app(cleave_tests::Topology::OrdersApart(cleave_tests::Database::Sqlite)).await.expect("SQLite needs nothing");
                    super::$case(app).await;
                }
            )*
        }
        mod orders_apart_over_nats_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = cleave_tests::spawn_app(cleave_tests::Topology::OrdersApartOverNats(cleave_tests::Database::Sqlite)).await else { return };
                    super::$case(app).await;
                }
            )*
        }
        mod orders_apart_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = cleave_tests::spawn_app(cleave_tests::Topology::OrdersApart(cleave_tests::Database::Postgres)).await else { return };
                    super::$case(app).await;
                }
            )*
        }
    };
}

/// Generates, for each named `async fn(TestApp)`, one test with orders in a process of its own
/// and every wire and event on NATS (JetStream): for the reactions that cross processes.
#[macro_export]
macro_rules! across_processes {
    ($($case:ident),* $(,)?) => {
        mod across_processes_over_nats_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = cleave_tests::spawn_app(cleave_tests::Topology::OrdersApartOverNats(cleave_tests::Database::Sqlite)).await else { return };
                    super::$case(app).await;
                }
            )*
        }
    };
}

/// Generates, for each named `async fn(TestApp)`, one test per topology: the monolith on SQLite,
/// the monolith on PostgreSQL, the gateway in front of the modules over HTTP and over NATS, and
/// the four layouts of OS processes (`cleave_tests::Layout`) from the preset binaries.
#[macro_export]
macro_rules! topologies {
    ($($case:ident),* $(,)?) => {
        mod monolith_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let app = cleave_tests::spawn_app(cleave_tests::Topology::Monolith(cleave_tests::Database::Sqlite)).await.expect("SQLite needs nothing");
                    super::$case(app).await;
                }
            )*
        }
        mod monolith_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = cleave_tests::spawn_app(cleave_tests::Topology::Monolith(cleave_tests::Database::Postgres)).await else { return };
                    super::$case(app).await;
                }
            )*
        }
        mod extracted_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let app = cleave_tests::spawn_app(cleave_tests::Topology::Extracted(cleave_tests::Database::Sqlite)).await.expect("SQLite needs nothing");
                    super::$case(app).await;
                }
            )*
        }
        mod extracted_over_nats_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = cleave_tests::spawn_app(cleave_tests::Topology::ExtractedOverNats(cleave_tests::Database::Sqlite)).await else { return };
                    super::$case(app).await;
                }
            )*
        }
        $crate::processes!(processes_monolith, Monolith, $($case),*);
        $crate::processes!(processes_services_over_nats, ServicesOverNats, $($case),*);
        $crate::processes!(processes_payments_apart, PaymentsApart, $($case),*);
        $crate::processes!(processes_orders_and_payments_apart, OrdersAndPaymentsApart, $($case),*);
    };
}

/// One module of tests, each case against the OS processes of one `cleave_tests::Layout`.
#[macro_export]
macro_rules! processes {
    ($module:ident, $layout:ident, $($case:ident),* $(,)?) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = cleave_tests::spawn_app(cleave_tests::Topology::Processes(cleave_tests::Layout::$layout)).await else { return };
                    super::$case(app).await;
                }
            )*
        }
    };
}
