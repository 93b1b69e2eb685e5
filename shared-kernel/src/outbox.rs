//! The transactional outbox, its relay, the consumer inbox and the dead-letter store: the event
//! machinery every module's database carries (tables `outbox_events`, `inbox_events`,
//! `dead_letters`, created by each module's migrator).
//!
//! - A use case publishes only through a [`UnitOfWork`]: the event row is written in the same
//!   transaction as the state change, so there are no lost and no phantom events. There is no
//!   other way to append to the outbox.
//! - A [`Relay`] per module reads undelivered rows in sequence order, publishes each to the bus
//!   and marks it delivered. It wakes at once after a commit in this process (and, on
//!   PostgreSQL, after a commit in any process, through `LISTEN/NOTIFY`); a slow poll is only a
//!   fallback. After a restart it simply finds what was committed and not yet delivered.
//! - A consumer's handler starts its transaction with [`Inbox::begin`], which records the event
//!   id in the consumer's own database in that same transaction: a redelivery is skipped.

use crate::events::{Attempt, DeadLetterSink, EventBus, EventEnvelope, IntegrationEvent};
use crate::{ApiError, Page, PageRequest, RequestContext};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

mod outbox_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        pub event_id: Uuid,
        pub event_type: String,
        pub aggregate_id: String,
        pub envelope: String,
        pub created_at: DateTimeUtc,
        pub delivered_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod inbox_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: Uuid,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod dead_letters {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub consumer: String,
        pub event_id: Uuid,
        pub event_type: String,
        pub envelope: String,
        pub attempts: String,
        pub status: String,
        pub created_at: DateTimeUtc,
        pub resolved_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A module's outbox: where its unit of work appends and what wakes its relay.
#[derive(Debug, Clone)]
pub struct Outbox {
    module: &'static str,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(module: &'static str) -> Self {
        Self { module, wake: Arc::new(Notify::new()) }
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    fn channel(&self) -> String {
        format!("cleave_outbox_{}", self.module)
    }
}

/// A transaction that may publish events. Publish and change state through it, then
/// [`UnitOfWork::commit`]: the events become visible to the relay exactly when the change does.
/// Dropping it without committing rolls both back.
///
/// To keep events of one aggregate in commit order, change (and so lock) the aggregate's row
/// before publishing its event in the same unit of work.
pub struct UnitOfWork {
    transaction: DatabaseTransaction,
    outbox: Outbox,
    published: usize,
}

impl std::ops::Deref for UnitOfWork {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

impl UnitOfWork {
    /// # Errors
    /// When the transaction cannot begin.
    pub async fn begin(db: &DatabaseConnection, outbox: &Outbox) -> Result<Self, DbErr> {
        Ok(Self { transaction: db.begin().await?, outbox: outbox.clone(), published: 0 })
    }

    /// Appends `event` to the outbox in this transaction.
    ///
    /// # Errors
    /// A database error, or an event that does not serialize.
    pub async fn publish<E: IntegrationEvent>(
        &mut self,
        event: &E,
        occurred_at: DateTime<Utc>,
        context: Option<&RequestContext>,
    ) -> Result<Uuid, DbErr> {
        let envelope = EventEnvelope::wrap(event, occurred_at, context).map_err(|error| DbErr::Custom(error.to_string()))?;
        self.publish_envelope(&envelope).await?;
        Ok(envelope.id)
    }

    async fn publish_envelope(&mut self, envelope: &EventEnvelope) -> Result<(), DbErr> {
        let json = serde_json::to_string(envelope).map_err(|error| DbErr::Custom(error.to_string()))?;
        outbox_events::ActiveModel {
            event_id: Set(envelope.id),
            event_type: Set(envelope.event_type.clone()),
            aggregate_id: Set(envelope.aggregate_id.clone()),
            envelope: Set(json),
            created_at: Set(Utc::now()),
            delivered_at: Set(None),
            ..Default::default()
        }
        .insert(&self.transaction)
        .await?;
        if self.published == 0 && self.transaction.get_database_backend() == DbBackend::Postgres {
            // Transactional: delivered to listeners (relays in any process) only at commit.
            self.transaction.execute_unprepared(&format!("NOTIFY {}", self.outbox.channel())).await?;
        }
        self.published += 1;
        Ok(())
    }

    /// Commits the change and its events, then wakes the relay.
    ///
    /// # Errors
    /// When the commit fails (nothing was changed or published).
    pub async fn commit(self) -> Result<(), DbErr> {
        self.transaction.commit().await?;
        if self.published > 0 {
            self.outbox.wake.notify_one();
        }
        Ok(())
    }
}

/// Delivers a module's committed events to the bus, in sequence order.
pub struct Relay {
    db: DatabaseConnection,
    outbox: Outbox,
    bus: Arc<dyn EventBus>,
    batch_size: u64,
    poll_interval: Duration,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("module", &self.outbox.module).finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(db: DatabaseConnection, outbox: Outbox, bus: Arc<dyn EventBus>) -> Self {
        Self { db, outbox, bus, batch_size: 100, poll_interval: Duration::from_secs(1) }
    }

    /// The fallback poll (a commit normally wakes the relay at once).
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Publishes up to one batch of undelivered events, oldest first, and returns how many were
    /// delivered. Stops at the first event the bus refuses, so order is kept: that one is
    /// first again next time. No transaction is held while handlers run.
    ///
    /// One relay per module database at a time: [`Relay::run`] makes sure of it (on PostgreSQL
    /// through leadership, see there); call this directly only where nothing else relays.
    ///
    /// # Errors
    /// The database or the bus is unavailable.
    pub async fn deliver_batch(&self) -> Result<usize, RelayError> {
        self.deliver_rows(&self.db).await
    }

    async fn deliver_rows(&self, connection: &impl ConnectionTrait) -> Result<usize, RelayError> {
        let rows = outbox_events::Entity::find()
            .filter(outbox_events::Column::DeliveredAt.is_null())
            .order_by_asc(outbox_events::Column::Seq)
            .limit(self.batch_size)
            .all(connection)
            .await?;
        let mut published = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            match serde_json::from_str::<EventEnvelope>(&row.envelope) {
                Ok(envelope) => {
                    if let Err(error) = self.bus.publish(&envelope).await {
                        failure = Some(RelayError::Bus(error.to_string()));
                        break;
                    }
                }
                // Only a bug writes an unreadable row; skipping it beats blocking every later event.
                Err(error) => tracing::error!(module = self.outbox.module, seq = row.seq, %error, "skipping an unreadable outbox row"),
            }
            published.push(row);
        }
        // One write marks the whole batch (a crash before it only means those events are sent
        // again, which consumers absorb); then the failure, if any, is reported.
        if !published.is_empty() {
            let now = Utc::now();
            outbox_events::Entity::update_many()
                .col_expr(outbox_events::Column::DeliveredAt, Expr::value(now))
                .filter(outbox_events::Column::Seq.is_in(published.iter().map(|row| row.seq)))
                .exec(connection)
                .await?;
            for row in &published {
                let lag = (now - row.created_at).to_std().unwrap_or_default();
                metrics::histogram!("outbox_delivery_lag_seconds", "module" => self.outbox.module).record(lag.as_secs_f64());
            }
            metrics::counter!("outbox_delivered_total", "module" => self.outbox.module).increment(published.len() as u64);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(published.len()),
        }
    }

    /// Undelivered events right now.
    ///
    /// # Errors
    /// The database is unavailable.
    pub async fn backlog(&self) -> Result<u64, RelayError> {
        Ok(outbox_events::Entity::find().filter(outbox_events::Column::DeliveredAt.is_null()).count(&self.db).await?)
    }

    /// Delivers until `stop` turns true: a batch whenever woken, polling as a fallback, backing
    /// off while the database or the bus is down.
    ///
    /// On PostgreSQL, several replicas of a module share one database: a relay delivers only
    /// while it is the leader, holding a session advisory lock on a connection of its own (no
    /// transaction stays open). If that connection dies, the lock goes with it and another
    /// replica's relay takes over; meanwhile this one tries again at each poll.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let listener = self.listen_for_commits_elsewhere().await;
        let postgres = self.db.get_database_backend() == DbBackend::Postgres;
        let mut leadership: Option<sea_orm::sqlx::postgres::PgConnection> = None;
        let mut failures: u32 = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            if postgres && !Self::still_leading(&mut leadership).await {
                leadership = self.try_to_lead().await;
                if leadership.is_none() {
                    tokio::select! {
                        () = tokio::time::sleep(self.poll_interval) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                tracing::info!(module = self.outbox.module, "this process now relays the outbox");
            }
            // Register interest before looking, so a commit between the look and the wait
            // still wakes us.
            let woken = self.outbox.wake.notified();
            // Stopping abandons a batch in flight (a handler still retrying, say): what it did
            // not mark delivered is sent again after the restart, and inboxes absorb repeats.
            let outcome = tokio::select! {
                outcome = self.deliver_batch() => outcome,
                _ = stop.changed() => break,
            };
            // Measured on failures too: that is when the backlog grows.
            if let Ok(backlog) = self.backlog().await {
                metrics::gauge!("outbox_backlog", "module" => self.outbox.module).set(backlog as f64);
            }
            let wait = match outcome {
                Ok(count) => {
                    failures = 0;
                    if count > 0 { Duration::ZERO } else { self.poll_interval }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(module = self.outbox.module, %error, "outbox relay failed; retrying");
                    Duration::from_millis((100u64 << failures.min(6)).min(5_000))
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        if let Some(listener) = listener {
            listener.abort();
        }
    }

    /// Takes the module's relay lock on a new dedicated connection, if no other relay holds it.
    async fn try_to_lead(&self) -> Option<sea_orm::sqlx::postgres::PgConnection> {
        use sea_orm::sqlx::Connection as _;
        let options = self.db.get_postgres_connection_pool().connect_options();
        let mut connection = sea_orm::sqlx::postgres::PgConnection::connect_with(&options).await.ok()?;
        let locked: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(self.outbox.channel())
            .fetch_one(&mut connection)
            .await
            .ok()?;
        if locked {
            Some(connection)
        } else {
            let _ = connection.close().await;
            None
        }
    }

    /// Whether the leadership connection still answers (its lock lives as long as it does).
    async fn still_leading(leadership: &mut Option<sea_orm::sqlx::postgres::PgConnection>) -> bool {
        match leadership {
            Some(connection) => sea_orm::sqlx::query("SELECT 1").execute(connection).await.is_ok(),
            None => false,
        }
    }

    /// On PostgreSQL, a task turning `NOTIFY` from commits in any process into a wake-up.
    async fn listen_for_commits_elsewhere(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return None;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        let channel = self.outbox.channel();
        let wake = self.outbox.wake.clone();
        Some(tokio::spawn(async move {
            loop {
                if let Ok(mut listener) = sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await
                    && listener.listen(&channel).await.is_ok()
                {
                    // Whatever was committed while we were not listening, the poll finds.
                    wake.notify_one();
                    while listener.recv().await.is_ok() {
                        wake.notify_one();
                    }
                }
                // Lost the connection: the poll covers the gap; reconnect soon.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("bus: {0}")]
    Bus(String),
}

/// A consumer's record of the events it has processed, in its own database.
#[derive(Debug, Clone, Copy)]
pub struct Inbox;

impl Inbox {
    /// Begins the handler's transaction with `event_id` recorded as processed by `consumer`.
    /// `None` means it was processed before: skip it. Commit the returned transaction together
    /// with the handler's effects; if the handler fails, dropping it forgets the record too.
    ///
    /// # Errors
    /// The database is unavailable.
    pub async fn begin(db: &DatabaseConnection, consumer: &str, event_id: Uuid) -> Result<Option<DatabaseTransaction>, DbErr> {
        let transaction = db.begin().await?;
        let inserted = inbox_events::Entity::insert(inbox_events::ActiveModel {
            consumer: Set(consumer.to_owned()),
            event_id: Set(event_id),
            processed_at: Set(Utc::now()),
        })
        .on_conflict(OnConflict::columns([inbox_events::Column::Consumer, inbox_events::Column::EventId]).do_nothing().to_owned())
        .exec_without_returning(&transaction)
        .await?;
        if inserted == 0 {
            transaction.rollback().await?;
            return Ok(None);
        }
        Ok(Some(transaction))
    }
}

/// A dead letter as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// The module whose consumer gave up.
    pub module: String,
    pub consumer: String,
    #[schema(value_type = Object)]
    pub event: EventEnvelope,
    /// Every failed attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// `pending`, `replayed` or `discarded`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The dead letters of the consumers of one module, in that module's database.
#[derive(Debug, Clone)]
pub struct DeadLetterStore {
    db: DatabaseConnection,
    module: &'static str,
}

impl DeadLetterStore {
    pub fn new(db: DatabaseConnection, module: &'static str) -> Self {
        Self { db, module }
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    /// Pending dead letters, oldest first; resolved ones (replayed, discarded) stay in the table
    /// as an audit trail and show with `include_resolved`.
    ///
    /// # Errors
    /// The database is unavailable, or a foreign cursor.
    pub async fn list(&self, page: &PageRequest, include_resolved: bool) -> Result<Page<DeadLetter>, ApiError> {
        let rows = self.list_overfetched(page, include_resolved).await?;
        Ok(Page::from_overfetched(rows, page.limit(), |row| row.id.to_string()))
    }

    /// Up to `limit + 1` rows after the cursor, in id order: for merging the stores of several
    /// modules into one page (the extra row says whether more exist).
    ///
    /// # Errors
    /// The database is unavailable, or a foreign cursor.
    pub async fn list_overfetched(&self, page: &PageRequest, include_resolved: bool) -> Result<Vec<DeadLetter>, ApiError> {
        let mut query = dead_letters::Entity::find().order_by_asc(dead_letters::Column::Id).limit(u64::from(page.limit()) + 1);
        if !include_resolved {
            query = query.filter(dead_letters::Column::Status.eq("pending"));
        }
        if let Some(after) = page.after_key()? {
            let after = Uuid::parse_str(&after).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
            query = query.filter(dead_letters::Column::Id.gt(after));
        }
        let rows = query.all(&self.db).await.map_err(unavailable)?;
        Ok(rows.into_iter().filter_map(|row| self.view(row)).collect())
    }

    /// # Errors
    /// 404 for an unknown id.
    pub async fn get(&self, id: Uuid) -> Result<DeadLetter, ApiError> {
        let row = dead_letters::Entity::find_by_id(id).one(&self.db).await.map_err(unavailable)?;
        row.and_then(|row| self.view(row)).ok_or_else(|| ApiError::not_found("dead letter not found"))
    }

    /// Marks a pending dead letter resolved (`replayed` or `discarded`); 404 if there is none,
    /// 409 if it was already resolved.
    ///
    /// # Errors
    /// As above.
    pub async fn resolve(&self, id: Uuid, status: &str) -> Result<(), ApiError> {
        let updated = dead_letters::Entity::update_many()
            .col_expr(dead_letters::Column::Status, Expr::value(status))
            .col_expr(dead_letters::Column::ResolvedAt, Expr::value(Utc::now()))
            .filter(dead_letters::Column::Id.eq(id))
            .filter(dead_letters::Column::Status.eq("pending"))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        if updated.rows_affected == 1 {
            return Ok(());
        }
        self.get(id).await?;
        Err(ApiError::conflict("this dead letter was already replayed or discarded"))
    }

    /// Puts a replayed dead letter back to pending (its replay could not be delivered).
    ///
    /// # Errors
    /// The database is unavailable.
    pub async fn reopen(&self, id: Uuid) -> Result<(), ApiError> {
        dead_letters::Entity::update_many()
            .col_expr(dead_letters::Column::Status, Expr::value("pending"))
            .col_expr(dead_letters::Column::ResolvedAt, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(dead_letters::Column::Id.eq(id))
            .filter(dead_letters::Column::Status.eq("replayed"))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn view(&self, row: dead_letters::Model) -> Option<DeadLetter> {
        let event = serde_json::from_str(&row.envelope).ok()?;
        let attempts = serde_json::from_str(&row.attempts).unwrap_or_default();
        Some(DeadLetter {
            id: row.id,
            module: self.module.to_owned(),
            consumer: row.consumer,
            event,
            attempts,
            status: row.status,
            created_at: row.created_at,
            resolved_at: row.resolved_at,
        })
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for DeadLetterStore {
    async fn dead_letter(&self, consumer: &str, event: &EventEnvelope, attempts: &[Attempt]) -> Result<(), String> {
        let envelope = serde_json::to_string(event).map_err(|e| e.to_string())?;
        let attempts = serde_json::to_string(attempts).map_err(|e| e.to_string())?;
        dead_letters::ActiveModel {
            id: Set(Uuid::now_v7()),
            consumer: Set(consumer.to_owned()),
            event_id: Set(event.id),
            event_type: Set(event.event_type.clone()),
            envelope: Set(envelope),
            attempts: Set(attempts),
            status: Set("pending".to_owned()),
            created_at: Set(Utc::now()),
            resolved_at: Set(None),
        }
        .insert(&self.db)
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
    }
}

fn unavailable(error: DbErr) -> ApiError {
    tracing::error!(%error, "dead-letter store error");
    ApiError::unavailable("the dead-letter store is unavailable", 1)
}
