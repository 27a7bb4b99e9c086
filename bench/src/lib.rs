//! tidelog benchmark suite.
