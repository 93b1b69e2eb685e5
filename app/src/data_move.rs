//! `cleave data move <module>`: copies one module's tables — its own, and its outbox, inbox and
//! dead letters — from one database to another: SQLite to PostgreSQL, PostgreSQL to another
//! PostgreSQL, or back.
//!
//! **Nothing half-done.** The target is migrated to this binary's schema first, and the source
//! must be at exactly the same migrations. The source is read in one snapshot (a read-only
//! repeatable-read transaction on PostgreSQL, one read transaction on SQLite), and the whole
//! copy is written in one transaction on the target: the row count and a checksum of every
//! table are computed on both sides, the target's inside its own transaction, and it commits
//! only when every table matches. An interrupted move (a killed process, a lost connection, a
//! failed insert) leaves the target as it was, so running it again is always safe. A target
//! that already holds rows of the module is refused unless `--replace` is given, and then its
//! rows are replaced in the same transaction.
//!
//! The checksum of a table is order-independent (the wrapping sum of each row's SHA-256,
//! truncated to 128 bits) over a rendering of each value that is the same on both databases:
//! integers in decimal, UUIDs hyphenated, timestamps in RFC 3339 with microseconds (what
//! PostgreSQL keeps), text as is, NULL as a marker of its own.
//!
//! One algorithm in one file (over 400 lines on purpose): discovering the tables, copying them in
//! one transaction and verifying the copy are steps of one procedure that read best in order.

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use sea_orm::sea_query::{Alias, Query, Value};
use sea_orm::{AccessMode, ConnectionTrait, DatabaseConnection, DbBackend, IsolationLevel, QueryResult, Statement, TransactionTrait};
use sha2::{Digest as _, Sha256};
use shared_kernel::db::DatabaseTarget;
use std::collections::{BTreeMap, BTreeSet};

/// The table sea-orm records applied migrations in: migrated on the target, compared, not copied.
const MIGRATIONS_TABLE: &str = "seaql_migrations";
/// Rows per insert statement.
const BATCH: usize = 200;

/// One table as it was moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    /// 32 hex digits.
    pub checksum: String,
}

