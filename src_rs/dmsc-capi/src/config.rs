//! `DMSCServiceMeshConfig`: mesh-wide settings, and the mesh-targeted setters applied on reload.
//!
//! Each setting has one change function; the config form applies it at once, the mesh form
//! stages it on the mesh until `dmsc_service_mesh_reload_config`. Validation is the core's
//! (`MeshSettings::validate`), so both forms refuse exactly the same values.

use std::ffi::{c_char, c_int};
use std::ptr;
use std::time::Duration;

use dmsc_core::mesh::MeshSettings;
use dmsc_core::registry::{Algorithm, StatusRange};
use dmsc_core::remote::Controller;

use crate::error::{guard, guard_status, Failure, FfiResult, DMSC_ERR_INVALID_ARGUMENT};
use crate::mesh::DMSCServiceMesh;
use crate::ptr::{free, into_raw, object, object_mut, text};

/// Mesh configuration object (see `dmsc_service_mesh_config_new`).
#[derive(Debug, Default)]
pub struct DMSCServiceMeshConfig {
    pub(crate) settings: MeshSettings,
    /// The controller a mesh made from this configuration joins (`None`: standalone).
    pub(crate) controller: Option<Controller>,
}

/// Creates a configuration with the defaults. Free it with `dmsc_service_mesh_config_free`.
#[no_mangle]
pub extern "C" fn dmsc_service_mesh_config_new() -> *mut DMSCServiceMeshConfig {
    guard(ptr::null_mut(), || {
        Ok(into_raw(DMSCServiceMeshConfig::default()))
    })
}

/// Frees a configuration; NULL is a no-op. Meshes keep their own copy.
///
/// # Safety
/// `config` must be NULL or a live configuration of this library, freed once.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_free(config: *mut DMSCServiceMeshConfig) {
    // SAFETY: the caller hands back a configuration from `dmsc_service_mesh_config_new`.
    guard((), || {
        // SAFETY: as above; `free` accepts NULL.
        unsafe { free(config) };
        Ok(())
    });
}

/// Applies `change` to the configuration behind `config`; a refused value changes nothing.
///
/// # Safety
/// `config` must be NULL or a live configuration.
unsafe fn apply(
    config: *mut DMSCServiceMeshConfig,
    change: impl FnOnce(&mut MeshSettings),
) -> c_int {
    guard_status(move || {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let config = unsafe { object_mut(config, "config")? };
        let mut next = config.settings.clone();
        change(&mut next);
        next.validate()?;
        config.settings = next;
        Ok(())
    })
}

/// Stages `change` on the mesh behind `mesh`; `dmsc_service_mesh_reload_config` applies it.
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
unsafe fn stage(mesh: *const DMSCServiceMesh, change: impl FnOnce(&mut MeshSettings)) -> c_int {
    guard_status(move || {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let mesh = unsafe { object(mesh, "mesh")? };
        mesh.core.stage(change)?;
        Ok(())
    })
}

fn algorithm(code: c_int) -> FfiResult<Algorithm> {
    Algorithm::from_code(code).ok_or_else(|| {
        Failure::new(
            DMSC_ERR_INVALID_ARGUMENT,
            format!("algorithm: {code} is not one of the LB_* constants"),
        )
    })
}

macro_rules! flag_setter {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `config` must be NULL or a live configuration.
        #[no_mangle]
        pub unsafe extern "C" fn $name(config: *mut DMSCServiceMeshConfig, enabled: bool) -> c_int {
            if let Err(failure) = crate::features::require(stringify!($field), enabled) {
                return guard_status(|| Err(failure));
            }
            // SAFETY: forwarded contract.
            unsafe { apply(config, move |s| s.$field = enabled) }
        }
    };
}

flag_setter!(
    /// Requires mutual TLS between mesh members.
    dmsc_service_mesh_config_set_enable_mtls,
    enable_mtls
);
flag_setter!(
    /// Turns per-instance circuit breaking in discovery on or off.
    dmsc_service_mesh_config_set_enable_circuit_breaker,
    enable_circuit_breaker
);
flag_setter!(
    /// Turns W3C trace context generation on or off.
    dmsc_service_mesh_config_set_enable_tracing,
    enable_tracing
);
flag_setter!(
    /// Turns request counting on or off.
    dmsc_service_mesh_config_set_enable_metrics,
    enable_metrics
);

/// Sets the failure rate (0, 1] at which an instance's circuit breaker opens.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_circuit_breaker_failure_rate(
    config: *mut DMSCServiceMeshConfig,
    rate: f64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { apply(config, move |s| s.breaker_failure_rate = rate) }
}

/// Mesh form of the failure-rate setter: staged, applied by `dmsc_service_mesh_reload_config`.
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_set_circuit_breaker_failure_rate(
    mesh: *const DMSCServiceMesh,
    rate: f64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { stage(mesh, move |s| s.breaker_failure_rate = rate) }
}

/// Sets how long an open circuit breaker waits before trial calls (milliseconds, at least 1).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_circuit_breaker_timeout_ms(
    config: *mut DMSCServiceMeshConfig,
    timeout_ms: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        apply(config, move |s| {
            s.breaker_timeout = Duration::from_millis(timeout_ms)
        })
    }
}

/// Mesh form of the breaker-timeout setter: staged, applied by reload.
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_set_circuit_breaker_timeout_ms(
    mesh: *const DMSCServiceMesh,
    timeout_ms: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        stage(mesh, move |s| {
            s.breaker_timeout = Duration::from_millis(timeout_ms)
        })
    }
}

