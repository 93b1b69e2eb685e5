//! The payment provider port and the built-in simulated card processor.

use crate::entities::{simulated_charges, simulated_refunds};
use chrono::Utc;
use payments_contract::CardNumber;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, EntityTrait};
use shared_kernel::Money;
use std::time::Duration;

/// What the provider said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderOutcome {
    Captured { charge_id: String },
    Declined { reason: String },
}

/// The provider could not be reached or failed: nothing was charged, and a retry with the same
/// idempotency key is safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment provider error: {0}")]
pub struct ProviderError(pub String);

/// A card processor. Implementations MUST treat `idempotency_key` as the provider does: a second
/// charge with the same key returns the first one's outcome and charges nothing.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Hands the card to the provider and returns the provider's reference to it (a real
    /// provider's payment method id): what payments keeps instead of the number.
    ///
    /// # Errors
    /// [`ProviderError`] when the provider did not take the card.
    async fn tokenize(&self, card: &CardNumber) -> Result<String, ProviderError>;
    /// Charges the card behind `method` (a reference [`PaymentProvider::tokenize`] returned).
    ///
    /// # Errors
    /// [`ProviderError`] when nothing was decided.
    async fn charge(&self, idempotency_key: &str, method: &str, amount: Money) -> Result<ProviderOutcome, ProviderError>;
    /// Refunds part of a capture; returns the provider's refund id. Implementations MUST treat
    /// `idempotency_key` as the provider does: a second refund with the same key returns the
    /// first one's id and refunds nothing more.
    ///
    /// # Errors
    /// [`ProviderError`] when the refund was not made (asking again with the key is safe).
    async fn refund(&self, idempotency_key: &str, charge_id: &str, amount: Money) -> Result<String, ProviderError>;
    /// What the provider decided for `idempotency_key`, if the charge ever reached it (settles a
    /// charge whose caller stopped before the answer came back).
    ///
    /// # Errors
    /// [`ProviderError`] when the provider cannot be asked.
    async fn find_charge(&self, idempotency_key: &str) -> Result<Option<ProviderOutcome>, ProviderError>;
}

/// How the simulator behaves beyond its published test numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorSettings {
    /// Added to every call (to make benchmarks and timeouts realistic).
    pub latency: Duration,
    /// Share (0.0–1.0) of otherwise approved charges that fail as a provider error.
    pub failure_rate: f64,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self { latency: Duration::ZERO, failure_rate: 0.0 }
    }
}

/// The built-in processor with published test numbers:
/// `4242424242424242` approves; `4000000000000002` declines; `4000000000009995` declines for
/// insufficient funds; `4000000000000119` fails as a provider error (retryable); any other number
/// that passes the Luhn check approves. It keeps its record of charges in the payments database
/// (table `simulated_charges`) and of refunds (`simulated_refunds`), so its idempotency survives
/// restarts, as a real provider's does.
/// It keeps no card: its reference to one (`sim_<behaviour>_<id>`) names only how the test
/// number behaves.
#[derive(Debug, Clone)]
pub struct SimulatedCardProcessor {
    db: DatabaseConnection,
    settings: SimulatorSettings,
}

impl SimulatedCardProcessor {
    pub fn new(db: DatabaseConnection, settings: SimulatorSettings) -> Self {
        Self { db, settings }
    }
}