/// Moves module `name`'s tables from `from` to `to` (see the module documentation); `migrate`
/// brings a database to this binary's schema. `progress` hears one line per step.
///
/// # Errors
/// Either database cannot be reached; the source is not at this binary's migrations; the target
/// holds rows and `replace` is false; a value does not fit the target's column; the checksums
/// differ. The target is unchanged in every case.
pub async fn move_module(
    name: &str,
    migrate: fn(DatabaseConnection) -> futures::future::BoxFuture<'static, Result<(), sea_orm::DbErr>>,
    from: &DatabaseTarget,
    to: &DatabaseTarget,
    replace: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<TableReport>> {
    // A source that is not there is an error, never an empty database made on the spot.
    let found = shared_kernel::db::module_exists(name, from).await.with_context(|| format!("cannot open the source {name} database"))?;
    ensure!(found, "the source holds no {name} schema (no such file, or no `{name}` schema on the server): is it the right database?");
    let source =
        shared_kernel::db::connect_module(name, from, 1).await.with_context(|| format!("cannot open the source {name} database"))?;
    let target = shared_kernel::db::connect_module(name, to, 1).await.with_context(|| format!("cannot open the target {name} database"))?;
    let source_migrations = applied_migrations(&source)
        .await
        .with_context(|| format!("the source holds no {name} schema (no migrations table): is it the right database?"))?;
    migrate(target.clone()).await.with_context(|| format!("cannot migrate the target {name} database"))?;
    let target_migrations = applied_migrations(&target).await?;
    if source_migrations != target_migrations {
        let missing: Vec<&String> = target_migrations.difference(&source_migrations).collect();
        let unknown: Vec<&String> = source_migrations.difference(&target_migrations).collect();
        if !unknown.is_empty() {
            bail!("the source has migrations this binary does not know ({unknown:?}): move it with the binary that wrote it");
        }
        bail!("the source lacks migrations {missing:?}: run `cleave migrate` against it first");
    }
    let source_schema = schema(&source).await?;
    let target_schema = schema(&target).await?;
    let names: BTreeSet<&String> = source_schema.tables.keys().collect();
    ensure!(
        names == target_schema.tables.keys().collect(),
        "the two databases hold different tables for {name}: {:?} and {:?}",
        source_schema.tables.keys().collect::<Vec<_>>(),
        target_schema.tables.keys().collect::<Vec<_>>()
    );
    let order = target_schema.insert_order()?;

    let reading = match backend(&source) {
        DbBackend::Postgres => source.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?,
        _ => source.begin().await?,
    };
    let writing = target.begin().await?;
    for table in &order {
        let rows = count(&writing, table).await?;
        if rows > 0 && !replace {
            bail!("the target already holds {rows} rows in {name}'s table `{table}`: nothing was copied (pass --replace to overwrite it)");
        }
    }
    if replace {
        // Children before their parents.
        for table in order.iter().rev() {
            writing.execute_unprepared(&format!("DELETE FROM {}", quoted(table))).await?;
        }
    }
    let mut reports = Vec::with_capacity(order.len());
    for table in &order {
        let columns = &target_schema.tables[table];
        let source_columns = &source_schema.tables[table];
        ensure!(
            columns.iter().map(|c| &c.name).eq(source_columns.iter().map(|c| &c.name)),
            "`{table}` has other columns in the source than in the target"
        );
        let copied = copy_table(&reading, &writing, table, source_columns, columns).await?;
        let written = digest_table(&writing, table, columns).await?;
        ensure!(
            copied == written,
            "`{table}` does not read back as it was written ({} rows, checksum {} from the source; {} rows, checksum {} in the target): nothing was committed",
            copied.rows,
            copied.hex(),
            written.rows,
            written.hex()
        );
        progress(&format!("{name}.{table}: {} rows, checksum {} (source and target agree)", copied.rows, copied.hex()));
        reports.push(TableReport { table: table.clone(), rows: copied.rows, checksum: copied.hex() });
    }
    if backend(&writing) == DbBackend::Postgres {
        reset_sequences(&writing, &target_schema).await?;
    }
    writing.commit().await.context("cannot commit the copy: nothing was moved")?;
    reading.rollback().await.ok();
    Ok(reports)
}

/// The kinds of value the module tables hold (every column type the migrations use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    I32,
    I64,
    Bool,
    Text,
    Uuid,
    Timestamp,
    Bytes,
    F64,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    /// An identity or serial column, whose sequence must follow the copied values.
    serial: bool,
}

/// A database's tables for one module (the migrations table aside), and which table each
/// refers to.
struct Schema {
    tables: BTreeMap<String, Vec<Column>>,
    parents: BTreeMap<String, BTreeSet<String>>,
}

impl Schema {
    /// Every table after the tables it refers to.
    fn insert_order(&self) -> anyhow::Result<Vec<String>> {
        let mut order: Vec<String> = Vec::new();
        let mut left: BTreeSet<&String> = self.tables.keys().collect();
        while !left.is_empty() {
            let ready: Vec<&String> = left
                .iter()
                .copied()
                .filter(|table| self.parents.get(*table).is_none_or(|parents| parents.iter().all(|p| p == *table || order.contains(p))))
                .collect();
            ensure!(!ready.is_empty(), "the tables {left:?} refer to each other in a cycle: they cannot be copied one after another");
            for table in ready {
                left.remove(table);
                order.push(table.clone());
            }
        }
        Ok(order)
    }
}

