//! Checked conversions of the raw pointers C callers hand in.

use std::ffi::{c_char, CStr};

use crate::error::{Failure, FfiResult, DMSC_ERR_INVALID_ARGUMENT};

/// Borrows the object behind `ptr`, refusing NULL.
///
/// # Safety
/// `ptr` must be NULL or point to a live `T` created by this library and not yet freed.
pub unsafe fn object<'a, T>(ptr: *const T, argument: &str) -> FfiResult<&'a T> {
    // SAFETY: non-NULL pointers are live objects of this library, as the caller guarantees.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(argument))
}

/// Mutably borrows the object behind `ptr`, refusing NULL.
///
/// # Safety
/// As [`object`], and no other reference to the object may be in use.
pub unsafe fn object_mut<'a, T>(ptr: *mut T, argument: &str) -> FfiResult<&'a mut T> {
    // SAFETY: non-NULL pointers are live, unaliased objects, as the caller guarantees.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::null(argument))
}

/// Reads a NUL-terminated UTF-8 string argument, refusing NULL and invalid UTF-8.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string that stays valid during the call.
pub unsafe fn text<'a>(ptr: *const c_char, argument: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(Failure::null(argument));
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    unsafe { CStr::from_ptr(ptr) }.to_str().map_err(|_| {
        Failure::new(
            DMSC_ERR_INVALID_ARGUMENT,
            format!("{argument}: not valid UTF-8"),
        )
    })
}

/// Moves `value` to the heap and hands ownership to C.
pub fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back ownership of an object handed out by [`into_raw`] and drops it; NULL is a no-op.
///
/// # Safety
/// `ptr` must be NULL or come from [`into_raw`] with the same `T`, and not be freed twice.
pub unsafe fn free<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: `ptr` came from `Box::into_raw` and is freed once, as the caller guarantees.
        drop(unsafe { Box::from_raw(ptr) });
    }
}
