//! The command line: `cleave [--config FILE] [serve|migrate|create-admin|keys|openapi|graphql-schema|contracts|seed|data|trust]`.

use crate::config::Settings;
use crate::startup::Application;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "cleave", version, about = "A commerce backend: a modular monolith whose modules can run as services.")]
pub struct Cli {
    /// A TOML configuration file (default: ./cleave.toml when present). Environment variables
    /// (CLEAVE_*) override it.
    #[arg(long, global = true, env = "CLEAVE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending migrations to every local module's database, then exit.
    Migrate,
    /// Create an admin account, or give an existing account the admin role.
    CreateAdmin {
        #[arg(long)]
        email: String,
        /// Read from ADMIN_PASSWORD, else from the first line of standard input (never a flag:
        /// flags show up in process lists).
        #[arg(skip)]
        password: (),
    },
    /// Manage token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Print the GraphQL schema (SDL), as committed in docs/schema.graphql.
    GraphqlSchema,
    /// The public contracts (OpenAPI, GraphQL schema, event schemas) and their compatibility.
    Contracts {
        #[command(subcommand)]
        command: ContractsCommand,
    },
    /// Add the demo catalog (about fifty products in five categories); running it again adds
    /// nothing. Needs the catalog module in this process.
    Seed,
    /// Move a module's data between databases.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// The identities the processes of a split deployment prove themselves with.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Write DIR/<process>.nk (one key per process kind, mode 0600), DIR/<process>.env (the
    /// settings each process needs: its key and the keys of the processes it trusts) and
    /// DIR/nats.conf (the broker: one nkey user per process kind, with only the subjects its
    /// part needs). Run again to rotate every key (the previous ones stay trusted), then with
    /// --retire to drop them.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Drop the previous keys kept by the last rotation, and trust the current ones only.
        #[arg(long)]
        retire: bool,
        /// The deployment's `nats.subject_prefix`, which DIR/nats.conf's permissions name.
        #[arg(long, default_value = "cleave")]
        subject_prefix: String,
        /// A host name (or address) the processes and the broker are reached by, for their
        /// certificates (besides the kind's name, localhost and the loopback addresses);
        /// repeat for several.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Copy one module's tables (its outbox, inbox and dead letters included) to another
    /// database, in one transaction, verified by row counts and a checksum per table. Stop the
    /// module's writers first. Safe to run again: an interrupted move leaves the target as it was.
    Move {
        /// The module's name, as in its `modules.<name>` settings (`users`, `orders`, …).
        module: String,
        /// The target: `postgres://…` (the module's tables go in a schema named after it) or
        /// `sqlite://<file>`.
        #[arg(long, env = "TARGET_DATABASE_URL")]
        to: String,
        /// The source; by default the module's database as this configuration has it.
        #[arg(long, env = "SOURCE_DATABASE_URL")]
        from: Option<String>,
        /// Replace the module's rows the target already holds (refused otherwise).
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContractsCommand {
    /// Regenerate the committed contracts from the code: <dir>/openapi.json, <dir>/schema.graphql
    /// and <dir>/events/<type>.schema.json. Refuses a change that would break a client or
    /// consumer of the committed version: that ships as a new version instead.
    Write {
        #[arg(long, default_value = "docs")]
        dir: PathBuf,
    },
    /// Fail when the committed contracts are not what the code generates, or when the code breaks
    /// a client or consumer of any version committed since the check began (git history).
    Check {
        #[arg(long, default_value = "docs")]
        dir: PathBuf,
    },
    /// Print, in words, what changed from OLD to NEW: each a directory of contracts or
    /// `git:<revision>` (the docs directory at that commit). By default, from the committed
    /// contracts in docs/ to what the code generates. Exits with 1 when a change breaks.
    Diff {
        #[arg(long, default_value = "docs")]
        old: String,
        /// Default: the contracts the code generates now.
        #[arg(long)]
        new: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key to the key file (created if missing). The newest key signs from the
    /// next start; older keys stay published so existing tokens keep verifying.
    Generate {
        /// The key file (default: auth.keys_file, or <data_dir>/signing-keys.json).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// Runs the CLI and turns any error into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS provider for the process (ring): the HTTP clients (the wire, OTLP) take it.
    shared_kernel::tls::install_default_provider();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Openapi) = cli.command {
        print!("{}", crate::openapi::document_json());
        return Ok(());
    }
    if let Some(Command::Trust { command: TrustCommand::Init { dir, retire, subject_prefix, hosts } }) = &cli.command {
        let options = crate::trust::InitOptions { retire: *retire, subject_prefix: subject_prefix.clone(), hosts: hosts.clone() };
        for line in crate::trust::init(dir, &options)? {
            println!("{line}");
        }
        return Ok(());
    }
    if let Some(Command::GraphqlSchema) = cli.command {
        print!("{}", crate::graphql::sdl());
        return Ok(());
    }
    if let Some(Command::Contracts { command }) = cli.command {
        return contracts(command);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    let telemetry = crate::telemetry::init(&settings.log, &settings.server.service_name)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(&settings).await,
            Command::CreateAdmin { email, .. } => create_admin(settings, &email).await,
            Command::Keys { command: KeysCommand::Generate { file } } => generate_key(&settings, file),
            Command::Openapi | Command::GraphqlSchema | Command::Contracts { .. } | Command::Trust { .. } => Ok(()),
            Command::Seed => seed(&settings).await,
            Command::Data { command: DataCommand::Move { module, to, from, replace } } => {
                move_data(&settings, &module, from, to, replace).await
            }
        }
    });
    // The runtime goes first: the exporter's last batch leaves from a thread of its own.
    drop(runtime);
    telemetry.shutdown();
    outcome
}

fn contracts(command: ContractsCommand) -> anyhow::Result<()> {
    use crate::contracts::{Contracts, check, compare, today};
    let load = |source: &str| -> anyhow::Result<Contracts> {
        match source.strip_prefix("git:") {
            Some(revision) => Contracts::at_revision(std::path::Path::new("."), revision, "docs"),
            None => Contracts::read(std::path::Path::new(source)),
        }
    };
    match command {
        ContractsCommand::Write { dir } => {
            let generated = Contracts::generate();
            if let Ok(committed) = Contracts::read(&dir) {
                let breaking: Vec<_> = compare(&committed, &generated, &today())?.into_iter().filter(|c| c.breaking).collect();
                for change in &breaking {
                    println!("{change}");
                }
                if !breaking.is_empty() {
                    anyhow::bail!("{} breaking change(s): ship them as a new version (docs/api-versioning.md)", breaking.len());
                }
            }
            generated.write(&dir)?;
            println!("wrote {}: openapi, GraphQL schema, {} event schemas", dir.display(), generated.events.len());
            Ok(())
        }
        ContractsCommand::Check { dir } => {
            let report = check(&dir, &today())?;
            for change in &report.stale {
                println!("stale: {change}");
            }
            for (revision, change) in &report.broken {
                println!("against {revision}: {change}");
            }
            match &report.no_history {
                Some(reason) => println!("not compared with earlier versions: {reason}"),
                None => println!("compared with {} committed version(s)", report.revisions),
            }
            if !report.stale.is_empty() {
                anyhow::bail!("the committed contracts are not what the code generates: run `cleave contracts write`");
            }
            if !report.broken.is_empty() {
                anyhow::bail!("the code breaks clients of a committed version: ship the change as a new version (docs/api-versioning.md)");
            }
            println!("the contracts are current and compatible");
            Ok(())
        }
        ContractsCommand::Diff { old, new } => {
            let old = load(&old)?;
            let new = match new {
                Some(source) => load(&source)?,
                None => Contracts::generate(),
            };
            let changes = compare(&old, &new, &today())?;
            if changes.is_empty() {
                println!("no changes");
            }
            for change in &changes {
                println!("{change}");
            }
            let breaking = changes.iter().filter(|c| c.breaking).count();
            if breaking > 0 {
                anyhow::bail!("{breaking} breaking change(s)");
            }
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    println!("{}", application.banner());
    match application.internal_addr() {
        Some(internal) => tracing::info!(addr = %application.local_addr(), %internal, "serving"),
        None => tracing::info!(addr = %application.local_addr(), "serving"),
    }
    application.run_until_stopped().await
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    for module in crate::modules::infos() {
        let name = module.name;
        if !module.is_local(settings)? {
            println!("{name}: not local, nothing to migrate here");
            continue;
        }
        let target = settings.database_target((module.own_url)(&settings.database));
        let db = shared_kernel::db::connect_module(name, &target, 1).await.with_context(|| format!("cannot open the {name} database"))?;
        (module.migrate)(db).await.with_context(|| format!("cannot migrate the {name} database"))?;
        println!("{name}: migrations applied");
    }
    Ok(())
}

async fn move_data(settings: &Settings, name: &str, from: Option<String>, to: String, replace: bool) -> anyhow::Result<()> {
    let modules = crate::modules::infos();
    let known = modules.iter().map(|module| module.name).collect::<Vec<_>>().join(", ");
    let module = modules.into_iter().find(|module| module.name == name).with_context(|| format!("no module named `{name}` ({known})"))?;
    let from = match from {
        Some(url) => shared_kernel::db::DatabaseTarget::Url(url),
        None => settings.database_target((module.own_url)(&settings.database)),
    };
    let to = shared_kernel::db::DatabaseTarget::Url(to);
    anyhow::ensure!(from != to, "the source and the target are the same database");
    let reports = crate::data_move::move_module(name, module.migrate, &from, &to, replace, &|line| println!("{line}")).await?;
    let rows: u64 = reports.iter().map(|report| report.rows).sum();
    println!("{name}: moved {rows} rows in {} tables; the target matches the source", reports.len());
    Ok(())
}

/// Whether module `name` runs in this process under `settings`.
fn is_local(settings: &Settings, name: &str) -> anyhow::Result<bool> {
    let module = crate::modules::infos().into_iter().find(|module| module.name == name).context("no such module")?;
    module.is_local(settings)
}

async fn create_admin(mut settings: Settings, email: &str) -> anyhow::Result<()> {
    anyhow::ensure!(is_local(&settings, "users")?, "create-admin runs where the users module is local (it is not here)");
    let password = match std::env::var("ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => password,
        _ => {
            eprintln!("password for {email} (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("cannot read the password")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    settings.admin_bootstrap =
        Some(crate::config::AdminBootstrap { email: email.to_owned(), password: shared_kernel::Secret::new(password) });
    let composition = crate::modules::compose(&settings).await?;
    anyhow::ensure!(
        !composition.local_modules.is_empty() && composition.local_modules.contains(&"users"),
        "create-admin needs the users module in this process"
    );
    println!("{email} is an admin");
    Ok(())
}

async fn seed(settings: &Settings) -> anyhow::Result<()> {
    anyhow::ensure!(is_local(settings, "catalog")?, "seed runs where the catalog module is local (it is not here)");
    let composition = crate::modules::compose(settings).await?;
    let report =
        crate::seed::seed_demo(composition.modules.catalog.as_ref()).await.map_err(|error| anyhow::anyhow!("seeding failed: {error}"))?;
    println!("demo data: {} categories and {} products added", report.categories_created, report.products_created);
    Ok(())
}

fn generate_key(settings: &Settings, file: Option<PathBuf>) -> anyhow::Result<()> {
    let path = file.unwrap_or_else(|| settings.keys_file());
    // Keys belong to the users module: the generator exists only where it is compiled in.
    let mut generators = Vec::<fn(&std::path::Path) -> anyhow::Result<String>>::new();
    #[cfg(feature = "users-local")]
    generators.push(|path| Ok(users::KeyRing::add_key_to_file(path)?));
    let generate = generators.pop().with_context(|| {
        format!("keys are managed by the users module; build with the `users-local` feature to generate them ({})", path.display())
    })?;
    let kid = generate(&path)?;
    println!("added signing key {kid} to {}", path.display());
    Ok(())
}
