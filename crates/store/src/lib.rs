//! A narrow, revision-based key-value store: the only place berth's state lives. (Stub: being implemented.)
