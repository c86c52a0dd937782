//! The C ABI of dmsc (`libdmsc.so`, `dmsc.h`).
//!
//! Every exported function catches panics and reports failures through
//! negative `DMSC_ERR_*` codes and `dmsc_last_error_message()`.

use std::ffi::{c_char, CStr};

/// The library version as a NUL-terminated string with static lifetime.
#[no_mangle]
pub extern "C" fn dmsc_version() -> *const c_char {
    static VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}
