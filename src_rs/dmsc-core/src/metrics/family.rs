//! Labelled metric families: one child metric per combination of label values.
//!
//! Children are found through [`LabelMap`], a hash of the label values
//! (xxHash64, so no allocation is needed to look one up) behind a
//! reader-writer lock: lookups of existing children share the lock and only
//! the first use of a new combination takes it exclusively. Children are
//! never removed, so a child handed out stays counted.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;
use xxhash_rust::xxh64::xxh64;

use super::text::check_label_name;
use crate::InvalidArgument;

/// The hash of a combination of label values: each value is hashed with
/// xxHash64 seeded by the hash so far and its length, so `("ab", "c")` and
/// `("a", "bc")` differ.
pub fn label_hash<'a>(values: impl IntoIterator<Item = &'a str>) -> u64 {
    values.into_iter().fold(0, |hash, value| {
        xxh64(value.as_bytes(), hash.rotate_left(29) ^ value.len() as u64)
    })
}

/// A hasher that passes through keys that are already hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in for completeness.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

struct Entries<V> {
    by_hash: HashMap<u64, Vec<usize>, BuildHasherDefault<PassThrough>>,
    entries: Vec<(Box<[String]>, V)>,
}

/// Values keyed by label values, in insertion order.
pub struct LabelMap<V> {
    inner: RwLock<Entries<V>>,
}

impl<V> Default for LabelMap<V> {
    fn default() -> Self {
        Self {
            inner: RwLock::new(Entries {
                by_hash: HashMap::default(),
                entries: Vec::new(),
            }),
        }
    }
}

impl<V> LabelMap<V> {
    /// Applies `read` to the value stored for `values` (whose [`label_hash`] is `hash`).
    pub fn find<R>(&self, hash: u64, values: &[&str], read: impl FnOnce(&V) -> R) -> Option<R> {
        let inner = self.inner.read();
        let index = find_index(&inner, hash, values)?;
        Some(read(&inner.entries[index].1))
    }

    /// Applies `read` to the value for `values`, storing `make()` first if there is none.
    ///
    /// `make` runs without the lock held (it may run code that uses this map);
    /// when another thread stores a value first, that one is kept and the
    /// made one dropped.
    pub fn find_or_insert<R, E>(
        &self,
        hash: u64,
        values: &[&str],
        make: impl FnOnce() -> Result<V, E>,
        read: impl FnOnce(&V) -> R,
    ) -> Result<R, E> {
        {
            let inner = self.inner.read();
            if let Some(index) = find_index(&inner, hash, values) {
                return Ok(read(&inner.entries[index].1));
            }
        }
        let value = make()?;
        let mut inner = self.inner.write();
        let index = match find_index(&inner, hash, values) {
            Some(index) => index,
            None => {
                let index = inner.entries.len();
                let key = values.iter().map(|value| (*value).to_owned()).collect();
                inner.entries.push((key, value));
                inner.by_hash.entry(hash).or_default().push(index);
                index
            }
        };
        Ok(read(&inner.entries[index].1))
    }

    /// Calls `visit` with each label-value combination and its value, in insertion order.
    pub fn for_each(&self, mut visit: impl FnMut(&[String], &V)) {
        let inner = self.inner.read();
        for (values, value) in &inner.entries {
            visit(values, value);
        }
    }

