//! Delivery of a module's committed events to the bus, in sequence order.

use super::Outbox;
use super::entities::outbox_events;
use crate::events::{EventBus, EventEnvelope};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
        f.debug_struct("Relay").field("module", &self.outbox.module()).finish_non_exhaustive()
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
                Err(error) => tracing::error!(module = self.outbox.module(), seq = row.seq, %error, "skipping an unreadable outbox row"),
            }
            published.push(row);
        }
        // One write marks the whole batch (a crash before it only means those events are sent
        // again, which consumers absorb); then the failure, if any, is reported.
        if !published.is_empty() {
            let now = self.outbox.clock.now();
            outbox_events::Entity::update_many()
                .col_expr(outbox_events::Column::DeliveredAt, Expr::value(now))
                .filter(outbox_events::Column::Seq.is_in(published.iter().map(|row| row.seq)))
                .exec(connection)
                .await?;
            for row in &published {
                let lag = (now - row.created_at).to_std().unwrap_or_default();
                metrics::histogram!("outbox_delivery_lag_seconds", "module" => self.outbox.module()).record(lag.as_secs_f64());
            }
            metrics::counter!("outbox_delivered_total", "module" => self.outbox.module()).increment(published.len() as u64);
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
                tracing::info!(module = self.outbox.module(), "this process now relays the outbox");
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
                metrics::gauge!("outbox_backlog", "module" => self.outbox.module()).set(backlog as f64);
            }
            let wait = match outcome {
                Ok(count) => {
                    failures = 0;
                    if count > 0 { Duration::ZERO } else { self.poll_interval }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(module = self.outbox.module(), %error, "outbox relay failed; retrying");
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
