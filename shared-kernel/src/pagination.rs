//! Cursor pagination: `?limit=` (1..=100, default 20) and an opaque `?cursor=`; pages are
//! `{"items": [...], "next_cursor": "..." | null}`.

use crate::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// An opaque position in a list. Clients pass back what they were given; only the module that
/// made it reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a module's sort key (for example the last item's id).
    pub fn encode(key: &str) -> Self {
        Self(URL_SAFE_NO_PAD.encode(key.as_bytes()))
    }
    /// The sort key this cursor was made from.
    ///
    /// # Errors
    /// 422 on `cursor` when the text was not made by [`Cursor::encode`].
    pub fn decode(&self) -> Result<String, ApiError> {
        URL_SAFE_NO_PAD
            .decode(self.0.as_bytes())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| ApiError::invalid_field("cursor", "is not a cursor this API issued"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated request for one page. Deserializing validates too, so a page request read from
/// a wire is as trustworthy as one built with [`PageRequest::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedPageRequest")]
pub struct PageRequest {
    limit: u32,
    cursor: Option<Cursor>,
}

#[derive(Deserialize)]
struct UncheckedPageRequest {
    limit: u32,
    cursor: Option<Cursor>,
}

impl TryFrom<UncheckedPageRequest> for PageRequest {
    type Error = String;
    fn try_from(raw: UncheckedPageRequest) -> Result<Self, Self::Error> {
        Self::new(Some(raw.limit), raw.cursor).map_err(|error| error.to_string())
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { limit: DEFAULT_LIMIT, cursor: None }
    }
}

impl PageRequest {
    /// # Errors
    /// 422 on `limit` outside 1..=100.
    pub fn new(limit: Option<u32>, cursor: Option<Cursor>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        Ok(Self { limit, cursor })
    }

    /// From raw query-string values.
    ///
    /// # Errors
    /// 422 on a `limit` that is not a number in range.
    pub fn from_query(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = match limit {
            None | Some("") => None,
            Some(text) => {
                Some(text.parse::<u32>().map_err(|_| ApiError::invalid_field("limit", format!("must be between 1 and {MAX_LIMIT}")))?)
            }
        };
        let cursor = cursor.filter(|text| !text.is_empty()).map(|text| Cursor(text.to_owned()));
        Self::new(limit, cursor)
    }

    pub const fn limit(&self) -> u32 {
        self.limit
    }
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }
    /// The cursor's sort key, if any.
    ///
    /// # Errors
    /// 422 when the cursor is not one this API issued.
    pub fn after_key(&self) -> Result<Option<String>, ApiError> {
        self.cursor.as_ref().map(Cursor::decode).transpose()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order: the extra row, if present,
    /// only proves there is a next page.
    pub fn from_overfetched(mut rows: Vec<T>, limit: u32, key_of: impl Fn(&T) -> String) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor::encode(&key_of(last)))
        } else {
            None
        };
        Self { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_the_range_are_invalid() {
        assert_eq!(PageRequest::from_query(None, None).unwrap().limit(), 20);
        assert_eq!(PageRequest::from_query(Some("100"), None).unwrap().limit(), 100);
        for bad in ["0", "101", "-1", "ten"] {
            let error = PageRequest::from_query(Some(bad), None).unwrap_err();
            assert_eq!(error.status(), 422, "{bad}");
        }
    }

    #[test]
    fn a_page_request_from_a_wire_is_validated() {
        let ok: PageRequest = serde_json::from_str(r#"{"limit": 5, "cursor": null}"#).unwrap();
        assert_eq!(ok.limit(), 5);
        assert!(serde_json::from_str::<PageRequest>(r#"{"limit": 0, "cursor": null}"#).is_err());
        assert!(serde_json::from_str::<PageRequest>(r#"{"limit": 1000000, "cursor": null}"#).is_err());
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let cursor = Cursor::encode("0190d2c4-key");
        let request = PageRequest::from_query(Some("5"), Some(cursor.as_str())).unwrap();
        assert_eq!(request.after_key().unwrap().as_deref(), Some("0190d2c4-key"));
        let forged = PageRequest::from_query(None, Some("%%%")).unwrap();
        assert_eq!(forged.after_key().unwrap_err().status(), 422);
    }

    #[test]
    fn overfetched_rows_make_a_next_cursor_only_when_more_exist() {
        let page = Page::from_overfetched(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor.unwrap().decode().unwrap(), "2");
        let last = Page::from_overfetched(vec![1, 2], 2, |n| n.to_string());
        assert!(last.next_cursor.is_none());
    }
}
