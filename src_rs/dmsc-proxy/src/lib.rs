//! The dmsc sidecar's data plane.
//!
//! A tokio engine ([`engine::Engine`]) serves HTTP/1.1 and TCP listeners. Each
//! HTTP request is parsed strictly ([`http1`]), routed ([`route`]), passed
//! through the resilience policies ([`policy`]) and sent to a host picked by
//! its cluster ([`cluster`]) over a pooled connection ([`pool`]); everything is
//! counted in [`stats`]. The Python layer builds the [`config::Config`],
//! feeds discovered endpoints and serves the admin API; nothing here calls
//! back into Python.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod http1;
pub mod policy;
pub mod pool;
pub mod route;
pub mod server;
pub mod stats;
pub mod tcp;

pub use config::Config;
pub use engine::Engine;
pub use error::ConfigError;
