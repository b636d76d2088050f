//! The `repro` command line: argument parsing and dispatch. `main.rs` only
//! calls [`main`].
//!
//! Exit codes: 0 success; 1 a node or a check failed; 2 bad input (YAML,
//! arguments, a stale plan). Errors never panic.

mod bench;
mod cancel;
mod diff;
mod gitrev;
mod inspect;
mod jobs;
mod load;
mod metrics;
mod remote;
mod run;
mod status;
mod verify;

use crate::project;
use crate::spec::SpecError;
use clap::{Args, Parser, Subcommand};
pub use load::{Loaded, load};
use std::path::PathBuf;
use std::process::ExitCode;

/// Regenerates "The False Promise of Imitating Proprietary LLMs" from
/// declarative YAML pipelines, with a content-addressed cache.
#[derive(Parser, Debug)]
#[command(name = "repro", version, about, long_about = None, arg_required_else_help = false)]
pub struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Which pipeline, and param overrides: shared by every verb.
#[derive(Args, Debug, Clone, Default)]
pub struct PipelineArgs {
    /// Pipeline: a YAML path or a name in pipelines/ (default: the default pipeline).
    #[arg(short = 'p', long = "pipeline", value_name = "PIPELINE")]
    pub pipeline: Option<String>,
    /// Override a pipeline param, e.g. `-s seed=3` (repeatable).
    #[arg(short = 's', long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run what is not cached (everything, or --only nodes and their upstream).
    Run(run::RunArgs),
    /// Render the report nodes (tables, figures, pages) from the cache only;
    /// never runs a compute node. Results that are not cached show as dashes.
    Report {
        /// Pipeline: a YAML path or a name in pipelines/.
        #[arg(value_name = "PIPELINE")]
        positional: Option<String>,
        /// The pipeline and its overrides.
        #[command(flatten)]
        p: PipelineArgs,
    },
    /// List every node as cached / stale / missing, with the reason.
    Status {
        /// The pipeline and its overrides.
        #[command(flatten)]
        p: PipelineArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show a node's key ingredients and what changed since its last cached run.
    Explain {
        /// Node: an instance id (`train[size=s]`), a node name, or a selector.
        node: String,
        /// The pipeline and its overrides.
        #[command(flatten)]
        p: PipelineArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The metrics of every instance as a table: coordinates and metrics as
    /// columns, one row per instance; `--diff [REV]` compares with a git revision.
    Metrics(metrics::MetricsArgs),
    /// Which nodes' keys changed between a git revision (default HEAD) and
    /// the working tree, and why, field by field.
    Diff(diff::DiffArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into --dir.
    Man {
        /// Write repro.1, repro-run.1, ... into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the graph as DOT (default) or Mermaid.
    Dag {
        /// The pipeline and its overrides.
        #[command(flatten)]
        p: PipelineArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: inspect::DagFormat,
    },
    /// Check (for CI) that every node is cached for its current key, every
    /// object matches its digest, and the lock file is current.
    Verify(verify::VerifyArgs),
    /// Remove records and objects that no lock file references (dry run unless --force).
    Gc {
        /// The pipeline and its overrides.
        #[command(flatten)]
        p: PipelineArgs,
        /// Delete for real.
        #[arg(long)]
        force: bool,
    },
    /// Send records and objects the remote lacks (`--blobs`: heavy blobs too).
    Push(remote::SyncArgs),
    /// Fetch records and objects from a remote, verifying every digest.
    Pull(remote::SyncArgs),
    /// The remotes of `repro push` / `repro pull`.
    Remote {
        /// What to do.
        #[command(subcommand)]
        what: remote::RemoteCommand,
    },
    /// Inspect the cache.
    Cache {
        /// What to do.
        #[command(subcommand)]
        what: CacheCommand,
    },
    /// Write the default pipeline (the miniature), its tiny variant and
    /// their templates into the current directory (never overwrites).
    Init,
    /// Training tokens/s of one model config on random tokens (see bench/train_speed.sh).
    BenchTrain(bench::BenchTrainArgs),
    /// Cancel the Slurm jobs that runs of this pipeline submitted and that
    /// are still queued or running.
    Cancel {
        /// The pipeline and its overrides.
        #[command(flatten)]
        p: PipelineArgs,
    },
    /// Run one prepared node (what a cluster job runs; not for hand use).
    #[command(hide = true)]
    ExecNode {
        /// The node's work directory (holds node.json).
        work: PathBuf,
    },
    /// List the ops, their versions and params.
    Ops {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `repro cache ...`
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Print the record of a key (a unique prefix is enough).
    Show {
        /// Key or prefix.
        key: String,
        /// The pipeline and its overrides.
        #[command(flatten)]
        p: PipelineArgs,
    },
}

/// A command failure and its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad YAML: rendered with its snippet; exit 2.
    Spec(Box<SpecError>),
    /// Bad arguments or other bad input; exit 2.
    Input(String),
    /// A node or check failed, or the cache is unusable; exit 1.
    Failed(String),
    /// Already reported; just exit with this code.
    Exit(u8),
}

impl From<SpecError> for Failure {
    fn from(e: SpecError) -> Self {
        Failure::Spec(Box::new(e))
    }
}

impl From<crate::cache::CacheError> for Failure {
    fn from(e: crate::cache::CacheError) -> Self {
        Failure::Failed(e.to_string())
    }
}

/// Result of a verb.
pub type Outcome = Result<(), Failure>;

/// Entry point: parses arguments, runs the verb, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // Unwrapped lines keep `file:line:col: key: message` greppable.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Spec(e)) => {
            eprintln!("{:?}", miette::Report::new(*e));
            ExitCode::from(2)
        }
        Err(Failure::Input(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Exit(c)) => ExitCode::from(c),
    }
}

fn dispatch(cli: Cli) -> Outcome {
    if let Some(d) = &cli.directory {
        std::env::set_current_dir(d)
            .map_err(|e| Failure::Input(format!("-C {}: {e}", d.display())))?;
    }
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Report { positional, p } => run::report(&p, positional.as_deref()),
        Command::Status { p, json } => status::status(&p, json),
        Command::Explain { node, p, json } => status::explain(&p, &node, json),
        Command::Dag { p, format } => inspect::dag(&p, format),
        Command::Metrics(a) => metrics::metrics(a),
        Command::Diff(a) => diff::diff(a),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "repro", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir),
        Command::Verify(a) => verify::verify(a),
        Command::Gc { p, force } => inspect::gc(&p, force),
        Command::Cache {
            what: CacheCommand::Show { key, p },
        } => inspect::cache_show(&p, &key),
        Command::Ops { json } => inspect::ops(json),
        Command::Push(a) => remote::sync(a, remote::Direction::Push),
        Command::Pull(a) => remote::sync(a, remote::Direction::Pull),
        Command::Remote {
            what: remote::RemoteCommand::List,
        } => remote::list(),
        Command::Cancel { p } => cancel::cancel(&p),
        Command::ExecNode { work } => match crate::exec::task::exec_node(&work) {
            0 => Ok(()),
            c => Err(Failure::Exit(c.clamp(1, 255) as u8)),
        },
        Command::BenchTrain(a) => bench::bench_train(a),
        Command::Init => init(),
    }
}

