//! The node agent, berth's kubelet: it registers its Node, keeps the Node's Lease fresh, turns the Pods bound to the
//! Node into containers through a [`berth_runtime::ContainerRuntime`], and writes back what really happens to them.
//!
//! It talks to the cluster only through the Kubernetes API (kube-rs), exactly as a remote agent would, and to
//! containers only through the runtime trait. It never touches the store.

pub mod probe;
pub mod prober;
pub mod server;
pub mod volume;
