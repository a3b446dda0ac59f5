//! `edgectl`: one binary for the node daemon and the command line. Parses
//! arguments and dispatches to a handler in `cli/`; no logic lives here.

mod cli;

/// libcontainer clones the daemon with raw `clone3`, so the child is a copy
/// of one thread that may need an allocator lock another thread held at that
/// instant; with glibc's malloc a create hung in `realloc` about once in a
/// few hundred containers. mimalloc's thread-local heaps take no such lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use cli::args::{Cli, Command};

/// mimalloc's `arena_eager_commit` option (mimalloc.h, v2 and v3 alike).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// By default mimalloc commits its arenas eagerly on Linux (an overcommit
/// system): an idle node then holds ~17 MiB of heap it never uses, which
/// alone broke the 30 MiB idle budget of a voter (anonymous RSS 21 MiB, 4 MiB
/// with lazy commit). The option only counts before mimalloc's first
/// allocation, which Rust's runtime makes before `main`: so this runs from
/// `.init_array`, allocating nothing itself. `MIMALLOC_ARENA_EAGER_COMMIT`
/// in the environment still wins.
extern "C" fn tune_allocator() {
    // SAFETY: getenv reads the environment, which nothing writes this early;
    // mi_option_set stores an option value. Both run before any thread.
    unsafe {
        if libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
    }
}

#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

fn main() {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", cli::errors::render(&e));
            std::process::exit(1);
        }
    }
}

/// Logs go to stderr (`EDGECTL_LOG`, in EnvFilter syntax, picks the levels).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGECTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,quinn=warn"))
        // libcontainer and libcgroups also log from the cloned child, where
        // the writer's lock may be held by a thread that does not exist
        // there: the child hangs. Their errors reach us as results anyway.
        .add_directive(silenced("libcontainer"))
        .add_directive(silenced("libcgroups"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn silenced(target: &'static str) -> tracing_subscriber::filter::Directive {
    format!("{target}=off")
        .parse()
        .expect("a constant target=off directive parses")
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    // Node-local container commands stay off the async runtime: libcontainer
    // forks, and these commands own the process.
    match &cli.command {
        Command::Image(_) | Command::Run(_) | Command::Reset { .. } => return run_local(cli),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match &cli.command {
            Command::Init(args) => cli::daemon::init(&cli.data_dir, args.clone()).await?,
            Command::Join(args) => cli::daemon::join(&cli.data_dir, args.clone()).await?,
            Command::Serve(args) => cli::daemon::serve(&cli.data_dir, args.clone()).await?,
            Command::Token(command) => cli::admin::token(&cli, command).await?,
            Command::Node(command) => cli::admin::node(&cli, command).await?,
            Command::Cluster(command) => cli::admin::cluster(&cli, command).await?,
            Command::Kv(command) => cli::admin::kv(&cli, command).await?,
            Command::Apply(args) => cli::orchestration::apply(&cli, args).await?,
            Command::Get(command) => cli::orchestration::get(&cli, command).await?,
            Command::Describe(command) => cli::orchestration::describe(&cli, command).await?,
            Command::Scale(args) => cli::orchestration::scale(&cli, args).await?,
            Command::Logs(args) => cli::orchestration::logs(&cli, args).await?,
            Command::Exec(args) => {
                let code = cli::orchestration::exec(&cli, args).await?;
                if code != 0 {
                    std::process::exit(code);
                }
            }
            Command::Delete(command) => cli::orchestration::delete(&cli, command).await?,
            Command::Rollback(command) => cli::orchestration::rollback(&cli, command).await?,
            Command::Rollout(command) => cli::rollout::rollout(&cli, command).await?,
            Command::Secret(command) => cli::objects::secret(&cli, command).await?,
            Command::Config(command) => cli::objects::config(&cli, command).await?,
            Command::Volume(command) => cli::volumes::volume(&cli, command).await?,
            Command::Image(_) | Command::Run(_) | Command::Reset { .. } => {
                unreachable!("handled above")
            }
        }
        Ok(0)
    })
}

fn run_local(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Image(command) => {
            cli::local::image(command, &cli.data_dir, cli.output).map(|()| 0)
        }
        Command::Run(args) => cli::local::run(args, &cli.data_dir),
        Command::Reset { keep_data } => cli::reset::reset(&cli.data_dir, keep_data).map(|()| 0),
        _ => unreachable!("only local commands reach here"),
    }
}
