//! `ferroserve-core` owns the vocabulary every other crate shares.
