//! Database connections: one database per module, even in one process. SQLite gets one file per
//! module under a data directory; PostgreSQL gets one schema per module on one server (or any
//! URL a module is given of its own).

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use std::path::Path;
use std::time::Duration;

/// Where a module's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// `<dir>/<module>.db`, created on first use.
    SqliteDir(std::path::PathBuf),
    /// A full URL for this module alone (`sqlite://…` or `postgres://…`). For PostgreSQL the
    /// module's tables go in a schema named after the module.
    Url(String),
}

/// Connects `module` to its own database, creating the file or schema if needed.
///
/// # Errors
/// When the database cannot be reached or created.
pub async fn connect_module(module: &str, target: &DatabaseTarget, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    match target {
        DatabaseTarget::SqliteDir(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|error| DbErr::Custom(format!("cannot create data directory {}: {error}", dir.display())))?;
            connect_sqlite(&dir.join(format!("{module}.db")), max_connections).await
        }
        DatabaseTarget::Url(url) if url.starts_with("sqlite:") => {
            connect_sqlite(&sqlite_file(module, target).unwrap_or_default(), max_connections).await
        }
        DatabaseTarget::Url(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            connect_postgres_schema(url, module, max_connections).await
        }
        DatabaseTarget::Url(_) => Err(DbErr::Custom("unsupported database URL: use sqlite:// or postgres://".into())),
    }
}

/// The file `module`'s data is in, when `target` is SQLite.
pub fn sqlite_file(module: &str, target: &DatabaseTarget) -> Option<std::path::PathBuf> {
    match target {
        DatabaseTarget::SqliteDir(dir) => Some(dir.join(format!("{module}.db"))),
        DatabaseTarget::Url(url) if url.starts_with("sqlite:") => {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            Some(path.split('?').next().unwrap_or(path).into())
        }
        DatabaseTarget::Url(_) => None,
    }
}

/// Whether `target` already holds a database for `module` (its SQLite file, or its PostgreSQL
/// schema), found without creating either.
///
/// # Errors
/// When the PostgreSQL server cannot be reached.
pub async fn module_exists(module: &str, target: &DatabaseTarget) -> Result<bool, DbErr> {
    if let Some(file) = sqlite_file(module, target) {
        return Ok(file.is_file());
    }
    let DatabaseTarget::Url(url) = target else { return Ok(false) };
    let mut options = ConnectOptions::new(url.clone());
    options.max_connections(1).sqlx_logging(false);
    let connection = Database::connect(options).await?;
    let found = connection
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 AS found FROM information_schema.schemata WHERE schema_name = $1",
            [module.into()],
        ))
        .await?
        .is_some();
    connection.close().await.ok();
    Ok(found)
}

/// SQLite's page cache per connection, in KiB (its default is 2,000). Each module's pool keeps
/// up to `max_connections` connections and each fills its cache as the data grows, so the default
/// let a monolith's memory climb by up to 80 MB under load; the operating system's file cache
/// serves what falls out of this one.
const SQLITE_CACHE_KIB: u32 = 256;

async fn connect_sqlite(path: &Path, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut options = ConnectOptions::new(url);
    options.max_connections(max_connections.max(1)).min_connections(1).acquire_timeout(Duration::from_secs(10)).sqlx_logging(false);
    options.map_sqlx_sqlite_opts(|sqlite| {
        sqlite
            .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
    });
    Database::connect(options).await
}

async fn connect_postgres_schema(url: &str, module: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    if !module.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(DbErr::Custom(format!("module name `{module}` is not a valid schema name")));
    }
    {
        let mut bootstrap = ConnectOptions::new(url.to_owned());
        bootstrap.max_connections(1).sqlx_logging(false);
        let connection = Database::connect(bootstrap).await?;
        connection.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{module}\"")).await?;
        connection.close().await?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections.max(1))
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .set_schema_search_path(module.to_owned())
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Whether the database answers a trivial query (for readiness).
pub async fn ping(connection: &DatabaseConnection) -> bool {
    connection.ping().await.is_ok()
}

/// `result` of an insert, with a duplicate of a unique key as 409 (`detail` says which) and any
/// other failure mapped as every database error is.
///
/// # Errors
/// 409 for a duplicate, else as `From<DbErr>`.
#[track_caller]
pub fn conflict_on_duplicate<T>(result: Result<T, DbErr>, detail: &str) -> Result<T, crate::ApiError> {
    match result {
        Ok(value) => Ok(value),
        Err(error) if matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
            Err(crate::ApiError::conflict(detail))
        }
        Err(error) => Err(error.into()),
    }
}

/// The one mapping of a database failure to the contract error, so every module's use cases
/// write `?`: 503 (with `Retry-After`) when the database cannot be reached or the connection
/// broke, else 500. The detail goes to the log (with the line of the `?` that raised it, and the
/// use case's span), never to the client.
impl From<DbErr> for crate::ApiError {
    #[track_caller]
    fn from(error: DbErr) -> Self {
        use sea_orm::{RuntimeErr, sqlx};
        let at = std::panic::Location::caller();
        let connection_lost = |runtime: &RuntimeErr| matches!(runtime, RuntimeErr::SqlxError(inner) if matches!(inner.as_ref(), sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed));
        let unreachable = match &error {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
            DbErr::Query(runtime) | DbErr::Exec(runtime) => connection_lost(runtime),
            _ => false,
        };
        if unreachable {
            tracing::error!(%error, at = %at, "the database is unreachable");
            crate::ApiError::unavailable("the database is unavailable", 1)
        } else {
            tracing::error!(%error, at = %at, "database error");
            crate::ApiError::Internal
        }
    }
}
