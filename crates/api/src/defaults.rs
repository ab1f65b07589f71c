//! Upstream's defaulting for each served kind, applied on create and update so `-o yaml` looks like upstream's.
//! (Stub: being implemented.)
