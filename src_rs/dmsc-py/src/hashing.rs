//! Consistent hashing: `KetamaRing`, `RingHash`, `Maglev` and `xxhash64`.
//!
//! The core answers with host indices; these classes keep the host names as
//! Python strings built once, so a lookup returns a new reference to an
//! existing `str` and never allocates. Keys are hashed straight from the
//! `str`'s UTF-8 buffer or the `bytes` object, without copying.

use dmsc_core::hash::{self, KetamaRing, Maglev, RingHash};
use dmsc_core::InvalidArgument;
use numpy::{PyArray1, PyArrayLike1};
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors::value_error;

/// Batches at least this long are looked up with the GIL released.
const DETACH_BATCH: usize = 4096;

/// The bytes a key is hashed from: a `str`'s UTF-8 encoding or a `bytes` object's content.
#[inline]
fn key_bytes<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    if let Ok(text) = key.cast::<PyString>() {
        return Ok(text.to_str()?.as_bytes());
    }
    if let Ok(bytes) = key.cast::<PyBytes>() {
        return Ok(bytes.as_bytes());
    }
    Err(PyTypeError::new_err(format!(
        "key must be str or bytes, not {}",
        key.get_type().name()?
    )))
}

/// Looks every key of `keys` up with `pick_many` and returns the names as a list.
fn names_for_keys<'py>(
    keys: &Bound<'py, PyAny>,
    names: &[Py<PyString>],
    pick_many: impl Fn(&[&[u8]]) -> Vec<usize> + Sync,
) -> PyResult<Bound<'py, PyList>> {
    let py = keys.py();
    if keys.is_instance_of::<PyString>() || keys.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "keys must be a sequence of keys, not a single str or bytes",
        ));
    }
    let items: Vec<Bound<'py, PyAny>> = match keys.cast::<PyList>() {
        Ok(list) => list.iter().collect(),
        Err(_) => keys.try_iter()?.collect::<PyResult<_>>()?,
    };
    // The items stay referenced, and str/bytes contents are immutable: safe to read detached.
    let bytes = items
        .iter()
        .map(key_bytes)
        .collect::<PyResult<Vec<&[u8]>>>()?;
    let picked = if bytes.len() >= DETACH_BATCH {
        py.detach(|| pick_many(&bytes))
    } else {
        pick_many(&bytes)
    };
    PyList::new(py, picked.into_iter().map(|i| names[i].clone_ref(py)))
}

/// Picks a host index for every hash of `hashes`, as a numpy int64 array.
fn indices_for_hashes<'py>(
    py: Python<'py>,
    hashes: &PyArrayLike1<'py, u64>,
    pick: impl Fn(u64) -> usize + Sync,
) -> Bound<'py, PyArray1<i64>> {
    let indices: Vec<i64> = match hashes.as_slice() {
        Ok(slice) if slice.len() >= DETACH_BATCH => {
            py.detach(|| slice.iter().map(|&h| pick(h) as i64).collect())
        }
        Ok(slice) => slice.iter().map(|&h| pick(h) as i64).collect(),
        Err(_) => hashes.as_array().iter().map(|&h| pick(h) as i64).collect(),
    };
    PyArray1::from_vec(py, indices)
}

/// Host names of a `Sequence[str]`, as Python strings.
fn host_names<'py>(hosts: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
    if hosts.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "hosts must be a sequence of str, not a str",
        ));
    }
    hosts
        .try_iter()?
        .enumerate()
        .map(|(i, host)| {
            host?
                .cast_into::<PyString>()
                .map_err(|_| PyTypeError::new_err(format!("hosts: host {i} must be a str")))
        })
        .collect()
}

/// The UTF-8 text of each name, borrowed from the Python strings.
fn texts<'a>(names: &'a [Bound<'_, PyString>]) -> PyResult<Vec<&'a str>> {
    names.iter().map(|n| n.to_str()).collect()
}

fn unbind_all(names: Vec<Bound<'_, PyString>>) -> Vec<Py<PyString>> {
    names.into_iter().map(Bound::unbind).collect()
}

/// An integer weight; ints beyond 64 bits are refused as out of range.
fn weight_arg(argument: &'static str, value: &Bound<'_, PyAny>) -> PyResult<i64> {
    value.extract::<i64>().map_err(|err| {
        if err.is_instance_of::<PyOverflowError>(value.py()) {
            value_error(InvalidArgument::new(
                argument,
                format!("weight {value} is out of range"),
            ))
        } else {
            err
        }
    })
}

fn weights_arg(weights: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<i64>>> {
    weights
        .map(|ws| {
            ws.try_iter()?
                .map(|w| weight_arg("weights", &w?))
                .collect::<PyResult<Vec<i64>>>()
        })
        .transpose()
}

fn size_arg(argument: &'static str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| {
        value_error(InvalidArgument::new(
            argument,
            format!("must not be negative, got {value}"),
        ))
    })
}