async fn schema(db: &DatabaseConnection) -> anyhow::Result<Schema> {
    let backend = self::backend(db);
    let mut tables = BTreeMap::new();
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match backend {
        DbBackend::Postgres => {
            let rows = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT table_name::text AS name FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                ))
                .await?;
            for row in rows {
                let table: String = row.try_get("", "name")?;
                if table == MIGRATIONS_TABLE {
                    continue;
                }
                let columns = db
                    .query_all_raw(Statement::from_sql_and_values(
                        backend,
                        "SELECT column_name::text AS name, data_type::text AS type, \
                         (column_default LIKE 'nextval(%' OR is_identity = 'YES') AS serial \
                         FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 \
                         ORDER BY ordinal_position",
                        [table.clone().into()],
                    ))
                    .await?;
                let columns = columns
                    .iter()
                    .map(|column| {
                        let name: String = column.try_get("", "name")?;
                        let declared: String = column.try_get("", "type")?;
                        let serial: Option<bool> = column.try_get("", "serial")?;
                        Ok(Column { kind: kind(backend, &table, &name, &declared)?, name, serial: serial.unwrap_or(false) })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                tables.insert(table, columns);
            }
            let references = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT DISTINCT tc.table_name::text AS child, ccu.table_name::text AS parent \
                     FROM information_schema.table_constraints tc \
                     JOIN information_schema.constraint_column_usage ccu \
                       ON tc.constraint_name = ccu.constraint_name AND tc.constraint_schema = ccu.constraint_schema \
                     WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()",
                ))
                .await?;
            for reference in references {
                parents.entry(reference.try_get("", "child")?).or_default().insert(reference.try_get("", "parent")?);
            }
        }
        DbBackend::Sqlite => {
            let rows = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                ))
                .await?;
            for row in rows {
                let table: String = row.try_get("", "name")?;
                if table == MIGRATIONS_TABLE {
                    continue;
                }
                let info = db.query_all_raw(Statement::from_string(backend, format!("PRAGMA table_info({})", quoted(&table)))).await?;
                let columns = info
                    .iter()
                    .map(|column| {
                        let name: String = column.try_get("", "name")?;
                        let declared: String = column.try_get("", "type")?;
                        Ok(Column { kind: kind(backend, &table, &name, &declared)?, name, serial: false })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let keys =
                    db.query_all_raw(Statement::from_string(backend, format!("PRAGMA foreign_key_list({})", quoted(&table)))).await?;
                for key in keys {
                    parents.entry(table.clone()).or_default().insert(key.try_get("", "table")?);
                }
                tables.insert(table, columns);
            }
        }
        other => bail!("{other:?} databases are not supported"),
    }
    Ok(Schema { tables, parents })
}

/// A column's kind from the type its database declares (PostgreSQL's `data_type`, or the
/// declared type sea-orm's migrations give SQLite).
fn kind(backend: DbBackend, table: &str, column: &str, declared: &str) -> anyhow::Result<Kind> {
    let declared = declared.to_ascii_lowercase();
    Ok(match declared.as_str() {
        // PostgreSQL's `integer` is 4 bytes; SQLite's one integer type is 8.
        "integer" if backend == DbBackend::Postgres => Kind::I32,
        "integer" => Kind::I64,
        "uuid" | "uuid_text" => Kind::Uuid,
        "bigint" | "int8" => Kind::I64,
        "int" | "int4" | "smallint" | "int2" => Kind::I32,
        "boolean" | "bool" => Kind::Bool,
        "text" | "character varying" | "character" | "varchar" => Kind::Text,
        "timestamp with time zone" | "timestamp_with_timezone_text" | "timestamptz" => Kind::Timestamp,
        "bytea" | "blob" => Kind::Bytes,
        "double precision" | "double" | "real" | "float" => Kind::F64,
        other if other.starts_with("varchar") || other.starts_with("char") => Kind::Text,
        other if other.starts_with("blob") || other.starts_with("varbinary") => Kind::Bytes,
        other => bail!("`{table}.{column}` has a type the move does not know: `{other}`"),
    })
}

/// A value read from one database, in the form written to the other.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Uuid(uuid::Uuid),
    Timestamp(DateTime<Utc>),
    Bytes(Vec<u8>),
    F64(f64),
}

