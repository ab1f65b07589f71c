//! Upstream's validation for each served kind, returning field causes for a 422 Invalid.
//! (Stub: being implemented.)
