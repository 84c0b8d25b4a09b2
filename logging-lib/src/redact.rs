//! Which field values are secrets: written as `"[REDACTED]"` instead of their value.
//!
//! In: a field name. Out: redact or not. A name matches a listed word when it equals it or
//! ends with it, ignoring ASCII case (`Authorization`, `db_password`, `X-Api-Key` written
//! `x_api_key`). Over-redacting a harmless `max_token` is the safe failure; leaking a
//! password is not.

use std::sync::atomic::{AtomicU32, Ordering};

/// Names redacted by default.
pub const DEFAULT_SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
];

/// What a redacted value is written as.
pub const REDACTED: &str = "[REDACTED]";

/// The set of secret key names of one logger.
#[derive(Debug)]
pub struct Redactor {
    words: Vec<Box<str>>,
    /// Tells this redactor's answers apart in caches shared by several loggers.
    id: u32,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

impl Redactor {
    /// The default words plus `extra`.
    pub fn new<I, S>(extra: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut words: Vec<Box<str>> = DEFAULT_SECRET_KEYS.iter().map(|w| (*w).into()).collect();
        for w in extra {
            let w = w.as_ref().trim().to_ascii_lowercase();
            if !w.is_empty() && !words.iter().any(|x| **x == *w) {
                words.push(w.into());
            }
        }
        Self {
            words,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether values of `key` are secret.
    pub fn is_secret(&self, key: &str) -> bool {
        let key = key.as_bytes();
        self.words.iter().any(|w| {
            let w = w.as_bytes();
            key.len() >= w.len() && key[key.len() - w.len()..].eq_ignore_ascii_case(w)
        })
    }

    /// Tells this redactor's answers apart in caches shared by several loggers.
    pub fn id(&self) -> u32 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_words_any_case_and_as_suffix() {
        let r = Redactor::new(Vec::<String>::new());
        for k in [
            "password",
            "PASSWORD",
            "db_password",
            "passwd",
            "client_secret",
            "token",
            "access_token",
            "api_key",
            "ApiKey",
            "Authorization",
            "cookie",
            "Set-Cookie",
        ] {
            assert!(r.is_secret(k), "{k}");
        }
        for k in ["user", "order_id", "password_hint", "tokens_used", "key"] {
            assert!(!r.is_secret(k), "{k}");
        }
    }

    #[test]
    fn user_words_are_added() {
        let r = Redactor::new(["card_number", " SSN "]);
        assert!(r.is_secret("card_number"));
        assert!(r.is_secret("user_ssn"));
        assert!(r.is_secret("password"));
        assert!(!r.is_secret("card"));
    }
}
