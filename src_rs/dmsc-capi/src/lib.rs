//! The C ABI of dmsc: `libdmsc.so` / `libdmsc.a` with the header `include/dmsc.h`.
//!
//! Contract (the header repeats it for C users):
//! * objects are opaque pointers; every `_new` has a `_free` that accepts NULL;
//! * status-returning functions give `DMSC_OK` (0) or a negative `DMSC_ERR_*`
//!   code, with the reason in `dmsc_last_error_message()` (per thread);
//! * no function crashes on NULL or invalid input, and no Rust panic crosses
//!   the boundary (every entry point runs behind `error::guard`);
//! * a mesh may be used from many threads at once; configs and endpoints by one
//!   thread at a time.
//!
//! This is the only crate of the workspace with `unsafe` code: raw pointers
//! from C are turned into references in `ptr.rs`, each use with a `SAFETY` note.

pub mod error;
pub mod features;
mod ptr;

#[cfg(feature = "service-mesh")]
pub mod config;
#[cfg(feature = "service-mesh")]
pub mod endpoint;
#[cfg(feature = "service-mesh")]
pub mod mesh;

use std::ffi::{c_char, CStr};

/// The library version (e.g. "0.1.0"). The string is static: do not free it.
#[no_mangle]
pub extern "C" fn dmsc_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(version) => version,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}
