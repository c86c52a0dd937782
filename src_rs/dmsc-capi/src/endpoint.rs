//! `DMSCServiceEndpoint`: one service instance as C callers build and read it.

use std::ffi::{c_char, c_int, CString};
use std::ptr;

use dmsc_core::registry::{Endpoint, InFlight};

use crate::error::{guard, guard_status, Failure, FfiResult, DMSC_ERR_INVALID_ARGUMENT};
use crate::ptr::{free, into_raw, object, object_mut, text};

/// A service endpoint. Not thread-safe: one thread at a time may use a given endpoint.
#[derive(Debug, Default)]
pub struct DMSCServiceEndpoint {
    pub(crate) endpoint: Endpoint,
    /// NUL-terminated copies of the string fields, so getters can hand out pointers.
    c_strings: CStrings,
    /// Set on endpoints returned by discovery: the request counted against the instance.
    pub(crate) in_flight: Option<InFlight>,
}

#[derive(Debug, Default)]
struct CStrings {
    name: CString,
    host: CString,
    version: CString,
    health_check_url: CString,
    zone: CString,
    cluster: CString,
    label: CString,
}

fn c_string(argument: &str, value: &str) -> FfiResult<CString> {
    CString::new(value).map_err(|_| {
        Failure::new(
            DMSC_ERR_INVALID_ARGUMENT,
            format!("{argument}: contains a NUL byte"),
        )
    })
}

impl DMSCServiceEndpoint {
    /// An endpoint holding `endpoint` (the C strings are derived from it).
    pub(crate) fn from_endpoint(endpoint: Endpoint, in_flight: Option<InFlight>) -> Self {
        let mirror = |s: &str| CString::new(s).unwrap_or_default();
        Self {
            c_strings: CStrings {
                name: mirror(&endpoint.name),
                host: mirror(&endpoint.host),
                version: mirror(&endpoint.version),
                health_check_url: mirror(&endpoint.health_check_url),
                zone: mirror(&endpoint.zone),
                cluster: mirror(&endpoint.cluster),
                label: CString::default(),
            },
            endpoint,
            in_flight,
        }
    }
}

/// Creates an empty endpoint (weight 1). Free it with `dmsc_service_endpoint_free`.
#[no_mangle]
pub extern "C" fn dmsc_service_endpoint_new() -> *mut DMSCServiceEndpoint {
    guard(ptr::null_mut(), || {
        Ok(into_raw(DMSCServiceEndpoint::default()))
    })
}

/// Frees an endpoint; NULL is a no-op. A discovered endpoint's request ends here if it was not
/// recorded.
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint of this library, freed once.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_endpoint_free(endpoint: *mut DMSCServiceEndpoint) {
    // SAFETY: the caller hands back an endpoint from `dmsc_service_endpoint_new` or discovery.
    guard((), || {
        // SAFETY: as above; `free` accepts NULL.
        unsafe { free(endpoint) };
        Ok(())
    });
}

macro_rules! string_field {
    ($field:ident, $setter:ident, $getter:ident) => {
        #[doc = concat!("Sets the endpoint's `", stringify!($field), "` (copied).")]
        ///
        /// # Safety
        /// `endpoint` must be NULL or a live endpoint; `value` NULL or a NUL-terminated string.
        #[no_mangle]
        pub unsafe extern "C" fn $setter(
            endpoint: *mut DMSCServiceEndpoint,
            value: *const c_char,
        ) -> c_int {
            guard_status(|| {
                // SAFETY: pointers checked for NULL; validity is the caller's contract.
                let endpoint = unsafe { object_mut(endpoint, "endpoint")? };
                // SAFETY: as above.
                let value = unsafe { text(value, stringify!($field))? };
                endpoint.c_strings.$field = c_string(stringify!($field), value)?;
                endpoint.endpoint.$field = value.to_owned();
                Ok(())
            })
        }

        #[doc = concat!("The endpoint's `", stringify!($field), "` (\"\" if unset; NULL if `endpoint` is NULL).")]
        /// The string belongs to the endpoint and is valid until it is changed or freed.
        ///
        /// # Safety
        /// `endpoint` must be NULL or a live endpoint.
        #[no_mangle]
        pub unsafe extern "C" fn $getter(endpoint: *const DMSCServiceEndpoint) -> *const c_char {
            guard(ptr::null(), || {
                // SAFETY: checked for NULL; validity is the caller's contract.
                let endpoint = unsafe { object(endpoint, "endpoint")? };
                Ok(endpoint.c_strings.$field.as_ptr())
            })
        }
    };
}

