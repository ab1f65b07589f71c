//! Per-kind field-selector support: which field labels a kind accepts and their values on an object.
//! (Stub: being implemented.)
