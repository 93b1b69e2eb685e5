//! The contract error: a small closed set that maps 1:1 to HTTP statuses and survives the wire
//! as RFC 9457 problem details.

use serde::{Deserialize, Serialize};

// What every module's domain reports when a value fails its check (`Sku::parse`, `Email::parse`,
// …), and what a 422 lists. (Not a doc comment: the doc comment is the public OpenAPI text.)
/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        Self::invalid(vec![error])
    }
}

/// Collects every invalid field of one command, so a client learns all of them at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// The value, or `None` with its error kept.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|error| self.0.push(error)).ok()
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields checked so far.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|error| error.field.as_str())
    }

    /// The errors collected.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// `Ok` when every check passed, else a 422 naming each invalid field.
    ///
    /// # Errors
    /// As above.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::invalid(self.0)) }
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(errors: Vec<FieldError>) -> Self {
        Self::invalid(errors)
    }
}

/// What any contract operation may fail with. Each variant has exactly one HTTP status and one
/// problem `type`, so an error raised in a module reaches a client unchanged whether the
/// module ran in this process or behind a wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, wrong content type).
    #[error("bad request: {detail}")]
    BadRequest { detail: String },
    /// 401: no credentials, or credentials that do not verify.
    #[error("unauthenticated: {detail}")]
    Unauthenticated { detail: String },
    /// 403: authenticated, but not allowed.
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },
    /// 404: absent, or not the caller's to see.
    #[error("not found: {detail}")]
    NotFound { detail: String },
    /// 409: conflicts with the current state (duplicate, stale version, reused key).
    #[error("conflict: {detail}")]
    Conflict { detail: String },
    /// 413: the body is larger than allowed.
    #[error("payload too large: {detail}")]
    PayloadTooLarge { detail: String },
    /// 422: well-formed but invalid; `errors` names each invalid field.
    #[error("invalid: {detail}")]
    Invalid { detail: String, errors: Vec<FieldError> },
    /// 429: too many requests; retry after the given number of seconds.
    #[error("rate limited: {detail}")]
    RateLimited { detail: String, retry_after_secs: u64 },
    /// 503: a dependency is down; retry after the given number of seconds.
    #[error("unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
        /// The call is known not to have run: it never reached the upstream (every instance
        /// refused the connection, no NATS responder, the module not deployed). Unlike a timeout
        /// after the request left, nothing needs undoing. Not carried over a wire: it describes
        /// this process's own call.
        not_sent: bool,
    },
    /// 500: a bug or an unexpected failure. The detail stays in the log, never in a response.
    #[error("internal error")]
    Internal,
}

