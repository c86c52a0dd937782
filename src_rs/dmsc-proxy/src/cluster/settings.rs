//! Building a cluster's parts from its config, with errors naming the field.

use std::net::{SocketAddr, ToSocketAddrs};

use dmsc_core::breaker::{CircuitBreakerConfig, WindowType};
use dmsc_core::clock::Nanos;

use super::EndpointSpec;
use crate::config;
use crate::error::ConfigError;

pub(super) fn host_breaker_config(
    breaker: &config::HostBreaker,
    path: &str,
) -> Result<CircuitBreakerConfig, ConfigError> {
    let config = CircuitBreakerConfig {
        failure_rate_threshold: breaker.failure_rate,
        // Slow calls are the route timeout's business, not the breaker's.
        slow_call_rate_threshold: 1.0,
        slow_call_duration_threshold: Nanos::MAX,
        window_type: WindowType::CountBased,
        window_size: u64::from(breaker.window),
        minimum_number_of_calls: u64::from(breaker.minimum_requests),
        wait_duration_in_open_state: breaker.open_ms.saturating_mul(1_000_000),
        permitted_calls_in_half_open_state: u64::from(breaker.half_open_requests),
        max_wait_in_half_open_state: 0,
    };
    config.validate().map_err(|err| {
        let field = match err.argument {
            "failure_rate_threshold" => "failure_rate",
            "window_size" => "window",
            "minimum_number_of_calls" => "minimum_requests",
            "permitted_calls_in_half_open_state" => "half_open_requests",
            other => other,
        };
        ConfigError::new(format!("{path}.host_breaker.{field}"), err.reason)
    })?;
    Ok(config)
}

/// Parses `HOST:PORT`; names are resolved once, when the config is loaded.
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    match text.to_socket_addrs() {
        Ok(mut addresses) => addresses
            .next()
            .ok_or_else(|| format!("{text:?} resolves to no address")),
        Err(err) => Err(format!("expected HOST:PORT, got {text:?} ({err})")),
    }
}

pub(super) fn static_endpoints(
    config: &config::Cluster,
    path: &str,
) -> Result<Vec<EndpointSpec>, ConfigError> {
    let mut specs: Vec<EndpointSpec> = Vec::with_capacity(config.endpoints.len());
    for (i, endpoint) in config.endpoints.iter().enumerate() {
        let (text, weight) = (endpoint.address(), endpoint.weight());
        let at = format!("{path}.endpoints[{i}]");
        if weight == 0 {
            return Err(ConfigError::new(
                format!("{at}.weight"),
                "must be at least 1, got 0",
            ));
        }
        let address = parse_address(text).map_err(|msg| ConfigError::new(at.clone(), msg))?;
        if specs.iter().any(|s| s.address == address) {
            return Err(ConfigError::new(
                at,
                format!("{address} is listed more than once"),
            ));
        }
        specs.push(EndpointSpec {
            address,
            weight,
            healthy: true,
        });
    }
    Ok(specs)
}
