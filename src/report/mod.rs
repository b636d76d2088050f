//! Reports: tables rendered with minijinja templates, figures rendered with
//! plotters (embedded DejaVu font, so output is byte-identical across
//! machines), and a self-contained HTML page.

pub mod compare;
pub mod figure;
pub mod inputs;
pub mod metrics;
pub mod predictions;
pub mod template;