impl Cell {
    fn read(row: &QueryResult, index: usize, kind: Kind) -> Result<Self, sea_orm::DbErr> {
        fn or_null<T>(value: Option<T>, cell: impl FnOnce(T) -> Cell) -> Cell {
            value.map_or(Cell::Null, cell)
        }
        Ok(match kind {
            Kind::I32 => or_null(row.try_get_by_index::<Option<i32>>(index)?, |v| Cell::Int(i64::from(v))),
            Kind::I64 => or_null(row.try_get_by_index::<Option<i64>>(index)?, Cell::Int),
            Kind::Bool => or_null(row.try_get_by_index::<Option<bool>>(index)?, Cell::Bool),
            Kind::Text => or_null(row.try_get_by_index::<Option<String>>(index)?, Cell::Text),
            Kind::Uuid => or_null(row.try_get_by_index::<Option<uuid::Uuid>>(index)?, Cell::Uuid),
            Kind::Timestamp => or_null(row.try_get_by_index::<Option<DateTime<Utc>>>(index)?, Cell::Timestamp),
            Kind::Bytes => or_null(row.try_get_by_index::<Option<Vec<u8>>>(index)?, Cell::Bytes),
            Kind::F64 => or_null(row.try_get_by_index::<Option<f64>>(index)?, Cell::F64),
        })
    }

    /// As a value for a column of `kind`.
    fn value(&self, kind: Kind, at: &str) -> anyhow::Result<Value> {
        Ok(match (self, kind) {
            (Self::Null, Kind::I32) => Value::Int(None),
            (Self::Null, Kind::I64) => Value::BigInt(None),
            (Self::Null, Kind::Bool) => Value::Bool(None),
            (Self::Null, Kind::Text) => Value::String(None),
            (Self::Null, Kind::Uuid) => Value::Uuid(None),
            (Self::Null, Kind::Timestamp) => Value::ChronoDateTimeUtc(None),
            (Self::Null, Kind::Bytes) => Value::Bytes(None),
            (Self::Null, Kind::F64) => Value::Double(None),
            (Self::Int(v), Kind::I32) => {
                Value::Int(Some(i32::try_from(*v).with_context(|| format!("{at}: {v} does not fit a 4-byte integer"))?))
            }
            (Self::Int(v), Kind::I64) => Value::BigInt(Some(*v)),
            (Self::Bool(v), Kind::Bool) => Value::Bool(Some(*v)),
            (Self::Text(v), Kind::Text) => Value::String(Some(v.clone())),
            (Self::Uuid(v), Kind::Uuid) => Value::Uuid(Some(*v)),
            (Self::Timestamp(v), Kind::Timestamp) => Value::ChronoDateTimeUtc(Some(*v)),
            (Self::Bytes(v), Kind::Bytes) => Value::Bytes(Some(v.clone())),
            (Self::F64(v), Kind::F64) => Value::Double(Some(*v)),
            (cell, kind) => bail!("{at}: a {cell:?} cannot go in a {kind:?} column"),
        })
    }

    /// The rendering the checksum hashes: the same for the same value on either database.
    fn render(&self, out: &mut Vec<u8>) {
        match self {
            Self::Null => out.extend_from_slice(b"\x00null"),
            Self::Int(v) => out.extend_from_slice(v.to_string().as_bytes()),
            Self::Bool(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
            Self::Text(v) => out.extend_from_slice(v.as_bytes()),
            Self::Uuid(v) => out.extend_from_slice(v.hyphenated().to_string().as_bytes()),
            Self::Timestamp(v) => out.extend_from_slice(v.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes()),
            Self::Bytes(v) => out.extend(v.iter().flat_map(|b| format!("{b:02x}").into_bytes())),
            Self::F64(v) => out.extend_from_slice(v.to_string().as_bytes()),
        }
        // A separator no rendering holds, so ("ab", "c") and ("a", "bc") differ.
        out.push(0x1f);
    }
}

/// A table's row count and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Digest {
    rows: u64,
    sum: u128,
}

