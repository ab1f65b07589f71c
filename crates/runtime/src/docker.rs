//! The Docker implementation of [`crate::ContainerRuntime`], through bollard. (Being written.)
