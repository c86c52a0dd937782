//! Which optional parts this build of the library has (Cargo features).

use std::ffi::c_uint;

use crate::error::{Failure, FfiResult, DMSC_ERR_UNSUPPORTED};

/// The service mesh itself (configs, endpoints, meshes).
pub const DMSC_FEATURE_SERVICE_MESH: c_uint = 1 << 0;
/// Mutual TLS policy.
pub const DMSC_FEATURE_MTLS: c_uint = 1 << 1;
/// Circuit breaking.
pub const DMSC_FEATURE_CIRCUIT_BREAKER: c_uint = 1 << 2;
/// W3C trace context.
pub const DMSC_FEATURE_TRACING: c_uint = 1 << 3;
/// Request metrics.
pub const DMSC_FEATURE_METRICS: c_uint = 1 << 4;
/// DNS-style service names.
pub const DMSC_FEATURE_DNS: c_uint = 1 << 5;

const COMPILED: [(bool, c_uint); 6] = [
    (cfg!(feature = "service-mesh"), DMSC_FEATURE_SERVICE_MESH),
    (cfg!(feature = "service-mesh-mtls"), DMSC_FEATURE_MTLS),
    (
        cfg!(feature = "service-mesh-circuit-breaker"),
        DMSC_FEATURE_CIRCUIT_BREAKER,
    ),
    (cfg!(feature = "service-mesh-tracing"), DMSC_FEATURE_TRACING),
    (cfg!(feature = "service-mesh-metrics"), DMSC_FEATURE_METRICS),
    (cfg!(feature = "service-mesh-dns"), DMSC_FEATURE_DNS),
];

/// The `DMSC_FEATURE_*` bits compiled into this library.
#[no_mangle]
pub extern "C" fn dmsc_features() -> c_uint {
    COMPILED
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit)
}

/// Refuses a call of `function` when the feature `bit` is compiled out.
pub fn require_compiled(function: &str, bit: c_uint) -> FfiResult<()> {
    if dmsc_features() & bit == 0 {
        return Err(Failure::new(
            DMSC_ERR_UNSUPPORTED,
            format!("{function}: this build of libdmsc was compiled without that feature"),
        ));
    }
    Ok(())
}

/// Refuses to turn on the setting `field` when its feature is compiled out.
pub fn require(field: &str, enabled: bool) -> FfiResult<()> {
    let bit = match field {
        "enable_mtls" => DMSC_FEATURE_MTLS,
        "enable_circuit_breaker" => DMSC_FEATURE_CIRCUIT_BREAKER,
        "enable_tracing" => DMSC_FEATURE_TRACING,
        "enable_metrics" => DMSC_FEATURE_METRICS,
        _ => return Ok(()),
    };
    if enabled && dmsc_features() & bit == 0 {
        return Err(Failure::new(
            DMSC_ERR_UNSUPPORTED,
            format!("{field}: this build of libdmsc was compiled without that feature"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_features_match_cargo_features() {
        let bits = dmsc_features();
        assert_eq!(
            bits & DMSC_FEATURE_MTLS != 0,
            cfg!(feature = "service-mesh-mtls")
        );
        assert_eq!(
            bits & DMSC_FEATURE_DNS != 0,
            cfg!(feature = "service-mesh-dns")
        );
        let mtls = require("enable_mtls", true);
        assert_eq!(mtls.is_ok(), cfg!(feature = "service-mesh-mtls"));
        // Turning a feature off is always possible.
        assert!(require("enable_mtls", false).is_ok());
        let resolve = require_compiled("dmsc_service_mesh_resolve", DMSC_FEATURE_DNS);
        assert_eq!(resolve.is_ok(), cfg!(feature = "service-mesh-dns"));
    }
}
