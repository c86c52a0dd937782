//! `DMSCServiceMesh`: the mesh controller as C callers drive it.

use std::ffi::{c_char, c_int};
use std::ptr;
use std::time::Duration;

use dmsc_core::mesh::{LifecycleError, Mesh};
use dmsc_core::registry::InFlight;
use dmsc_core::remote::{Mirror, RemoteError};
use dmsc_core::trace::TRACEPARENT_LEN;

use crate::config::DMSCServiceMeshConfig;
use crate::endpoint::DMSCServiceEndpoint;
use crate::error::{
    guard, guard_status, Failure, FfiResult, DMSC_ERR_INVALID_ARGUMENT, DMSC_ERR_IO,
    DMSC_ERR_NOT_FOUND, DMSC_ERR_STATE,
};
use crate::features::{self, DMSC_FEATURE_DNS, DMSC_FEATURE_TRACING};
use crate::ptr::{free, into_raw, object, object_mut, text};

/// A service mesh. Thread-safe: any number of threads may use one mesh at once.
#[derive(Debug)]
pub struct DMSCServiceMesh {
    pub(crate) core: Mesh,
    /// The controller's registry mirrored into `core`'s, when the mesh joined one.
    pub(crate) mirror: Option<Mirror>,
}

/// The C error of a failed call to the controller.
fn remote_failure(err: RemoteError) -> Failure {
    let code = match err {
        RemoteError::Rejected(_) => DMSC_ERR_INVALID_ARGUMENT,
        RemoteError::NotFound(_) => DMSC_ERR_NOT_FOUND,
        RemoteError::Unreachable(_) | RemoteError::Protocol(_) => DMSC_ERR_IO,
        RemoteError::Stopped => DMSC_ERR_STATE,
    };
    Failure::new(code, err.to_string())
}

/// Creates a stopped mesh with a copy of `config`. Returns NULL on error (see
/// `dmsc_last_error_message`). Free it with `dmsc_service_mesh_free`.
///
/// # Safety
/// `config` must be NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_new(
    config: *const DMSCServiceMeshConfig,
) -> *mut DMSCServiceMesh {
    guard(ptr::null_mut(), || {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let config = unsafe { object(config, "config")? };
        let core = Mesh::new(config.settings.clone())?;
        let mirror = config
            .controller
            .clone()
            .map(|controller| Mirror::new(controller, std::sync::Arc::clone(core.registry())));
        Ok(into_raw(DMSCServiceMesh { core, mirror }))
    })
}

/// Stops (if needed) and frees a mesh; NULL is a no-op.
///
/// # Safety
/// `mesh` must be NULL or a live mesh, freed once, with no other thread still using it.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_free(mesh: *mut DMSCServiceMesh) {
    // SAFETY: the caller hands back a mesh from `dmsc_service_mesh_new`.
    guard((), || {
        // SAFETY: as above; `free` accepts NULL.
        unsafe { free(mesh) };
        Ok(())
    });
}

/// Starts the mesh: background health checks of every registered instance. A mesh that
/// joined a controller instead fetches the controller's registry (`DMSC_ERR_IO` when it cannot
/// be reached) and follows its changes in the background; the controller checks health.
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_start(mesh: *mut DMSCServiceMesh) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let mesh = unsafe { object(mesh, "mesh")? };
        if let Some(mirror) = &mesh.mirror {
            return match mirror.start().map_err(remote_failure)? {
                true => Ok(()),
                false => Err(Failure::new(DMSC_ERR_STATE, "the mesh is already running")),
            };
        }
        mesh.core.start().map_err(|err| {
            let code = match err {
                LifecycleError::AlreadyRunning => DMSC_ERR_STATE,
                LifecycleError::Spawn(_) => DMSC_ERR_IO,
            };
            Failure::new(code, err.to_string())
        })
    })
}

/// Stops the background health checks; registrations stay. Stopping a stopped mesh is a no-op.
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_stop(mesh: *mut DMSCServiceMesh) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let mesh = unsafe { object(mesh, "mesh")? };
        if let Some(mirror) = &mesh.mirror {
            mirror.stop();
        }
        mesh.core.stop();
        Ok(())
    })
}

