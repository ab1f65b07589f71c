//! Server-side printing: the `meta.k8s.io/v1` Table columns and cells upstream's printers produce per kind.
//! (Stub: being implemented.)
