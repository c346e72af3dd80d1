//! Errors of the store's threads, and their mapping to the core's [`StoreError`].

use chat_shared::error::StoreError;

pub(crate) fn err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::new(context, e)
}

/// `value` as JSON text for a column; a value that cannot be written is an error of the
/// statement that writes it.
pub(crate) fn json_text(value: &impl serde::Serialize) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(crate) fn failure(code: std::ffi::c_int, message: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(message.to_owned()))
}

/// The same error for every write of a failed batch.
pub(crate) fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => failure(rusqlite::ffi::SQLITE_ERROR, &other.to_string()),
    }
}
