//! Test support: starting berth and fetching kubectl. (Being implemented.)
