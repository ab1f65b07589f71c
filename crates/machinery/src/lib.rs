//! Generic API machinery with no knowledge of berth's storage or HTTP: the label/field selector grammar and the
//! three PATCH formats (JSON patch, JSON merge patch, strategic merge patch). Pure functions, no I/O.

pub mod patch;
pub mod selector;
