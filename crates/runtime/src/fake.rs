//! An in-memory [`crate::ContainerRuntime`] for unit tests. (Being written.)
