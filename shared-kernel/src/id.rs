//! Identifiers: UUIDv7 newtypes, time-ordered, one type per kind of thing so they cannot be mixed.

/// What every id type offers code that handles ids of any kind (the edge).
pub trait Identifier: Copy + Send + Sync + 'static {
    /// An id no resource ever has: ids are made as UUIDv7, and this is the nil UUID. Asking a
    /// module for it runs the module's checks and finds nothing.
    const UNKNOWN: Self;

    /// Parses the canonical string form.
    ///
    /// # Errors
    /// The text is not a UUID.
    fn parse_text(text: &str) -> Result<Self, crate::ApiError>;
}

/// Declares a UUIDv7 identifier newtype with parsing, display and serde as a plain string.
#[macro_export]
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, $crate::__private::serde::Serialize, $crate::__private::serde::Deserialize)]
        #[serde(crate = "shared_kernel::__private::serde", transparent)]
        pub struct $name($crate::__private::uuid::Uuid);

        impl $name {
            /// A new, time-ordered (v7) identifier.
            pub fn new() -> Self {
                Self($crate::__private::uuid::Uuid::now_v7())
            }
            /// Wraps an existing UUID (for example one read from storage).
            pub const fn from_uuid(uuid: $crate::__private::uuid::Uuid) -> Self {
                Self(uuid)
            }
            /// The underlying UUID.
            pub const fn as_uuid(&self) -> $crate::__private::uuid::Uuid {
                self.0
            }
            /// Parses the canonical string form.
            ///
            /// # Errors
            /// Returns [`$crate::ApiError::Invalid`] when the text is not a UUID.
            pub fn parse(text: &str) -> Result<Self, $crate::ApiError> {
                $crate::__private::uuid::Uuid::parse_str(text).map(Self).map_err(|_| {
                    $crate::ApiError::invalid_field("id", "must be a UUID")
                })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl $crate::id::Identifier for $name {
            const UNKNOWN: Self = Self($crate::__private::uuid::Uuid::nil());
            fn parse_text(text: &str) -> Result<Self, $crate::ApiError> {
                Self::parse(text)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ApiError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }

        impl From<$name> for $crate::__private::uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

define_id!(
    /// A user account's id (owned by the users module, referred to by every other module).
    UserId
);
define_id!(
    /// A catalog category.
    CategoryId
);
define_id!(
    /// A catalog product.
    ProductId
);
define_id!(
    /// An order (owned by orders; catalog reservations and payments are keyed by it).
    OrderId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_version_7_and_time_ordered() {
        let first = UserId::new();
        let second = UserId::new();
        assert_eq!(first.as_uuid().get_version_num(), 7);
        assert!(first < second);
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let id = UserId::new();
        assert_eq!(UserId::parse(&id.to_string()).unwrap(), id);
        assert!(UserId::parse("not-a-uuid").is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
    }
}