/// `repro man`: the man page from the same clap definitions (clap_mangen).
fn man(dir: Option<PathBuf>) -> Outcome {
    let cmd = <Cli as clap::CommandFactory>::command();
    match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .and_then(|_| clap_mangen::generate_to(cmd, &d))
                .map_err(|e| Failure::Failed(format!("{}: {e}", d.display())))?;
            eprintln!("wrote the man pages into {}", d.display());
            Ok(())
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Failure::Failed(format!("rendering the man page: {e}")))?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| Failure::Failed(format!("writing the man page: {e}")))
        }
    }
}

fn init() -> Outcome {
    let dir = std::env::current_dir().map_err(|e| Failure::Input(e.to_string()))?;
    let written = project::init(&dir).map_err(|e| Failure::Failed(format!("init: {e}")))?;
    if written.is_empty() {
        eprintln!("repro init: every file of the default pipeline is already here");
    }
    for p in written {
        eprintln!(
            "  wrote    {}",
            p.strip_prefix(&dir).unwrap_or(&p).display()
        );
    }
    eprintln!(
        "next: `repro run` (the miniature, a few minutes on two cores) or `repro run -p tiny` (seconds)"
    );
    Ok(())
}

/// The project root, or an input error.
pub fn root() -> Result<PathBuf, Failure> {
    let cwd =
        std::env::current_dir().map_err(|e| Failure::Input(format!("current directory: {e}")))?;
    project::find_root(&cwd).ok_or_else(|| {
        Failure::Input(format!(
            "{} is not inside a repro project (no `pipelines/` directory or `repro.toml` here or above)",
            cwd.display()
        ))
    })
}