string_field!(
    name,
    dmsc_service_endpoint_set_name,
    dmsc_service_endpoint_get_name
);
string_field!(
    host,
    dmsc_service_endpoint_set_host,
    dmsc_service_endpoint_get_host
);
string_field!(
    version,
    dmsc_service_endpoint_set_version,
    dmsc_service_endpoint_get_version
);
string_field!(
    health_check_url,
    dmsc_service_endpoint_set_health_check_url,
    dmsc_service_endpoint_get_health_check_url
);
string_field!(
    zone,
    dmsc_service_endpoint_set_zone,
    dmsc_service_endpoint_get_zone
);
string_field!(
    cluster,
    dmsc_service_endpoint_set_cluster,
    dmsc_service_endpoint_get_cluster
);

/// Sets the TCP port (1-65535; 0 is refused at registration).
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_endpoint_set_port(
    endpoint: *mut DMSCServiceEndpoint,
    port: u16,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        unsafe { object_mut(endpoint, "endpoint")? }.endpoint.port = port;
        Ok(())
    })
}

/// The TCP port (0 if unset or if `endpoint` is NULL).
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_endpoint_get_port(
    endpoint: *const DMSCServiceEndpoint,
) -> u16 {
    // SAFETY: checked for NULL; validity is the caller's contract.
    guard(0, || {
        Ok(unsafe { object(endpoint, "endpoint")? }.endpoint.port)
    })
}

/// Sets the weight used by `LB_WEIGHTED` and the hash balancers (at least 1).
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_endpoint_set_weight(
    endpoint: *mut DMSCServiceEndpoint,
    weight: u32,
) -> c_int {
    guard_status(|| {
        if weight == 0 {
            return Err(Failure::new(
                DMSC_ERR_INVALID_ARGUMENT,
                "weight: must be at least 1",
            ));
        }
        // SAFETY: checked for NULL; validity is the caller's contract.
        unsafe { object_mut(endpoint, "endpoint")? }.endpoint.weight = weight;
        Ok(())
    })
}

/// The weight (1 by default; 0 if `endpoint` is NULL).
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_endpoint_get_weight(
    endpoint: *const DMSCServiceEndpoint,
) -> u32 {
    // SAFETY: checked for NULL; validity is the caller's contract.
    guard(0, || {
        Ok(unsafe { object(endpoint, "endpoint")? }.endpoint.weight)
    })
}

/// Sets (or replaces) the label `key` to `value` (both copied).
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint; `key` and `value` NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_endpoint_set_label(
    endpoint: *mut DMSCServiceEndpoint,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    guard_status(|| {
        // SAFETY: pointers checked for NULL; validity is the caller's contract.
        let endpoint = unsafe { object_mut(endpoint, "endpoint")? };
        // SAFETY: as above.
        let (key, value) = unsafe { (text(key, "key")?, text(value, "value")?) };
        c_string("value", value)?;
        endpoint.endpoint.set_label(key, value)?;
        Ok(())
    })
}

/// The value of label `key`, or NULL when it is not set. Valid until the next call of this
/// function or a change to the endpoint.
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint; `key` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_endpoint_get_label(
    endpoint: *mut DMSCServiceEndpoint,
    key: *const c_char,
) -> *const c_char {
    guard(ptr::null(), || {
        // SAFETY: pointers checked for NULL; validity is the caller's contract.
        let endpoint = unsafe { object_mut(endpoint, "endpoint")? };
        // SAFETY: as above.
        let key = unsafe { text(key, "key")? };
        let Some(value) = endpoint.endpoint.label(key) else {
            return Ok(ptr::null());
        };
        endpoint.c_strings.label = c_string("value", value)?;
        Ok(endpoint.c_strings.label.as_ptr())
    })
}