/// libketama's consistent-hash continuum (MD5, 160 points per server, scaled by weight).
///
/// Maps keys to the same node as libketama and the clients compatible with it
/// for the same weighted server list, in the same order. `nodes` maps each
/// node name to a positive integer weight.
#[pyclass(module = "dmsc_fast._native", name = "KetamaRing", frozen)]
pub struct PyKetamaRing {
    ring: KetamaRing,
    names: Vec<Py<PyString>>,
    weights: Vec<i64>,
}

#[pymethods]
impl PyKetamaRing {
    #[new]
    fn new(nodes: &Bound<'_, PyAny>) -> PyResult<Self> {
        let items = nodes
            .call_method0("items")
            .map_err(|_| PyTypeError::new_err("nodes must be a mapping of name to weight"))?;
        let mut names = Vec::new();
        let mut weights = Vec::new();
        for item in items.try_iter()? {
            let (name, weight): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
            let name = name
                .cast_into::<PyString>()
                .map_err(|_| PyTypeError::new_err("nodes: node names must be str"))?;
            weights.push(weight_arg("nodes", &weight)?);
            names.push(name);
        }
        let pairs: Vec<(&str, i64)> = texts(&names)?
            .into_iter()
            .zip(weights.iter().copied())
            .collect();
        let ring = KetamaRing::new(&pairs).map_err(value_error)?;
        Ok(Self {
            ring,
            names: unbind_all(names),
            weights,
        })
    }

    /// The node a key (str or bytes) maps to.
    fn get(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyString>> {
        let node = self.ring.get(key_bytes(key)?);
        Ok(self.names[node].clone_ref(key.py()))
    }

    /// The node of every key of `keys`, as a list.
    fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        names_for_keys(keys, &self.names, |keys| self.ring.get_many(keys))
    }

    /// libketama's 32-bit hash of a key: the first four bytes of its MD5, little-endian.
    #[staticmethod]
    fn hash(key: &Bound<'_, PyAny>) -> PyResult<u32> {
        Ok(KetamaRing::hash(key_bytes(key)?))
    }

    /// Index of the node owning the first point at or after the 32-bit hash `h`.
    fn pick_hash(&self, h: u32) -> usize {
        self.ring.pick_hash(h)
    }

    /// The continuum as `(point, node)` pairs in ring order (libketama's `get_points`).
    fn points<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pairs = self
            .ring
            .points()
            .iter()
            .zip(self.ring.owners())
            .map(|(&point, &owner)| (point, self.names[owner as usize].clone_ref(py)));
        PyList::new(py, pairs)
    }

    /// The node names and weights the ring was built from, in order.
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, weight) in self.names.iter().zip(&self.weights) {
            dict.set_item(name.bind(py), weight)?;
        }
        Ok(dict)
    }

    fn __len__(&self) -> usize {
        self.ring.node_count()
    }

    fn __repr__(&self) -> String {
        format!(
            "KetamaRing({} nodes, {} points)",
            self.ring.node_count(),
            self.ring.points().len()
        )
    }
}

/// Envoy's `ring_hash` load balancer: an xxHash64 ring of `"<host>_<i>"` entries.
///
/// Picks the same host as Envoy for the same 64-bit hash, given the hosts as
/// Envoy hashes them (endpoint `hash_key` metadata, else hostname with
/// `use_hostname_for_hashing`, else `ip:port`), the same weights and ring sizes.
#[pyclass(module = "dmsc_fast._native", name = "RingHash", frozen)]
pub struct PyRingHash {
    ring: RingHash,
    names: Vec<Py<PyString>>,
}

#[pymethods]
impl PyRingHash {
    #[new]
    #[pyo3(signature = (hosts, weights=None, min_ring_size=1024, max_ring_size=8388608))]
    fn new(
        py: Python<'_>,
        hosts: &Bound<'_, PyAny>,
        weights: Option<&Bound<'_, PyAny>>,
        min_ring_size: i64,
        max_ring_size: i64,
    ) -> PyResult<Self> {
        let names = host_names(hosts)?;
        let weights = weights_arg(weights)?;
        let min_ring_size = size_arg("min_ring_size", min_ring_size)?;
        let max_ring_size = size_arg("max_ring_size", max_ring_size)?;
        let keys = texts(&names)?;
        // Up to 8M xxHash64 entries: build without holding the GIL.
        let ring = py
            .detach(|| RingHash::new(&keys, weights.as_deref(), min_ring_size, max_ring_size))
            .map_err(value_error)?;
        Ok(Self {
            ring,
            names: unbind_all(names),
        })
    }

    /// Index of the host Envoy picks for the 64-bit hash `h`.
    fn pick_hash(&self, h: u64) -> usize {
        self.ring.pick_hash(h)
    }

    /// The host for a key (str or bytes), hashed with xxHash64 seed 0 as Envoy hashes a header.
    fn get(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyString>> {
        let host = self.ring.get(key_bytes(key)?);
        Ok(self.names[host].clone_ref(key.py()))
    }

    /// The host of every key of `keys`, as a list.
    fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        names_for_keys(keys, &self.names, |keys| {
            keys.iter().map(|key| self.ring.get(key)).collect()
        })
    }

