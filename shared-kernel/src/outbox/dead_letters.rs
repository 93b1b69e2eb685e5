//! The events a consumer gave up on, with every attempt, for the admin API.

use super::entities::dead_letters;
use crate::events::{Attempt, DeadLetterSink, EventEnvelope};
use crate::{ApiError, Clock, Page, PageRequest, SystemClock};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

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
    pub status: DeadLetterStatus,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    /// Waiting for an operator.
    Pending,
    /// Delivered again to its consumer (kept as audit).
    Replayed,
    /// Dropped by an operator (kept as audit).
    Discarded,
}

impl DeadLetterStatus {
    pub const ALL: [DeadLetterStatus; 3] = [Self::Pending, Self::Replayed, Self::Discarded];

    /// The name stored in the `status` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Replayed => "replayed",
            Self::Discarded => "discarded",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }
}

/// The dead letters of the consumers of one module, in that module's database.
#[derive(Debug, Clone)]
pub struct DeadLetterStore {
    db: DatabaseConnection,
    module: &'static str,
    clock: Arc<dyn Clock>,
}

impl DeadLetterStore {
    /// On the system clock; [`DeadLetterStore::with_clock`] to give it another.
    pub fn new(db: DatabaseConnection, module: &'static str) -> Self {
        Self { db, module, clock: Arc::new(SystemClock) }
    }

    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
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

    /// How many dead letters wait for an admin (pending).
    ///
    /// # Errors
    /// The database is unavailable.
    pub async fn count_pending(&self) -> Result<u64, ApiError> {
        use sea_orm::PaginatorTrait as _;
        dead_letters::Entity::find()
            .filter(dead_letters::Column::Status.eq(DeadLetterStatus::Pending.as_str()))
            .count(&self.db)
            .await
            .map_err(unavailable)
    }

    /// Up to `limit + 1` rows after the cursor, in id order: for merging the stores of several
    /// modules into one page (the extra row says whether more exist).
    ///
    /// # Errors
    /// The database is unavailable, or a foreign cursor.
    pub async fn list_overfetched(&self, page: &PageRequest, include_resolved: bool) -> Result<Vec<DeadLetter>, ApiError> {
        let mut query = dead_letters::Entity::find().order_by_asc(dead_letters::Column::Id).limit(u64::from(page.limit()) + 1);
        if !include_resolved {
            query = query.filter(dead_letters::Column::Status.eq(DeadLetterStatus::Pending.as_str()));
        }
        if let Some(after) = page.after_key()? {
            let after = Uuid::parse_str(&after).map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?;
            query = query.filter(dead_letters::Column::Id.gt(after));
        }
        let rows = query.all(&self.db).await.map_err(unavailable)?;
        rows.into_iter().map(|row| self.view(row)).collect()
    }

    /// # Errors
    /// 404 for an unknown id.
    pub async fn get(&self, id: Uuid) -> Result<DeadLetter, ApiError> {
        let row = dead_letters::Entity::find_by_id(id).one(&self.db).await.map_err(unavailable)?;
        self.view(row.ok_or_else(|| ApiError::not_found("dead letter not found"))?)
    }

    /// Marks a pending dead letter replayed; 404 if there is none, 409 if it was already
    /// resolved.
    ///
    /// # Errors
    /// As above.
    pub async fn mark_replayed(&self, id: Uuid) -> Result<(), ApiError> {
        self.resolve(id, DeadLetterStatus::Replayed).await
    }

    /// Marks a pending dead letter discarded; 404 if there is none, 409 if it was already
    /// resolved.
    ///
    /// # Errors
    /// As above.
    pub async fn mark_discarded(&self, id: Uuid) -> Result<(), ApiError> {
        self.resolve(id, DeadLetterStatus::Discarded).await
    }

    async fn resolve(&self, id: Uuid, status: DeadLetterStatus) -> Result<(), ApiError> {
        let updated = dead_letters::Entity::update_many()
            .col_expr(dead_letters::Column::Status, Expr::value(status.as_str()))
            .col_expr(dead_letters::Column::ResolvedAt, Expr::value(self.clock.now()))
            .filter(dead_letters::Column::Id.eq(id))
            .filter(dead_letters::Column::Status.eq(DeadLetterStatus::Pending.as_str()))
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
            .col_expr(dead_letters::Column::Status, Expr::value(DeadLetterStatus::Pending.as_str()))
            .col_expr(dead_letters::Column::ResolvedAt, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(dead_letters::Column::Id.eq(id))
            .filter(dead_letters::Column::Status.eq(DeadLetterStatus::Replayed.as_str()))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The row as the API shows it. A row that does not read back (a bug, an incompatible
    /// upgrade) is an error naming it, never a default.
    fn view(&self, row: dead_letters::Model) -> Result<DeadLetter, ApiError> {
        let corrupt = |what: &str| {
            tracing::error!(module = self.module, dead_letter = %row.id, what, "a dead-letter row does not read back");
            ApiError::Internal
        };
        let event = serde_json::from_str(&row.envelope).map_err(|_| corrupt("envelope"))?;
        let attempts = serde_json::from_str(&row.attempts).map_err(|_| corrupt("attempts"))?;
        let status = DeadLetterStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?;
        Ok(DeadLetter {
            id: row.id,
            module: self.module.to_owned(),
            consumer: row.consumer,
            event,
            attempts,
            status,
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
            status: Set(DeadLetterStatus::Pending.as_str().to_owned()),
            created_at: Set(self.clock.now()),
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