impl Digest {
    fn add(&mut self, row: &[Cell]) {
        let mut rendered = Vec::with_capacity(128);
        for cell in row {
            cell.render(&mut rendered);
        }
        let hash = Sha256::digest(&rendered);
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.rows += 1;
    }

    fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

fn select_all(table: &str, columns: &[Column]) -> String {
    let list: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
    format!("SELECT {} FROM {}", list.join(", "), quoted(table))
}

/// Streams `table` out of `reading` into `writing` in batches; the source's digest.
async fn copy_table(
    reading: &sea_orm::DatabaseTransaction,
    writing: &sea_orm::DatabaseTransaction,
    table: &str,
    source_columns: &[Column],
    columns: &[Column],
) -> anyhow::Result<Digest> {
    let mut digest = Digest::default();
    let mut rows =
        sea_orm::StreamTrait::stream_raw(reading, Statement::from_string(backend(reading), select_all(table, source_columns))).await?;
    let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(BATCH);
    while let Some(row) = rows.next().await {
        let cells = row_cells(&row?, source_columns).with_context(|| format!("cannot read a row of `{table}`"))?;
        digest.add(&cells);
        batch.push(cells);
        if batch.len() == BATCH {
            insert(writing, table, columns, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        insert(writing, table, columns, &batch).await?;
    }
    Ok(digest)
}

async fn insert(writing: &sea_orm::DatabaseTransaction, table: &str, columns: &[Column], rows: &[Vec<Cell>]) -> anyhow::Result<()> {
    let mut statement = Query::insert();
    statement.into_table(Alias::new(table)).columns(columns.iter().map(|c| Alias::new(&c.name)));
    for row in rows {
        let values = row
            .iter()
            .zip(columns)
            .map(|(cell, column)| cell.value(column.kind, &format!("{table}.{}", column.name)).map(Into::into))
            .collect::<anyhow::Result<Vec<sea_orm::sea_query::SimpleExpr>>>()?;
        statement.values(values).with_context(|| format!("a row of `{table}` does not match its columns"))?;
    }
    writing.execute(&statement).await.with_context(|| format!("cannot write rows of `{table}` to the target"))?;
    Ok(())
}

/// The digest of `table` as `db` holds it now.
async fn digest_table(db: &sea_orm::DatabaseTransaction, table: &str, columns: &[Column]) -> anyhow::Result<Digest> {
    let mut digest = Digest::default();
    let mut rows = sea_orm::StreamTrait::stream_raw(db, Statement::from_string(backend(db), select_all(table, columns))).await?;
    while let Some(row) = rows.next().await {
        digest.add(&row_cells(&row?, columns).with_context(|| format!("cannot read back a row of `{table}`"))?);
    }
    Ok(digest)
}

/// A row of a `SELECT` of `columns` (as [`select_all`] lists them), each value as its kind.
fn row_cells(row: &QueryResult, columns: &[Column]) -> Result<Vec<Cell>, sea_orm::DbErr> {
    columns.iter().enumerate().map(|(index, column)| Cell::read(row, index, column.kind)).collect()
}

async fn count(db: &sea_orm::DatabaseTransaction, table: &str) -> anyhow::Result<i64> {
    let statement = Statement::from_string(backend(db), format!("SELECT COUNT(*) AS n FROM {}", quoted(table)));
    let row = db.query_one_raw(statement).await?.context("COUNT(*) answered no row")?;
    Ok(row.try_get("", "n")?)
}

/// Moves every serial column's sequence past the highest value copied, so the next row the
/// module writes gets a fresh one.
async fn reset_sequences(db: &sea_orm::DatabaseTransaction, schema: &Schema) -> anyhow::Result<()> {
    for (table, columns) in &schema.tables {
        for column in columns.iter().filter(|column| column.serial) {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{name}'), COALESCE((SELECT MAX({quoted}) FROM {t}), 0) + 1, false)",
                name = column.name,
                quoted = quoted(&column.name),
                t = quoted(table)
            );
            db.execute_unprepared(&sql).await.with_context(|| format!("cannot move the sequence of `{table}.{}`", column.name))?;
        }
    }
    Ok(())
}

async fn applied_migrations(db: &DatabaseConnection) -> anyhow::Result<BTreeSet<String>> {
    let statement = Statement::from_string(backend(db), format!("SELECT version FROM {}", quoted(MIGRATIONS_TABLE)));
    let rows = db.query_all_raw(statement).await?;
    rows.iter().map(|row| Ok(row.try_get::<String>("", "version")?)).collect()
}

fn backend(db: &impl ConnectionTrait) -> DbBackend {
    ConnectionTrait::get_database_backend(db)
}

/// An identifier in double quotes (both databases), with any quote in it doubled.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_ignores_row_order_and_sees_every_value() {
        let a = vec![Cell::Int(1), Cell::Text("ab".into()), Cell::Null];
        let b = vec![Cell::Int(2), Cell::Text("c".into()), Cell::Bool(true)];
        let (mut one, mut other) = (Digest::default(), Digest::default());
        one.add(&a);
        one.add(&b);
        other.add(&b);
        other.add(&a);
        assert_eq!(one, other);
        let mut shifted = Digest::default();
        shifted.add(&[Cell::Int(1), Cell::Text("a".into()), Cell::Null]);
        shifted.add(&b);
        assert_ne!(one, shifted, "a value that changed changes the checksum");
        let mut empty_text = Digest::default();
        empty_text.add(&[Cell::Int(1), Cell::Text(String::new()), Cell::Null]);
        let mut null_text = Digest::default();
        null_text.add(&[Cell::Int(1), Cell::Null, Cell::Null]);
        assert_ne!(empty_text, null_text, "NULL is not the empty string");
    }

