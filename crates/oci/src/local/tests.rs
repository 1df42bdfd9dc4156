//! Unit tests of the local sources.