    /// Number of stored combinations.
    pub fn len(&self) -> usize {
        self.inner.read().entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn find_index<V>(inner: &Entries<V>, hash: u64, values: &[&str]) -> Option<usize> {
    inner.by_hash.get(&hash)?.iter().copied().find(|&index| {
        let key = &inner.entries[index].0;
        key.len() == values.len() && key.iter().zip(values).all(|(a, b)| a == b)
    })
}

/// Child metrics of type `M`, one per combination of values of `label_names`.
pub struct Family<M> {
    label_names: Box<[String]>,
    make: Box<dyn Fn() -> M + Send + Sync>,
    children: LabelMap<Arc<M>>,
}

impl<M> Family<M> {
    /// A family whose children are made by `make`. Label names must be valid
    /// Prometheus label names, distinct, not reserved (`__` prefix, `reserved`).
    pub fn new(
        label_names: &[&str],
        reserved: &[&str],
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Result<Self, InvalidArgument> {
        for (i, name) in label_names.iter().enumerate() {
            check_label_name(name)?;
            if reserved.contains(name) {
                return Err(InvalidArgument::new(
                    "label_names",
                    format!("{name:?} is reserved for this metric type"),
                ));
            }
            if label_names[..i].contains(name) {
                return Err(InvalidArgument::new(
                    "label_names",
                    format!("{name:?} appears twice"),
                ));
            }
        }
        Ok(Self {
            label_names: label_names.iter().map(|name| (*name).to_owned()).collect(),
            make: Box::new(make),
            children: LabelMap::default(),
        })
    }

    /// The label names, in order.
    pub fn label_names(&self) -> &[String] {
        &self.label_names
    }

    /// The child for `values` (one per label name, in order), made on first use.
    pub fn labels(&self, values: &[&str]) -> Result<Arc<M>, InvalidArgument> {
        self.check_arity(values.len())?;
        let hash = label_hash(values.iter().copied());
        self.children
            .find_or_insert(hash, values, || Ok((self.make)().into()), Arc::clone)
    }

    /// Refuses `count` label values unless it matches the label names.
    pub fn check_arity(&self, count: usize) -> Result<(), InvalidArgument> {
        if count == self.label_names.len() {
            Ok(())
        } else {
            Err(InvalidArgument::new(
                "values",
                format!(
                    "expected {} label values ({}), got {count}",
                    self.label_names.len(),
                    self.label_names.join(", ")
                ),
            ))
        }
    }

    /// Calls `visit` with each child's label values and the child, oldest first.
    pub fn for_each(&self, visit: impl FnMut(&[String], &Arc<M>)) {
        self.children.for_each(visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counter;

    #[test]
    fn same_values_give_the_same_child() {
        let family = Family::new(&["method", "code"], &[], Counter::new).unwrap();
        let a = family.labels(&["GET", "200"]).unwrap();
        a.inc();
        let b = family.labels(&["GET", "200"]).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = family.labels(&["GET", "500"]).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let mut seen = Vec::new();
        family.for_each(|values, child| seen.push((values.join("/"), child.get())));
        assert_eq!(seen, [("GET/200".to_owned(), 1), ("GET/500".to_owned(), 0)]);
    }

    #[test]
    fn value_boundaries_are_part_of_the_key() {
        assert_ne!(label_hash(["ab", "c"]), label_hash(["a", "bc"]));
        let family = Family::new(&["x", "y"], &[], Counter::new).unwrap();
        let a = family.labels(&["ab", "c"]).unwrap();
        let b = family.labels(&["a", "bc"]).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_value() {
        let map = LabelMap::default();
        map.find_or_insert(1, &["a"], || Ok::<_, ()>(10), |_| ())
            .unwrap();
        map.find_or_insert(1, &["b"], || Ok::<_, ()>(20), |_| ())
            .unwrap();
        assert_eq!(map.find(1, &["a"], |v| *v), Some(10));
        assert_eq!(map.find(1, &["b"], |v| *v), Some(20));
        assert_eq!(map.find(1, &["c"], |v| *v), None);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn wrong_label_counts_and_names_are_refused() {
        let family = Family::new(&["method"], &[], Counter::new).unwrap();
        assert_eq!(family.labels(&[]).unwrap_err().argument, "values");
        assert_eq!(family.labels(&["a", "b"]).unwrap_err().argument, "values");
        for bad in [&["1x"][..], &["__name"], &["a", "a"], &["le"], &[""]] {
            let err = Family::new(bad, &["le"], Counter::new).err().unwrap();
            assert_eq!(err.argument, "label_names", "{bad:?}");
        }
    }
}
