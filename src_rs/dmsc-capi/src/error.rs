//! Error codes, the per-thread last error message, and the panic barrier.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use dmsc_core::InvalidArgument;

/// Success.
pub const DMSC_OK: c_int = 0;
/// A required pointer argument was NULL.
pub const DMSC_ERR_NULL_POINTER: c_int = -1;
/// An argument was out of range or malformed.
pub const DMSC_ERR_INVALID_ARGUMENT: c_int = -2;
/// No such service, or no healthy instance of it.
pub const DMSC_ERR_NOT_FOUND: c_int = -3;
/// The call does not fit the object's state (e.g. starting a running mesh).
pub const DMSC_ERR_STATE: c_int = -4;
/// The feature was compiled out of this build of the library.
pub const DMSC_ERR_UNSUPPORTED: c_int = -5;
/// An operating-system resource (thread, socket) could not be obtained.
pub const DMSC_ERR_IO: c_int = -6;
/// A bug inside the library was caught before it could cross the C boundary.
pub const DMSC_ERR_INTERNAL: c_int = -99;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failure to report across the boundary.
#[derive(Debug)]
pub struct Failure {
    /// One of the `DMSC_ERR_*` codes.
    pub code: c_int,
    /// Text for `dmsc_last_error_message()`.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: c_int, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A NULL pointer was passed for `argument`.
    pub fn null(argument: &str) -> Self {
        Self::new(
            DMSC_ERR_NULL_POINTER,
            format!("{argument}: must not be NULL"),
        )
    }
}

impl From<InvalidArgument> for Failure {
    fn from(err: InvalidArgument) -> Self {
        Self::new(DMSC_ERR_INVALID_ARGUMENT, err.to_string())
    }
}

/// Result type of the function bodies behind the C entry points.
pub type FfiResult<T> = Result<T, Failure>;

fn set_last_error(message: &str) {
    // Interior NULs cannot be represented in a C string; replace rather than drop the text.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = text);
}

/// Runs `body`, turning failures and panics into `fallback` plus a last-error message.
///
/// Unwind safety is asserted rather than required: the objects behind the API use
/// non-poisoning locks, and a caught panic is reported as a possibly unusable object.
pub fn guard<T>(fallback: T, body: impl FnOnce() -> FfiResult<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            fallback
        }
        Err(_) => {
            set_last_error("internal error: the call panicked; the object may be unusable");
            fallback
        }
    }
}

/// Like [`guard`] for functions returning a status code: `DMSC_OK` or the failure's code.
pub fn guard_status(body: impl FnOnce() -> FfiResult<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => DMSC_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.code
        }
        Err(_) => {
            set_last_error("internal error: the call panicked; the object may be unusable");
            DMSC_ERR_INTERNAL
        }
    }
}

/// The message of the last failed call on this thread ("" if none). Valid until the next call
/// that fails on the same thread; do not free it.
#[no_mangle]
pub extern "C" fn dmsc_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the pointer comes from the thread-local CString, alive for this thread.
        unsafe { CStr::from_ptr(dmsc_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn failures_set_the_code_and_message() {
        let code = guard_status(|| Err(Failure::null("mesh")));
        assert_eq!(code, DMSC_ERR_NULL_POINTER);
        assert_eq!(last(), "mesh: must not be NULL");
    }

    #[test]
    fn panics_do_not_cross_the_boundary() {
        let code = guard_status(|| panic!("boom"));
        assert_eq!(code, DMSC_ERR_INTERNAL);
        assert!(last().starts_with("internal error"));
        assert_eq!(guard(7, || -> FfiResult<i32> { panic!("boom") }), 7);
    }
}
