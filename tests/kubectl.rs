//! kubectl end-to-end tests. (Being implemented.)

mod support;