/// Registers a copy of `endpoint`, checking its health once before returning. Registering the
/// same service, host and port again updates that instance.
///
/// A mesh that joined a controller registers with the controller instead (which checks the
/// instance's health): `DMSC_ERR_INVALID_ARGUMENT` with the controller's message when it refuses
/// the endpoint, `DMSC_ERR_IO` when it cannot be reached.
///
/// # Safety
/// `mesh` and `endpoint` must be NULL or live objects.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_register(
    mesh: *mut DMSCServiceMesh,
    endpoint: *const DMSCServiceEndpoint,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let (mesh, endpoint) = unsafe { (object(mesh, "mesh")?, object(endpoint, "endpoint")?) };
        if let Some(mirror) = &mesh.mirror {
            return mirror.register(&endpoint.endpoint).map_err(remote_failure);
        }
        mesh.core.register(endpoint.endpoint.clone())?;
        Ok(())
    })
}

/// Removes the instance with `endpoint`'s service name, host and port.
/// Returns `DMSC_ERR_NOT_FOUND` when there is none.
///
/// A mesh that joined a controller deregisters from the controller (`DMSC_ERR_IO` when it
/// cannot be reached).
///
/// # Safety
/// `mesh` and `endpoint` must be NULL or live objects.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_deregister(
    mesh: *mut DMSCServiceMesh,
    endpoint: *const DMSCServiceEndpoint,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let (mesh, endpoint) = unsafe { (object(mesh, "mesh")?, object(endpoint, "endpoint")?) };
        let e = &endpoint.endpoint;
        if let Some(mirror) = &mesh.mirror {
            return mirror
                .deregister(&e.name, &e.host, e.port)
                .map_err(remote_failure);
        }
        if mesh.core.deregister(&e.name, &e.host, e.port) {
            Ok(())
        } else {
            Err(Failure::new(
                DMSC_ERR_NOT_FOUND,
                format!("no instance of {:?} at {}:{}", e.name, e.host, e.port),
            ))
        }
    })
}

/// Number of healthy instances of `service_name` (0 on error; see `dmsc_last_error_message`).
///
/// # Safety
/// `mesh` must be NULL or a live mesh; `service_name` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_get_healthy_count(
    mesh: *mut DMSCServiceMesh,
    service_name: *const c_char,
) -> u32 {
    guard(0, || {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let (mesh, name) = unsafe { (object(mesh, "mesh")?, text(service_name, "service_name")?) };
        Ok(u32::try_from(mesh.core.healthy_count(name)).unwrap_or(u32::MAX))
    })
}

/// Discovers one healthy instance of `service_name` with the mesh's balancing algorithm and
/// stores a new endpoint in `*out` that the caller frees. Equivalent to
/// `dmsc_service_mesh_discover_with_key(mesh, service_name, NULL, 0, out)`.
///
/// # Safety
/// `mesh` must be NULL or a live mesh; `service_name` NULL or a NUL-terminated string; `out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_discover(
    mesh: *mut DMSCServiceMesh,
    service_name: *const c_char,
    out: *mut *mut DMSCServiceEndpoint,
) -> c_int {
    // SAFETY: forwarded contract; a NULL key with length 0 means no key.
    unsafe { dmsc_service_mesh_discover_with_key(mesh, service_name, ptr::null(), 0, out) }
}