#[async_trait::async_trait]
impl PaymentProvider for SimulatedCardProcessor {
    async fn tokenize(&self, card: &CardNumber) -> Result<String, ProviderError> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let behaviour = match card.expose_digits() {
            "4000000000000002" => Behaviour::Declines,
            "4000000000009995" => Behaviour::InsufficientFunds,
            "4000000000000119" => Behaviour::ProcessingError,
            _ => Behaviour::Approves,
        };
        Ok(format!("sim_{}_{}", behaviour.as_str(), uuid::Uuid::new_v4().simple()))
    }

    async fn charge(&self, idempotency_key: &str, method: &str, amount: Money) -> Result<ProviderOutcome, ProviderError> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let unavailable = |e: sea_orm::DbErr| ProviderError(format!("simulator storage: {e}"));
        let (outcome, reason) = match Behaviour::of(method) {
            None => ("declined", Some("the card is unknown to the provider")),
            Some(Behaviour::Declines) => ("declined", Some("card declined")),
            Some(Behaviour::InsufficientFunds) => ("declined", Some("insufficient funds")),
            Some(Behaviour::ProcessingError) => return Err(ProviderError("processing error".into())),
            _ if self.settings.failure_rate > 0.0 && rand::random::<f64>() < self.settings.failure_rate => {
                // A charge the provider already made is answered from its record, outage or not.
                if let Some(known) = self.find_charge(idempotency_key).await? {
                    return Ok(known);
                }
                return Err(ProviderError("simulated outage".into()));
            }
            Some(Behaviour::Approves) => ("captured", None),
        };
        let record = simulated_charges::Model {
            idempotency_key: idempotency_key.to_owned(),
            charge_id: format!("ch_{}", uuid::Uuid::now_v7().simple()),
            outcome: outcome.to_owned(),
            reason: reason.map(str::to_owned),
            amount: amount.amount(),
            created_at: Utc::now(),
        };
        // The first record for a key wins: a repeat (a retry, a concurrent charge) answers with it
        // and charges nothing.
        let inserted = simulated_charges::Entity::insert(simulated_charges::ActiveModel::from(record.clone()))
            .on_conflict(OnConflict::column(simulated_charges::Column::IdempotencyKey).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await
            .map_err(unavailable)?;
        if inserted == 1 {
            return Ok(outcome_of(&record));
        }
        let stored = simulated_charges::Entity::find_by_id(idempotency_key.to_owned())
            .one(&self.db)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ProviderError("the charge record vanished".into()))?;
        Ok(outcome_of(&stored))
    }

    async fn find_charge(&self, idempotency_key: &str) -> Result<Option<ProviderOutcome>, ProviderError> {
        let known = simulated_charges::Entity::find_by_id(idempotency_key.to_owned())
            .one(&self.db)
            .await
            .map_err(|e| ProviderError(format!("simulator storage: {e}")))?;
        Ok(known.as_ref().map(outcome_of))
    }

    async fn refund(&self, idempotency_key: &str, charge_id: &str, amount: Money) -> Result<String, ProviderError> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let unavailable = |e: sea_orm::DbErr| ProviderError(format!("simulator storage: {e}"));
        let record = simulated_refunds::Model {
            idempotency_key: idempotency_key.to_owned(),
            refund_id: format!("re_{}", uuid::Uuid::now_v7().simple()),
            charge_id: charge_id.to_owned(),
            amount: amount.amount(),
            created_at: Utc::now(),
        };
        // The first record for a key wins: a repeat answers with its refund id.
        simulated_refunds::Entity::insert(simulated_refunds::ActiveModel::from(record))
            .on_conflict(OnConflict::column(simulated_refunds::Column::IdempotencyKey).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await
            .map_err(unavailable)?;
        let stored = simulated_refunds::Entity::find_by_id(idempotency_key.to_owned())
            .one(&self.db)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ProviderError("the refund record vanished".into()))?;
        Ok(stored.refund_id)
    }
}

/// How a simulated card behaves, as its reference names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Approves,
    Declines,
    InsufficientFunds,
    ProcessingError,
}

impl Behaviour {
    const ALL: [Behaviour; 4] = [Self::Approves, Self::Declines, Self::InsufficientFunds, Self::ProcessingError];

    fn as_str(self) -> &'static str {
        match self {
            Self::Approves => "approves",
            Self::Declines => "declines",
            Self::InsufficientFunds => "insufficient",
            Self::ProcessingError => "error",
        }
    }

    /// The behaviour a reference names, if it is one of the simulator's.
    fn of(reference: &str) -> Option<Self> {
        let name = reference.strip_prefix("sim_")?.split_once('_')?.0;
        Self::ALL.into_iter().find(|behaviour| behaviour.as_str() == name)
    }
}

fn outcome_of(record: &simulated_charges::Model) -> ProviderOutcome {
    if record.outcome == "captured" {
        ProviderOutcome::Captured { charge_id: record.charge_id.clone() }
    } else {
        ProviderOutcome::Declined { reason: record.reason.clone().unwrap_or_else(|| "declined".into()) }
    }
}
