//! `repro`: regenerates "The False Promise of Imitating Proprietary LLMs"
//! (Gudibande et al., 2023) from declarative YAML pipelines.
//!
//! YAML (`spec`) compiles to a content-hashed DAG (`graph`); the scheduler
//! (`exec`) runs each node's op (`ops`) unless the cache (`cache`) already
//! holds a record for its key; the command line (`cli`) ties them together.
//!
//! The modules are layered, bottom to top: `rng` and `op` (the op contract);
//! `cache`, `config`, `model`; `eval`, `mini`, `project`; `api`, `data`,
//! `torch`; `report`; `spec`; `ops`; `graph`; `exec`; `remote`; `cli`. A
//! module imports only lower layers (`tests/layering.rs` enforces it).

// `SpecError` carries its source snippet for rendering; errors are the cold
// path, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod cache;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod exec;
pub mod graph;
pub mod mini;
pub mod model;
pub mod op;
pub mod ops;
pub mod project;
pub mod remote;
pub mod report;
pub mod rng;
pub mod spec;
pub mod torch;