/// Discovers one healthy instance, steering the consistent-hash algorithms (`LB_CONSISTENT_HASH`,
/// `LB_MAGLEV`) with the `key_len` bytes at `key` (e.g. a session or user id): the same key goes
/// to the same instance while the healthy set is unchanged. Other algorithms ignore the key.
///
/// The request counts as in flight on that instance (for `LB_LEAST_REQUESTS`) until it is
/// recorded with `dmsc_service_mesh_record_request` or the endpoint is freed.
/// Returns `DMSC_ERR_NOT_FOUND` when the service has no healthy instance; `*out` is then NULL.
///
/// # Safety
/// As `dmsc_service_mesh_discover`; `key` NULL or `key_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_discover_with_key(
    mesh: *mut DMSCServiceMesh,
    service_name: *const c_char,
    key: *const u8,
    key_len: usize,
    out: *mut *mut DMSCServiceEndpoint,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; writable as the caller guarantees.
        let out = unsafe { object_mut(out, "out")? };
        *out = ptr::null_mut();
        // SAFETY: checked for NULL; validity is the caller's contract.
        let (mesh, name) = unsafe { (object(mesh, "mesh")?, text(service_name, "service_name")?) };
        let key = if key.is_null() {
            None
        } else {
            // SAFETY: `key_len` readable bytes at `key`, as the caller guarantees.
            Some(unsafe { std::slice::from_raw_parts(key, key_len) })
        };
        let in_flight = mesh.core.discover(name, None, key);
        *out = discovered(in_flight, name)?;
        Ok(())
    })
}

/// The endpoint handed to C for a discovery result, or `DMSC_ERR_NOT_FOUND` naming `what`.
fn discovered(in_flight: Option<InFlight>, what: &str) -> FfiResult<*mut DMSCServiceEndpoint> {
    let in_flight = in_flight.ok_or_else(|| {
        Failure::new(
            DMSC_ERR_NOT_FOUND,
            format!("no available instance of {what:?} (none healthy, or breakers open)"),
        )
    })?;
    let endpoint = in_flight.instance().endpoint.clone();
    Ok(into_raw(DMSCServiceEndpoint::from_endpoint(
        endpoint,
        Some(in_flight),
    )))
}

/// Discovers one healthy instance of `service_name` running `version` (as
/// `dmsc_service_mesh_discover`, restricted to that version: for canary and blue-green callers).
///
/// # Safety
/// As `dmsc_service_mesh_discover`; `version` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_discover_version(
    mesh: *mut DMSCServiceMesh,
    service_name: *const c_char,
    version: *const c_char,
    out: *mut *mut DMSCServiceEndpoint,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; writable as the caller guarantees.
        let out = unsafe { object_mut(out, "out")? };
        *out = ptr::null_mut();
        // SAFETY: checked for NULL; validity is the caller's contract.
        let (mesh, name, version) = unsafe {
            (
                object(mesh, "mesh")?,
                text(service_name, "service_name")?,
                text(version, "version")?,
            )
        };
        *out = discovered(mesh.core.discover(name, Some(version), None), name)?;
        Ok(())
    })
}

/// Discovers by DNS-style name, `<service>.service.<domain>` or
/// `<version>.<service>.service.<domain>` (domain "dmsc" unless set with
/// `dmsc_service_mesh_config_set_domain`; a trailing dot is allowed).
///
/// # Safety
/// As `dmsc_service_mesh_discover`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_resolve(
    mesh: *mut DMSCServiceMesh,
    dns_name: *const c_char,
    out: *mut *mut DMSCServiceEndpoint,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; writable as the caller guarantees.
        let out = unsafe { object_mut(out, "out")? };
        *out = ptr::null_mut();
        features::require_compiled("dmsc_service_mesh_resolve", DMSC_FEATURE_DNS)?;
        // SAFETY: checked for NULL; validity is the caller's contract.
        let (mesh, name) = unsafe { (object(mesh, "mesh")?, text(dns_name, "dns_name")?) };
        *out = discovered(mesh.core.resolve(name, None), name)?;
        Ok(())
    })
}