    /// Host indices for an array of 64-bit hashes (numpy uint64), as a numpy int64 array.
    fn pick_hash_many<'py>(
        &self,
        py: Python<'py>,
        hashes: PyArrayLike1<'py, u64>,
    ) -> Bound<'py, PyArray1<i64>> {
        indices_for_hashes(py, &hashes, |h| self.ring.pick_hash(h))
    }

    /// The ring as two numpy arrays: sorted entry hashes (uint64) and their host indices (int64).
    fn ring<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let hashes = PyArray1::from_slice(py, self.ring.hashes());
        let owners: Vec<i64> = self.ring.owners().iter().map(|&o| i64::from(o)).collect();
        PyTuple::new(
            py,
            [hashes.into_any(), PyArray1::from_vec(py, owners).into_any()],
        )
    }

    /// The host keys, in the order indices refer to.
    #[getter]
    fn hosts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.names.iter().map(|n| n.clone_ref(py)))
    }

    fn __len__(&self) -> usize {
        self.ring.host_count()
    }

    fn __repr__(&self) -> String {
        format!(
            "RingHash({} hosts, {} entries)",
            self.ring.host_count(),
            self.ring.hashes().len()
        )
    }
}

/// Envoy's `maglev` load balancer: the Maglev lookup table, filled with Envoy's weighting.
///
/// Picks `table[h % table_size]`, the same host as Envoy for the same 64-bit
/// hash given the same host keys, weights and (prime) table size.
#[pyclass(module = "dmsc_fast._native", name = "Maglev", frozen)]
pub struct PyMaglev {
    maglev: Maglev,
    names: Vec<Py<PyString>>,
}

#[pymethods]
impl PyMaglev {
    #[new]
    #[pyo3(signature = (hosts, weights=None, table_size=65537))]
    fn new(
        py: Python<'_>,
        hosts: &Bound<'_, PyAny>,
        weights: Option<&Bound<'_, PyAny>>,
        table_size: i64,
    ) -> PyResult<Self> {
        let names = host_names(hosts)?;
        let weights = weights_arg(weights)?;
        let table_size = size_arg("table_size", table_size)?;
        let keys = texts(&names)?;
        let maglev = py
            .detach(|| Maglev::new(&keys, weights.as_deref(), table_size))
            .map_err(value_error)?;
        Ok(Self {
            maglev,
            names: unbind_all(names),
        })
    }

    /// Index of the host Envoy picks for the 64-bit hash `h`: `table()[h % table_size]`.
    fn pick_hash(&self, h: u64) -> usize {
        self.maglev.pick_hash(h)
    }

    /// The host for a key (str or bytes), hashed with xxHash64 seed 0 as Envoy hashes a header.
    fn get(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyString>> {
        let host = self.maglev.get(key_bytes(key)?);
        Ok(self.names[host].clone_ref(key.py()))
    }

    /// The host of every key of `keys`, as a list.
    fn get_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        names_for_keys(keys, &self.names, |keys| {
            keys.iter().map(|key| self.maglev.get(key)).collect()
        })
    }

    /// Host indices for an array of 64-bit hashes (numpy uint64), as a numpy int64 array.
    fn pick_hash_many<'py>(
        &self,
        py: Python<'py>,
        hashes: PyArrayLike1<'py, u64>,
    ) -> Bound<'py, PyArray1<i64>> {
        indices_for_hashes(py, &hashes, |h| self.maglev.pick_hash(h))
    }

    /// The lookup table: the host index of every slot, as a numpy int64 array.
    fn table<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let table: Vec<i64> = self.maglev.table().iter().map(|&h| i64::from(h)).collect();
        PyArray1::from_vec(py, table)
    }

    /// The host keys, in the order indices refer to.
    #[getter]
    fn hosts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.names.iter().map(|n| n.clone_ref(py)))
    }

    /// Number of slots of the table.
    #[getter]
    fn table_size(&self) -> usize {
        self.maglev.table().len()
    }

    fn __len__(&self) -> usize {
        self.maglev.host_count()
    }

    fn __repr__(&self) -> String {
        format!(
            "Maglev({} hosts, table_size={})",
            self.maglev.host_count(),
            self.maglev.table().len()
        )
    }
}

/// xxHash64 of a key (str as UTF-8, or bytes); seed 0 is what Envoy uses for request keys.
#[pyfunction]
#[pyo3(signature = (key, seed=0))]
fn xxhash64(key: &Bound<'_, PyAny>, seed: u64) -> PyResult<u64> {
    Ok(hash::xxhash64(key_bytes(key)?, seed))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKetamaRing>()?;
    m.add_class::<PyRingHash>()?;
    m.add_class::<PyMaglev>()?;
    m.add_function(wrap_pyfunction!(xxhash64, m)?)?;
    Ok(())
}
