//! Guest init: what `pkeys-suite` does when it runs as PID 1 (see docs/protocol.md).