/// Writes the W3C `traceparent` for an outgoing call into `out` (at least
/// `DMSC_TRACEPARENT_SIZE` bytes, NUL-terminated): a child span of `incoming` when given, a new
/// sampled trace when `incoming` is NULL. `DMSC_ERR_INVALID_ARGUMENT` for a malformed
/// `incoming` (call again with NULL to start a new trace), `DMSC_ERR_STATE` when tracing is
/// off.
///
/// # Safety
/// `mesh` NULL or a live mesh; `incoming` NULL or a NUL-terminated string; `out` NULL or
/// `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_trace_context(
    mesh: *mut DMSCServiceMesh,
    incoming: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> c_int {
    guard_status(|| {
        features::require_compiled("dmsc_service_mesh_trace_context", DMSC_FEATURE_TRACING)?;
        // SAFETY: checked for NULL; validity is the caller's contract.
        let mesh = unsafe { object(mesh, "mesh")? };
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        if out_len < TRACEPARENT_LEN + 1 {
            return Err(Failure::new(
                DMSC_ERR_INVALID_ARGUMENT,
                format!("out_len: needs at least {} bytes", TRACEPARENT_LEN + 1),
            ));
        }
        let incoming = if incoming.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
            Some(unsafe { text(incoming, "incoming")? })
        };
        let context = mesh
            .core
            .outgoing_trace(incoming)
            .map_err(|err| Failure::new(DMSC_ERR_INVALID_ARGUMENT, err.to_string()))?
            .ok_or_else(|| Failure::new(DMSC_ERR_STATE, "tracing is disabled in this mesh"))?;
        let text = context.to_string();
        // SAFETY: `out` has `out_len` >= TRACEPARENT_LEN + 1 writable bytes, checked above.
        unsafe {
            ptr::copy_nonoverlapping(text.as_ptr(), out.cast::<u8>(), text.len());
            *out.add(text.len()) = 0;
        }
        Ok(())
    })
}

/// Records the outcome of one request to `endpoint` (a discovered endpoint, or one describing a
/// registered instance): it feeds the request counters, the instance's circuit breaker and
/// least-request balancing. `latency_us` is the request's duration in microseconds.
///
/// # Safety
/// `mesh` and `endpoint` must be NULL or live objects.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_record_request(
    mesh: *mut DMSCServiceMesh,
    endpoint: *mut DMSCServiceEndpoint,
    success: bool,
    latency_us: u64,
) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        let mesh = unsafe { object(mesh, "mesh")? };
        // SAFETY: as above.
        let endpoint = unsafe { object_mut(endpoint, "endpoint")? };
        let latency = Duration::from_micros(latency_us);
        // A discovered endpoint's request ends here; dropping the guard ends it exactly once.
        if let Some(in_flight) = endpoint.in_flight.take() {
            mesh.core.record(in_flight.instance(), success, latency);
            return Ok(());
        }
        let e = &endpoint.endpoint;
        let instance = mesh
            .core
            .registry()
            .instances(&e.name)
            .into_iter()
            .find(|i| i.endpoint.host == e.host && i.endpoint.port == e.port)
            .ok_or_else(|| {
                Failure::new(
                    DMSC_ERR_NOT_FOUND,
                    format!("no instance of {:?} at {}:{}", e.name, e.host, e.port),
                )
            })?;
        mesh.core.record(&instance, success, latency);
        Ok(())
    })
}

/// Applies the settings staged with the mesh forms of the setters, atomically. Registrations,
/// health and counters are kept. Reloading with nothing staged is a no-op.
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_reload_config(mesh: *mut DMSCServiceMesh) -> c_int {
    guard_status(|| {
        // SAFETY: checked for NULL; validity is the caller's contract.
        unsafe { object(mesh, "mesh")? }.core.reload()?;
        Ok(())
    })
}

/// Requests recorded on this mesh (0 if `mesh` is NULL).
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_get_total_requests(mesh: *mut DMSCServiceMesh) -> u64 {
    // SAFETY: checked for NULL; validity is the caller's contract.
    guard(0, || {
        Ok(unsafe { object(mesh, "mesh")? }.core.total_requests())
    })
}

/// Failed requests recorded on this mesh (0 if `mesh` is NULL).
///
/// # Safety
/// `mesh` must be NULL or a live mesh.
#[no_mangle]
pub unsafe extern "C" fn dmsc_service_mesh_get_failed_requests(mesh: *mut DMSCServiceMesh) -> u64 {
    // SAFETY: checked for NULL; validity is the caller's contract.
    guard(0, || {
        Ok(unsafe { object(mesh, "mesh")? }.core.failed_requests())
    })
}
