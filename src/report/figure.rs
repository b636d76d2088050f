//! Figure rendering (in progress).
