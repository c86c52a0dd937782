//! Algorithms and state of the dmsc service mesh.
//!
//! Everything here is plain Rust with no Python or C concerns: the PyO3
//! bindings (`dmsc-py`) and the C ABI (`dmsc-capi`) are thin layers over it,
//! so the Python layer, native programs and the sidecar share one
//! implementation of each algorithm.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod breaker;
pub mod clock;
pub mod error;
pub mod hash;
pub mod mesh;
pub mod metrics;
pub mod pick;
pub mod ratelimit;
pub mod registry;
pub mod remote;
pub mod trace;

pub use error::InvalidArgument;
