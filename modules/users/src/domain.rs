//! Value types of the users module: each is checked once, when parsed, and trusted after.

use shared_kernel::{FieldError, FieldErrors, Role};

/// A normalised email address (trimmed, lower case), so uniqueness is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// # Errors
    /// A [`FieldError`] for `email` when the text is not a plausible address.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        Self::check(text).map_err(|message| FieldError::new("email", message))
    }

    fn check(text: &str) -> Result<Self, &'static str> {
        let normalised = text.trim().to_lowercase();
        if normalised.is_empty() {
            return Err("is required");
        }
        if normalised.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = normalised.rsplit_once('@') else {
            return Err("is not an email address");
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.split('.').all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        let local_ok =
            !local.is_empty() && local.len() <= 64 && !local.contains('@') && !local.chars().any(|c| c.is_whitespace() || c.is_control());
        if domain_ok && local_ok { Ok(Self(normalised)) } else { Err("is not an email address") }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy: 10 to 128 characters, not a commonly used password, not
/// the email address. Exists only long enough to be hashed; its `Debug` is redacted.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Passwords that appear at the top of every breach list, refused whatever their length.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "0123456789",
    "1q2w3e4r5t",
    "qwertyuiop",
    "1qaz2wsx3edc",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "iloveyou123",
    "qwerty12345",
    "qwerty123456",
    "abc1234567",
    "abcdefghij",
    "letmein123",
    "welcome123",
    "football123",
    "baseball123",
    "administrator",
    "changeme123",
    "trustno1234",
    "monkey12345",
    "dragon12345",
    "sunshine123",
    "princess123",
    "superman123",
    "starwars123",
    "1111111111",
    "0000000000",
    "9876543210",
];

impl Password {
    /// # Errors
    /// A [`FieldError`] for `password`.
    pub fn parse(text: &str, email: Option<&Email>) -> Result<Self, FieldError> {
        Self::check(text, email).map_err(|message| FieldError::new("password", message))
    }

    fn check(text: &str, email: Option<&Email>) -> Result<Self, &'static str> {
        let length = text.chars().count();
        if length < 10 {
            return Err("must be at least 10 characters");
        }
        if length > 128 {
            return Err("must be at most 128 characters");
        }
        let lowered = text.to_lowercase();
        if COMMON_PASSWORDS.contains(&lowered.as_str()) {
            return Err("is too common");
        }
        let first = text.chars().next();
        if text.chars().all(|c| Some(c) == first) {
            return Err("must not repeat one character");
        }
        if email.is_some_and(|email| lowered.contains(email.as_str())) {
            return Err("must not contain the email address");
        }
        Ok(Self(text.to_owned()))
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// # Errors
    /// A [`FieldError`] for `name`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        Self::check(text).map_err(|message| FieldError::new("name", message))
    }

    fn check(text: &str) -> Result<Self, &'static str> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("is required");
        }
        if trimmed.chars().count() > 100 {
            return Err("must be at most 100 characters");
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(trimmed.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registration whose every field passed its checks.
#[derive(Debug)]
pub struct NewUser {
    pub email: Email,
    pub password: Password,
    pub name: DisplayName,
}

impl NewUser {
    /// Checks every field and reports all the invalid ones at once.
    ///
    /// # Errors
    /// Each invalid field, in the order email, password, name.
    pub fn parse(email: &str, password: &str, name: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::default();
        let email = errors.check(Email::parse(email));
        let password = errors.check(Password::parse(password, email.as_ref()));
        let name = errors.check(DisplayName::parse(name));
        match (email, password, name) {
            (Some(email), Some(password), Some(name)) => Ok(Self { email, password, name }),
            _ => Err(errors.into_vec()),
        }
    }
}

/// Roles as stored: a comma-separated list of role names.
pub fn roles_to_column(roles: &[Role]) -> String {
    roles.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
}

pub fn roles_from_column(column: &str) -> Vec<Role> {
    column.split(',').filter_map(Role::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@exa mple.com",
            "ada@.example.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn weak_passwords_are_refused() {
        let email = Email::parse("ada@example.com").unwrap();
        assert_eq!(Password::parse("short", None).unwrap_err().message, "must be at least 10 characters");
        assert!(Password::parse("password123", None).is_err());
        assert!(Password::parse("aaaaaaaaaaaa", None).is_err());
        assert!(Password::parse("xx-ada@example.com-xx", Some(&email)).is_err());
        assert!(Password::parse(&"x".repeat(129), None).is_err());
        assert!(Password::parse("correct horse battery staple", Some(&email)).is_ok());
    }

    #[test]
    fn a_registration_reports_every_invalid_field() {
        let errors = NewUser::parse("nope", "short", " ").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password", "name"]);
    }

    #[test]
    fn password_debug_is_redacted() {
        let password = Password::parse("correct horse battery staple", None).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn roles_round_trip_through_their_column() {
        let roles = vec![Role::Customer, Role::Admin];
        assert_eq!(roles_from_column(&roles_to_column(&roles)), roles);
    }
}
