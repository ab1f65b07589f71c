//! The Kubernetes-compatible API server. (Being implemented.)
