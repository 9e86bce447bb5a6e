//! Realtime over real sockets: event log, listener, hub, sessions.
