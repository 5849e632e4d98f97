//! The typed meshd configuration, read from a UCI file.