/// RFC 9457 problem details, as sent with `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProblemDetails {
    /// A URI reference naming the kind of problem, e.g. `/problems/not-found`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Present for validation failures (422).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (429, 503); also sent as the `Retry-After` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The request id, so a user can quote it and an operator can find the log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The media type of a problem details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest { detail: detail.into() }
    }
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::Unauthenticated { detail: detail.into() }
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden { detail: detail.into() }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound { detail: detail.into() }
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict { detail: detail.into() }
    }
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::Unavailable { detail: detail.into(), retry_after_secs, not_sent: false }
    }
    /// A 503 for a call known not to have reached the upstream (see `Unavailable::not_sent`).
    pub fn not_sent(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::Unavailable { detail: detail.into(), retry_after_secs, not_sent: true }
    }
    /// Whether this is a call known not to have run (see `Unavailable::not_sent`).
    pub fn is_not_sent(&self) -> bool {
        matches!(self, Self::Unavailable { not_sent: true, .. })
    }
    pub fn rate_limited(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::RateLimited { detail: detail.into(), retry_after_secs }
    }
    /// A 422 naming one invalid field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError { field: field.into(), message: message.into() }])
    }
    /// A 422 naming several invalid fields.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [only] => format!("{}: {}", only.field, only.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        Self::Invalid { detail, errors }
    }

    /// The HTTP status this error maps to.
    pub const fn status(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthenticated { .. } => 401,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::Invalid { .. } => 422,
            Self::RateLimited { .. } => 429,
            Self::Internal => 500,
            Self::Unavailable { .. } => 503,
        }
    }

    /// The stable, machine-readable code of this kind of error (also the last segment of the
    /// problem `type` and the GraphQL `extensions.code`).
    pub const fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad-request",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not-found",
            Self::Conflict { .. } => "conflict",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::Invalid { .. } => "validation-failed",
            Self::RateLimited { .. } => "rate-limited",
            Self::Internal => "internal",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    pub const fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs, .. } | Self::Unavailable { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The problem details for this error. An internal error says only "internal error".
    pub fn to_problem(&self) -> ProblemDetails {
        let (title, detail, errors) = match self {
            Self::BadRequest { detail } => ("Bad request", detail.clone(), Vec::new()),
            Self::Unauthenticated { detail } => ("Unauthenticated", detail.clone(), Vec::new()),
            Self::Forbidden { detail } => ("Forbidden", detail.clone(), Vec::new()),
            Self::NotFound { detail } => ("Not found", detail.clone(), Vec::new()),
            Self::Conflict { detail } => ("Conflict", detail.clone(), Vec::new()),
            Self::PayloadTooLarge { detail } => ("Payload too large", detail.clone(), Vec::new()),
            Self::Invalid { detail, errors } => ("Validation failed", detail.clone(), errors.clone()),
            Self::RateLimited { detail, .. } => ("Too many requests", detail.clone(), Vec::new()),
            Self::Unavailable { detail, .. } => ("Service unavailable", detail.clone(), Vec::new()),
            Self::Internal => ("Internal error", "internal error".to_owned(), Vec::new()),
        };
        ProblemDetails {
            problem_type: format!("/problems/{}", self.code()),
            title: title.to_owned(),
            status: self.status(),
            detail,
            errors,
            retry_after: self.retry_after_secs(),
            request_id: None,
        }
    }

    /// Reads an error back from problem details received over a wire. An unknown status
    /// becomes `Internal` (a 5xx) or `BadRequest` (a 4xx): the caller never sees more than the
    /// closed set.
    pub fn from_problem(problem: ProblemDetails) -> Self {
        let detail = problem.detail;
        let retry_after_secs = problem.retry_after.unwrap_or(1);
        match problem.status {
            401 => Self::Unauthenticated { detail },
            403 => Self::Forbidden { detail },
            404 => Self::NotFound { detail },
            409 => Self::Conflict { detail },
            413 => Self::PayloadTooLarge { detail },
            422 => Self::Invalid { detail, errors: problem.errors },
            429 => Self::RateLimited { detail, retry_after_secs },
            502..=504 => Self::Unavailable { detail, retry_after_secs, not_sent: false },
            400..=499 => Self::BadRequest { detail },
            _ => Self::Internal,
        }
    }

    /// The generic problem for an HTTP status that carried no problem body (a framework
    /// rejection, a proxy error page).
    pub fn from_status(status: u16) -> Self {
        let detail = match status {
            404 => "no such resource".to_owned(),
            405 => "method not allowed on this resource".to_owned(),
            408 => "request timed out".to_owned(),
            413 => "request body too large".to_owned(),
            415 => "unsupported media type: send application/json".to_owned(),
            other => format!("request failed with status {other}"),
        };
        match status {
            413 => Self::PayloadTooLarge { detail },
            404 => Self::NotFound { detail },
            408 | 502..=504 => Self::Unavailable { detail, retry_after_secs: 1, not_sent: false },
            400..=499 => Self::BadRequest { detail },
            _ => Self::Internal,
        }
    }
}

/// A deserialization message fit for a client: serde quotes offending values between
/// backticks (`invalid type: integer `4242…``), and a value may be a card number or a
/// password, so every quoted value is replaced by `…`.
pub fn redact_values(message: &str) -> String {
    let mut redacted = String::with_capacity(message.len());
    let mut inside = false;
    for ch in message.chars() {
        if ch == '`' {
            if !inside {
                redacted.push_str("`…`");
            }
            inside = !inside;
        } else if !inside {
            redacted.push(ch);
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialization_messages_lose_their_quoted_values() {
        let message = "card_number: invalid type: integer `4242424242424242`, expected a string at line 1 column 30";
        let redacted = redact_values(message);
        assert!(!redacted.contains("4242"), "{redacted}");
        assert_eq!(redacted, "card_number: invalid type: integer `…`, expected a string at line 1 column 30");
    }

    fn every_variant() -> Vec<ApiError> {
        vec![
            ApiError::bad_request("malformed"),
            ApiError::unauthenticated("no token"),
            ApiError::forbidden("admins only"),
            ApiError::not_found("order"),
            ApiError::conflict("duplicate email"),
            ApiError::PayloadTooLarge { detail: "3 MiB".into() },
            ApiError::invalid_field("email", "is not an email address"),
            ApiError::rate_limited("slow down", 7),
            ApiError::unavailable("catalog is down", 3),
            ApiError::Internal,
        ]
    }

    #[test]
    fn every_error_survives_a_round_trip_through_problem_details() {
        for error in every_variant() {
            let json = serde_json::to_string(&error.to_problem()).unwrap();
            let back: ProblemDetails = serde_json::from_str(&json).unwrap();
            assert_eq!(ApiError::from_problem(back), error, "{json}");
        }
    }

    #[test]
    fn statuses_are_distinct_per_variant() {
        let mut statuses: Vec<u16> = every_variant().iter().map(ApiError::status).collect();
        statuses.sort_unstable();
        statuses.dedup();
        assert_eq!(statuses.len(), every_variant().len());
    }

    #[test]
    fn internal_errors_reveal_nothing() {
        let problem = ApiError::Internal.to_problem();
        assert_eq!(problem.detail, "internal error");
        assert_eq!(problem.status, 500);
    }

    #[test]
    fn validation_problems_list_their_fields() {
        let problem = ApiError::invalid_field("password", "too short").to_problem();
        assert_eq!(problem.problem_type, "/problems/validation-failed");
        assert_eq!(problem.errors, vec![FieldError { field: "password".into(), message: "too short".into() }]);
    }
}
