//! One error type for the whole crate: a message meant for the person at the terminal, naming the
//! input at fault and what was expected. The CLI prints it and exits non-zero; nothing panics.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Error(m.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// `bail!("...")` returns an `Err(Error)` with a formatted message.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::Error(format!($($t)*))) };
}

/// Adds a leading description to any displayable error: `file.read().context(|| format!("reading {p}"))?`
/// gives "reading PATH: <cause>".
pub trait Context<T> {
    fn context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {}", f().into(), e)))
    }
}