    #[test]
    fn tables_are_copied_after_the_tables_they_refer_to() {
        let column = || vec![Column { name: "id".into(), kind: Kind::Uuid, serial: false }];
        let tables = ["order_items", "orders", "idempotency_keys", "outbox_events"].map(|t| (t.to_owned(), column())).into();
        let parents = [("order_items", "orders"), ("idempotency_keys", "orders")]
            .map(|(child, parent)| (child.to_owned(), BTreeSet::from([parent.to_owned()])))
            .into();
        let order = Schema { tables, parents }.insert_order().unwrap();
        let at = |table: &str| order.iter().position(|t| t == table).unwrap();
        assert!(at("orders") < at("order_items") && at("orders") < at("idempotency_keys"), "{order:?}");
    }

    #[test]
    fn the_column_types_of_both_databases_are_known() {
        let (sqlite, postgres) = (DbBackend::Sqlite, DbBackend::Postgres);
        assert_eq!(kind(sqlite, "t", "c", "uuid_text").unwrap(), Kind::Uuid);
        assert_eq!(kind(postgres, "t", "c", "uuid").unwrap(), Kind::Uuid);
        assert_eq!(kind(sqlite, "t", "c", "timestamp_with_timezone_text").unwrap(), Kind::Timestamp);
        assert_eq!(kind(postgres, "t", "c", "timestamp with time zone").unwrap(), Kind::Timestamp);
        assert_eq!(kind(sqlite, "t", "c", "varchar(200)").unwrap(), Kind::Text);
        assert_eq!(kind(postgres, "t", "c", "character varying").unwrap(), Kind::Text);
        assert_eq!(kind(sqlite, "t", "c", "integer").unwrap(), Kind::I64);
        assert_eq!(kind(postgres, "t", "c", "integer").unwrap(), Kind::I32);
        assert_eq!(kind(postgres, "t", "c", "bigint").unwrap(), Kind::I64);
        assert!(kind(postgres, "t", "c", "interval").unwrap_err().to_string().contains("`t.c`"));
    }
}