/// Sets the minimum number of calls before an instance's failure rate can open its breaker,
/// and the window of recent calls the rate is computed over (`window` >= `minimum_calls`).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_circuit_breaker_window(
    config: *mut DMSCServiceMeshConfig,
    minimum_calls: u32,
    window: u32,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        apply(config, move |s| {
            s.breaker_minimum_calls = minimum_calls;
            s.breaker_window = window;
        })
    }
}

/// Sets the load-balancing algorithm (one of the `LB_*` constants).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_load_balancing_algorithm(
    config: *mut DMSCServiceMeshConfig,
    lb_algorithm: c_int,
) -> c_int {
    match algorithm(lb_algorithm) {
        // SAFETY: forwarded contract.
        Ok(algorithm) => unsafe { apply(config, move |s| s.algorithm = algorithm) },
        Err(failure) => guard_status(|| Err(failure)),
    }
}

/// Mesh form of the algorithm setter: staged, applied by reload.
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_set_load_balancing_algorithm(
    mesh: *const DMSCServiceMesh,
    lb_algorithm: c_int,
) -> c_int {
    match algorithm(lb_algorithm) {
        // SAFETY: forwarded contract.
        Ok(algorithm) => unsafe { stage(mesh, move |s| s.algorithm = algorithm) },
        Err(failure) => guard_status(|| Err(failure)),
    }
}

/// Sets the interval between two health checks of an instance (milliseconds, at least 1).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_health_check_interval_ms(
    config: *mut DMSCServiceMeshConfig,
    interval_ms: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        apply(config, move |s| {
            s.health.interval = Duration::from_millis(interval_ms)
        })
    }
}

/// Sets the time allowed for one health check (milliseconds, at least 1).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_health_check_timeout_ms(
    config: *mut DMSCServiceMeshConfig,
    timeout_ms: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        apply(config, move |s| {
            s.health.timeout = Duration::from_millis(timeout_ms)
        })
    }
}

/// Sets how many consecutive passes make an instance healthy and failures make it unhealthy
/// (both at least 1).
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_health_check_thresholds(
    config: *mut DMSCServiceMeshConfig,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        apply(config, move |s| {
            s.health.healthy_threshold = healthy_threshold;
            s.health.unhealthy_threshold = unhealthy_threshold;
        })
    }
}

/// Sets the HTTP statuses a health check passes on: `count` half-open ranges
/// `[ranges[2i], ranges[2i + 1])`, each with `100 <= start < end <= 600` (default `{200, 300}`).
///
/// # Safety
/// `config` must be NULL or a live configuration; `ranges` NULL or `2 * count` readable values.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_health_check_expected_statuses(
    config: *mut DMSCServiceMeshConfig,
    ranges: *const u16,
    count: usize,
) -> c_int {
    if config.is_null() {
        return guard_status(|| Err(Failure::null("config")));
    }
    // SAFETY: forwarded contract.
    let ranges = match unsafe { status_ranges(ranges, count) } {
        Ok(ranges) => ranges,
        Err(failure) => return guard_status(|| Err(failure)),
    };
    // SAFETY: forwarded contract.
    unsafe { apply(config, move |s| s.health.expected_statuses = ranges.into()) }
}

/// Copies `count` (start, end) pairs out of `ranges` (the core validates them).
///
/// # Safety
/// `ranges` must be NULL or point to `2 * count` readable values.
unsafe fn status_ranges(ranges: *const u16, count: usize) -> FfiResult<Vec<StatusRange>> {
    if ranges.is_null() {
        return Err(Failure::null("ranges"));
    }
    let len = count.checked_mul(2).ok_or_else(|| {
        Failure::new(
            DMSC_ERR_INVALID_ARGUMENT,
            "health_check_expected_statuses: too many ranges",
        )
    })?;
    // SAFETY: non-NULL and `2 * count` values long, as the caller guarantees.
    let codes = unsafe { std::slice::from_raw_parts(ranges, len) };
    Ok(codes
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect())
}

/// Sets the DNS domain of service names for `dmsc_service_mesh_resolve` (default "dmsc").
///
/// # Safety
/// `config` must be NULL or a live configuration; `domain` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_domain(
    config: *mut DMSCServiceMeshConfig,
    domain: *const c_char,
) -> c_int {
    // SAFETY: checked for NULL; validity is the caller's contract.
    let domain = match unsafe { text(domain, "domain") } {
        Ok(domain) => domain.to_owned(),
        Err(failure) => return guard_status(|| Err(failure)),
    };
    // SAFETY: forwarded contract.
    unsafe { apply(config, move |s| s.domain = domain) }
}

/// Makes meshes created from `config` join the controller at `address`
/// (`"http://HOST:PORT"` or `"HOST:PORT"`): registrations go to the controller, and discovery
/// reads a local mirror of its registry. NULL or "" means standalone (the default).
///
/// # Safety
/// `config` must be NULL or a live configuration; `address` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_config_set_controller(
    config: *mut DMSCServiceMeshConfig,
    address: *const c_char,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let config = unsafe { object_mut(config, "config")? };
        let address = if address.is_null() {
            ""
        } else {
            // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
            unsafe { text(address, "address")? }
        };
        config.controller = if address.is_empty() {
            None
        } else {
            Some(Controller::parse(address)?)
        };
        Ok(())
    })
}
