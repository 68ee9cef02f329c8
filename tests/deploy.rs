//! The deployment files checked against the binaries, so that the two cannot drift apart.
//!
//! `docker-compose.yml` and `deploy/nats-cluster/docker-compose.yml` are read as docker compose
//! reads them (YAML with merge keys, then `${VAR:-default}` interpolation) and every service is
//! held to its binary: the command and the environment parse and validate with the worker
//! crates' own configuration structs, every variable is one the binary's `--help` names (or one
//! the OpenTelemetry SDK reads), every default is the binary's own unless it differs on purpose,
//! and the health check probes the port the service listens on. `deploy/.env.example` must
//! document every variable and hold the compose defaults, and the workers must accept it as it
//! is. The nats-server configurations pass `nats-server -t` and sync before acknowledging; the
//! image tag is the pinned version; the schemes load; the Dockerfile builds every binary the
//! compose files run; the README's configuration reference names every variable a worker reads.
//! When `docker-compose` is installed, it validates both files too. A file
//! under `deploy/` that none of these checks knows fails the run, so a new one gets its check.
//!
//! The binaries must be built first (`scripts/test` builds the workspace).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::Parser;
use serde_yaml_ng::Value;
use test_support::process::binary;

/// Variables the OpenTelemetry SDK and exporter read themselves (telemetry's `config.rs`), which
/// the workers' `--help` therefore does not list.
const SDK_VARIABLES: [&str; 15] = [
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
];

/// Compose defaults that differ from the binaries' on purpose: the variable, the one compose
/// file where it may (any, when `None`), and why.
const DELIBERATE_DEFAULTS: [(&str, Option<&str>, &str); 5] = [
    (
        "NATS_URL",
        None,
        "the compose network's NATS service, not localhost",
    ),
    (
        "WDT_QIMEN_URL",
        None,
        "the simulator, so that no credentials are needed",
    ),
    (
        "XINGCHEN_API_URL",
        None,
        "the simulator, so that no credentials are needed",
    ),
    ("LOG_FORMAT", None, "JSON lines for log collectors"),
    (
        "BRIDGE_STREAM_REPLICAS",
        Some("deploy/nats-cluster/docker-compose.yml"),
        "3 nodes",
    ),
];

/// The binaries the compose files may run, and the workers among them.
const WORKERS: [&str; 3] = ["extractor", "transformer", "loader"];

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_compose_service_runs_a_command_its_binary_accepts_with_only_variables_it_reads() {
    let env_example = DotEnv::read(&repo().join("deploy/.env.example"));
    let cluster_example = DotEnv::read(&repo().join("deploy/nats-cluster/.env.example"));
    let composes = [
        // Without a .env, as `docker compose --profile demo up` on a fresh clone runs it.
        (repo().join("docker-compose.yml"), BTreeMap::new()),
        // With the example settings.
        (
            repo().join("docker-compose.yml"),
            env_example.values.clone(),
        ),
        // The cluster refuses to start without NATS_PASSWORD: its example sets it.
        (
            repo().join("deploy/nats-cluster/docker-compose.yml"),
            cluster_example.values.clone(),
        ),
    ];
    let mut problems = Vec::new();
    for (path, project_env) in &composes {
        let compose = Compose::load(path, project_env).unwrap_or_else(|e| panic!("{e}"));
        for service in compose.services.values() {
            problems.extend(check_service(&compose, service));
        }
        assert!(
            WORKERS.iter().all(|worker| compose
                .services
                .values()
                .any(|s| s.binary() == Some(worker))),
            "{} runs every worker",
            path.display()
        );
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn compose_defaults_are_the_binaries_own_defaults() {
    let mut problems = Vec::new();
    for path in compose_files() {
        let text = read(&path);
        let defaults = binary_defaults();
        for reference in references(&text) {
            let Some(default) = &reference.default else {
                continue;
            };
            let Some(own) = defaults.get(&reference.name) else {
                continue;
            };
            let deliberate = DELIBERATE_DEFAULTS.iter().any(|(name, only_in, _)| {
                *name == reference.name && only_in.is_none_or(|file| path.ends_with(file))
            });
            if default != own && !deliberate {
                problems.push(format!(
                    "{}: ${{{}:-{default}}} but the binaries default to {own:?}",
                    path.display(),
                    reference.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_env_example_documents_every_variable_and_holds_the_compose_defaults() {
    let example = DotEnv::read(&repo().join("deploy/.env.example"));
    let documented = example.documented();
    let mut problems = Vec::new();

    let mut read_by_workers = BTreeSet::new();
    for (bin, args) in worker_commands() {
        read_by_workers.extend(help(bin, args).names);
    }
    for name in &read_by_workers {
        if !documented.contains(name) {
            problems.push(format!(
                "{name} is read by a worker but not in deploy/.env.example"
            ));
        }
    }

    let root = read(&repo().join("docker-compose.yml"));
    let interpolated: BTreeSet<String> = references(&root).into_iter().map(|r| r.name).collect();
    for name in &documented {
        let known = read_by_workers.contains(name)
            || SDK_VARIABLES.contains(&name.as_str())
            || interpolated.contains(name);
        if !known {
            problems.push(format!("{name} in deploy/.env.example is read by nothing"));
        }
    }
    problems.extend(env_matches_compose(&example, &root, "docker-compose.yml"));

    let cluster_example = DotEnv::read(&repo().join("deploy/nats-cluster/.env.example"));
    let cluster = read(&repo().join("deploy/nats-cluster/docker-compose.yml"));
    let cluster_documented = cluster_example.documented();
    for reference in references(&cluster) {
        let name = &reference.name;
        if !documented.contains(name) && !cluster_documented.contains(name) {
            problems.push(format!(
                "{name} of the cluster compose file is documented nowhere"
            ));
        }
    }
    problems.extend(env_matches_compose(
        &cluster_example,
        &cluster,
        "the cluster compose",
    ));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_readme_names_every_variable_a_worker_reads() {
    let readme = read(&repo().join("README.md"));
    let mut missing = BTreeSet::new();
    for (bin, args) in worker_commands() {
        for name in help(bin, args).names {
            if !readme.contains(&format!("`{name}`")) {
                missing.insert(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's configuration reference lacks {missing:?}"
    );
}

#[test]
fn the_workers_accept_the_env_examples_as_they_are() {
    let root = DotEnv::read(&repo().join("deploy/.env.example")).values;
    let mut cluster = root.clone();
    cluster.extend(DotEnv::read(&repo().join("deploy/nats-cluster/.env.example")).values);
    for (name, env) in [("deploy/.env.example", root), ("the cluster's", cluster)] {
        for argv in [
            vec!["extractor", "run"],
            vec![
                "extractor",
                "backfill",
                "--from",
                "2025-06-01 00:00:00",
                "--to",
                "2025-06-02 00:00:00",
            ],
            vec!["transformer"],
            vec!["loader"],
        ] {
            let argv: Vec<String> = argv.into_iter().map(str::to_owned).collect();
            if let Err(problem) = validate_worker(&argv, &env) {
                panic!("{} with {name}: {problem}", argv.join(" "));
            }
        }
    }
}

#[test]
fn an_empty_or_unknown_setting_is_caught_by_these_checks() {
    // The checks above are only worth something if they can fail: an empty value (which clap
    // takes as a value) and a misspelt variable must both be reported.
    let mut env = DotEnv::read(&repo().join("deploy/.env.example")).values;
    env.insert("NATS_CREDS".into(), String::new());
    let argv = vec!["transformer".to_owned()];
    assert!(
        validate_worker(&argv, &env).is_err(),
        "an empty NATS_CREDS must be refused"
    );

    let compose = Compose::load(&repo().join("docker-compose.yml"), &BTreeMap::new()).unwrap();
    let mut loader = compose.services["loader"].clone();
    loader
        .environment
        .insert("BRIDGE_PUL_BATCH".into(), Some("4".into()));
    let problems = check_service(&compose, &loader);
    assert!(
        problems.iter().any(|p| p.contains("BRIDGE_PUL_BATCH")),
        "a variable no binary reads must be reported: {problems:?}"
    );
}

#[test]
fn every_nats_config_is_valid_and_syncs_before_acknowledging() {
    let configs = files_under(&repo().join("deploy"), "conf");
    assert!(
        configs.len() >= 4,
        "the single-node and the three cluster configs"
    );
    let nats = test_support::nats_server_binary();
    for config in configs {
        let output = Command::new(&nats)
            .arg("-c")
            .arg(&config)
            .arg("-t")
            .env("NATS_USER", "bridge")
            .env("NATS_PASSWORD", "a-long-random-password")
            .output()
            .expect("run nats-server -t");
        assert!(
            output.status.success(),
            "{}: {}",
            config.display(),
            stderr(&output)
        );
        // The default syncs every two minutes: an acknowledged ledger entry could be lost.
        let text = read(&config);
        assert!(
            text.lines().any(|l| l.trim() == "sync_interval: always"),
            "{} must flush before acknowledging",
            config.display()
        );
    }
}

#[test]
fn every_scheme_loads_and_the_shipped_one_is_the_built_in() {
    let schemes = files_under(&repo().join("deploy/schemes"), "toml");
    assert!(
        !schemes.is_empty(),
        "deploy/schemes holds the shipped scheme"
    );
    for path in &schemes {
        scheme::Scheme::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let shipped = repo().join("deploy/schemes/wdt-stockout-to-xingchen-v1.toml");
    assert_eq!(
        scheme::Scheme::load(&shipped).unwrap().fingerprint(),
        scheme::Scheme::builtin().fingerprint(),
        "the README and the image say the shipped file is the built-in scheme"
    );
    // The example BRIDGE_SCHEME names a file the image holds (deploy/schemes → /etc/bridge).
    let example = read(&repo().join("deploy/.env.example"));
    let named = example
        .lines()
        .find_map(|l| l.strip_prefix("# BRIDGE_SCHEME=/etc/bridge/schemes/"))
        .expect("deploy/.env.example shows a BRIDGE_SCHEME");
    assert!(
        repo().join("deploy/schemes").join(named).is_file(),
        "{named}"
    );
}

#[test]
fn the_image_builds_and_copies_every_binary_the_compose_files_run() {
    let dockerfile = read(&repo().join("deploy/Dockerfile"));
    let built: BTreeSet<&str> = dockerfile
        .split("--bin ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let mut needed = BTreeSet::new();
    for path in compose_files() {
        let compose = Compose::load(&path, &DotEnv::read(&cluster_or_root_env(&path)).values)
            .unwrap_or_else(|e| panic!("{e}"));
        for service in compose.services.values().filter(|s| s.is_bridge_image()) {
            needed.extend(service.binary().map(str::to_owned));
            needed.extend(service.healthcheck.get(1).cloned());
        }
    }
    for bin in &needed {
        assert!(
            built.contains(bin.as_str()),
            "deploy/Dockerfile does not build {bin}"
        );
        assert!(
            dockerfile.contains(&format!("/src/target/release/{bin} ")),
            "deploy/Dockerfile does not copy {bin}"
        );
        assert!(
            binary(bin).is_file(),
            "{bin} is not a binary of this workspace"
        );
    }
    for source in ["deploy/schemes", "deploy/.env.example"] {
        assert!(dockerfile.contains(&format!("COPY {source} ")), "{source}");
        assert!(repo().join(source).exists(), "{source}");
    }
    assert!(
        dockerfile.contains("--locked"),
        "the image builds from the lockfile"
    );
    assert!(
        dockerfile.contains("\nUSER "),
        "the image runs as a non-root user"
    );
}

#[test]
fn docker_compose_accepts_both_files_when_it_is_installed() {
    let Ok(version) = Command::new("docker-compose").arg("version").output() else {
        println!("note: docker-compose is not installed; compose files checked by parsing only");
        return;
    };
    assert!(
        version.status.success(),
        "docker-compose version: {}",
        stderr(&version)
    );
    let root = repo().join("docker-compose.yml");
    let cluster = repo().join("deploy/nats-cluster/docker-compose.yml");
    let cluster_env = DotEnv::read(&repo().join("deploy/nats-cluster/.env.example")).values;
    let runs: [(&Path, &[&str], BTreeMap<String, String>); 4] = [
        (&root, &[], BTreeMap::new()),
        (&root, &["--profile", "demo"], BTreeMap::new()),
        (&cluster, &[], cluster_env.clone()),
        (&cluster, &["--profile", "demo"], cluster_env),
    ];
    for (file, profile, env) in runs {
        let output = Command::new("docker-compose")
            .arg("-f")
            .arg(file)
            .args(profile)
            .args(["config", "-q"])
            .envs(env)
            .output()
            .expect("run docker-compose config");
        assert!(
            output.status.success(),
            "docker-compose -f {} {} config: {}",
            file.display(),
            profile.join(" "),
            stderr(&output)
        );
    }
}

#[test]
fn every_file_under_deploy_is_checked_by_this_file() {
    let mut unknown = Vec::new();
    for path in files_under(&repo().join("deploy"), "") {
        let relative = path.strip_prefix(repo()).unwrap().display().to_string();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let known = matches!(
            name.as_str(),
            "Dockerfile" | ".env.example" | "nats-server.version" | "docker-compose.yml"
        ) || name.ends_with(".conf")
            || relative.starts_with("deploy/schemes/") && name.ends_with(".toml");
        // Checked for content by tests/metrics.rs; here only that they parse.
        let monitoring =
            relative.starts_with("deploy/prometheus/") || relative.starts_with("deploy/grafana/");
        if monitoring {
            let text = read(&path);
            let parsed = if name.ends_with(".json") {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map(drop)
                    .map_err(|e| e.to_string())
            } else {
                serde_yaml_ng::from_str::<Value>(&text)
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            assert!(parsed.is_ok(), "{relative}: {parsed:?}");
        } else if !known {
            unknown.push(relative);
        }
    }
    assert!(
        unknown.is_empty(),
        "files under deploy/ that no test checks (add their check to tests/deploy.rs): {unknown:?}"
    );
    let version = read(&repo().join("deploy/nats-server.version"));
    assert_eq!(
        version.trim(),
        test_support::PINNED_NATS_SERVER_VERSION.trim()
    );
}

// ---------------------------------------------------------------------------------------------
// One service against its binary.
// ---------------------------------------------------------------------------------------------

/// Everything wrong with one service, as lines for the failure message.
fn check_service(compose: &Compose, service: &Service) -> Vec<String> {
    let at = format!("{} service {}", compose.path.display(), service.name);
    if service
        .image
        .as_deref()
        .is_some_and(|i| i.starts_with("nats:"))
    {
        return check_nats_service(compose, service, &at);
    }
    let ours = ["simulator", "bridge"].into_iter().chain(WORKERS);
    if !service.is_bridge_image() {
        if service
            .binary()
            .is_some_and(|bin| ours.clone().any(|o| o == bin))
        {
            return vec![format!(
                "{at}: runs a bridge binary but is not built from deploy/"
            )];
        }
        return Vec::new();
    }
    let Some(bin) = service.binary() else {
        return vec![format!("{at}: runs no command")];
    };
    let mut problems = Vec::new();
    let env = service.set_environment();
    // The extractor's subcommand decides its flags; the other binaries have none.
    let subcommand: Vec<&str> = service
        .command
        .get(1)
        .map(String::as_str)
        .into_iter()
        .collect();
    let subcommand = if bin == "extractor" {
        subcommand
    } else {
        Vec::new()
    };
    let mut allowed = help(bin, &subcommand).names;
    if WORKERS.contains(&bin) {
        allowed.extend(SDK_VARIABLES.map(str::to_owned));
    }
    for name in service.environment.keys() {
        if !allowed.contains(name) {
            problems.push(format!("{at}: sets {name}, which {bin} does not read"));
        }
    }

    let mut argv = service.command.clone();
    argv.push("--help".to_owned());
    let output = run(bin, &argv[1..], &env);
    if !output.status.success() {
        problems.push(format!(
            "{at}: `{}` fails: {}",
            argv.join(" "),
            stderr(&output)
        ));
    }
    let validated = match bin {
        "simulator" => validate_simulator(&env),
        _ => validate_worker(&service.command, &env),
    };
    if let Err(problem) = validated {
        problems.push(format!("{at}: {problem}"));
    }
    // A one-shot backfill exits when done: there is nothing to keep healthy.
    if service.command.get(1).is_none_or(|sub| sub != "backfill") {
        problems.extend(check_health(service, &env, &at));
    }
    if ["transformer", "loader"].contains(&bin) {
        // Scaled with --scale: a fixed name or host port would clash between replicas.
        if service.container_name.is_some() || !service.ports.is_empty() {
            problems.push(format!(
                "{at}: a scalable worker has a container name or host ports"
            ));
        }
    }
    problems
}

/// The health check runs `bridge probe` against the port the service listens on.
fn check_health(service: &Service, env: &BTreeMap<String, String>, at: &str) -> Vec<String> {
    let test = &service.healthcheck;
    if test.is_empty() {
        return vec![format!("{at}: has no health check")];
    }
    if test.get(..3) != Some(&["CMD".to_owned(), "bridge".to_owned(), "probe".to_owned()]) {
        return vec![format!(
            "{at}: the health check is not `bridge probe`: {test:?}"
        )];
    }
    let mut problems = Vec::new();
    let output = run(
        "bridge",
        &[&test[2..], &["--help".to_owned()]].concat(),
        env,
    );
    if !output.status.success() {
        problems.push(format!("{at}: `bridge probe` refuses {test:?}"));
    }
    let url = url::Url::parse(&test[3]).expect("the probe's URL parses");
    let probed = url.port_or_known_default();
    let listens = env
        .iter()
        .filter(|(name, _)| name.ends_with("_LISTEN"))
        .filter_map(|(_, addr)| addr.parse::<std::net::SocketAddr>().ok())
        .any(|addr| Some(addr.port()) == probed);
    if !listens {
        problems.push(format!(
            "{at}: the health check probes port {probed:?}, not a listen port"
        ));
    }
    problems
}

/// A NATS service runs the pinned version and a configuration nats-server accepts.
fn check_nats_service(compose: &Compose, service: &Service, at: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let pinned = test_support::PINNED_NATS_SERVER_VERSION.trim();
    let image = service.image.as_deref().unwrap_or_default();
    if image != format!("nats:{pinned}-alpine") {
        problems.push(format!(
            "{at}: image {image}, but deploy/nats-server.version is {pinned}"
        ));
    }
    let config_arg = service
        .command
        .iter()
        .position(|arg| arg == "--config" || arg == "-c")
        .and_then(|i| service.command.get(i + 1));
    let Some(in_container) = config_arg else {
        return vec![format!("{at}: runs nats-server without --config")];
    };
    let Some(on_host) = service.host_path_of(in_container, &compose.path) else {
        return vec![format!(
            "{at}: {in_container} is not mounted from the repository"
        )];
    };
    let output = Command::new(test_support::nats_server_binary())
        .arg("-c")
        .arg(&on_host)
        .arg("-t")
        .env_clear()
        .envs(service.set_environment())
        .output()
        .expect("run nats-server -t");
    if !output.status.success() {
        problems.push(format!("{at}: {}: {}", on_host.display(), stderr(&output)));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The binaries' own configuration loaders.
// ---------------------------------------------------------------------------------------------

/// `extractor` as its binary parses it.
#[derive(Parser)]
struct ExtractorCli {
    #[command(subcommand)]
    command: extractor::Command,
}

/// `transformer` as its binary parses it.
#[derive(Parser)]
struct TransformerCli {
    #[command(flatten)]
    config: transformer::TransformerConfig,
}

/// `loader` as its binary parses it.
#[derive(Parser)]
struct LoaderCli {
    #[command(flatten)]
    config: loader::LoaderConfig,
}

/// Parses and validates a worker's command line with `env` as its environment, as the worker
/// does before it connects anywhere.
fn validate_worker(argv: &[String], env: &BTreeMap<String, String>) -> Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    match argv.first().map(String::as_str) {
        Some("extractor") => {
            let cli: ExtractorCli = parse_with_env(argv, env)?;
            let settings = cli.command.settings();
            settings.validate().map_err(|e| text(&e))?;
            match &cli.command {
                extractor::Command::Run { args, .. } => args
                    .validate(
                        settings.wdt.max_window_days,
                        settings.topology.duplicate_window,
                    )
                    .map_err(|e| text(&e)),
                extractor::Command::Backfill { args, .. } => args.validate().map_err(|e| text(&e)),
            }
        }
        Some("transformer") => {
            let cli: TransformerCli = parse_with_env(argv, env)?;
            cli.config.validate().map_err(|e| text(&e))
        }
        Some("loader") => {
            let cli: LoaderCli = parse_with_env(argv, env)?;
            cli.config.validate().map_err(|e| format!("{e:#}"))
        }
        other => Err(format!("{other:?} is not a worker")),
    }
}

/// The simulator's binary keeps its flags to itself; its times and addresses are checked here
/// with the parsers it uses.
fn validate_simulator(env: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in env {
        if name.ends_with("_CONSIGN_FROM") || name.ends_with("_CONSIGN_TO") {
            simulator::orders::parse_cli_time(value)?;
        }
        if name.ends_with("_LISTEN") {
            value
                .parse::<std::net::SocketAddr>()
                .map_err(|e| format!("{name}={value}: {e}"))?;
        }
    }
    Ok(())
}

/// Parses `argv` as `C`, with `env` standing in for the process environment: clap reads the real
/// one, which a test must leave alone, so each variable the command knows becomes its flag.
fn parse_with_env<C: Parser>(argv: &[String], env: &BTreeMap<String, String>) -> Result<C, String> {
    let command = C::command();
    let target = argv
        .get(1)
        .and_then(|name| command.find_subcommand(name))
        .unwrap_or(&command);
    let mut args = argv.to_vec();
    for arg in target.get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let Some(value) = env.get(name.to_string_lossy().as_ref()) else {
            continue;
        };
        match arg.get_action() {
            clap::ArgAction::SetTrue if value == "true" => args.push(format!("--{long}")),
            clap::ArgAction::SetTrue => {}
            _ => args.push(format!("--{long}={value}")),
        }
    }
    let command = command
        .mut_args(|arg| arg.env(None))
        .mut_subcommands(|sub| sub.mut_args(|arg| arg.env(None)));
    let matches = command
        .try_get_matches_from(&args)
        .map_err(|e| e.render().to_string())?;
    C::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// What a binary reads, from its `--help`: each `[env: NAME…]` and its `[default: …]`.
struct Help {
    names: BTreeSet<String>,
    defaults: BTreeMap<String, String>,
}

fn help(bin: &str, args: &[&str]) -> Help {
    let mut argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    argv.push("--help".to_owned());
    let output = run(bin, &argv, &BTreeMap::new());
    assert!(output.status.success(), "{bin} --help: {}", stderr(&output));
    parse_help(&String::from_utf8_lossy(&output.stdout))
}

fn parse_help(text: &str) -> Help {
    let mut help = Help {
        names: BTreeSet::new(),
        defaults: BTreeMap::new(),
    };
    // One block per option: the `--flag` line and the lines below it.
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        // Option lines are indented by 2 to 6 spaces; possible values (`- json: …`) by more.
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && (2..=6).contains(&indent) {
            blocks.push(Vec::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push(line.trim());
        }
    }
    for block in blocks {
        let text = block.join(" ");
        let Some((_, env)) = text.split_once("[env: ") else {
            continue;
        };
        let name: String = env.chars().take_while(|c| *c != '=' && *c != ']').collect();
        // The last one: a description may mention a default of its own in brackets.
        let default = text
            .rsplit_once("[default: ")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(default, _)| default.to_owned());
        if let Some(default) = default {
            help.defaults.insert(name.clone(), default);
        }
        help.names.insert(name);
    }
    help
}

/// The workers' commands whose variables the deployment documents.
fn worker_commands() -> [(&'static str, &'static [&'static str]); 4] {
    [
        ("extractor", &["run"]),
        ("extractor", &["backfill"]),
        ("transformer", &[]),
        ("loader", &[]),
    ]
}

/// Every default a worker's `--help` shows, by variable.
fn binary_defaults() -> BTreeMap<String, String> {
    let mut defaults = BTreeMap::new();
    for (bin, args) in worker_commands() {
        defaults.extend(help(bin, args).defaults);
    }
    defaults
}

/// Runs a workspace binary with exactly `env` as its environment.
fn run(bin: &str, args: &[String], env: &BTreeMap<String, String>) -> Output {
    Command::new(binary(bin))
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Compose files, read as docker compose reads them.
// ---------------------------------------------------------------------------------------------

/// A compose file after merge keys and interpolation.
struct Compose {
    path: PathBuf,
    services: BTreeMap<String, Service>,
}

/// The parts of a service these checks look at.
#[derive(Clone, Debug)]
struct Service {
    name: String,
    image: Option<String>,
    build: bool,
    command: Vec<String>,
    /// `None` values pass the variable on only when the shell or `.env` sets it.
    environment: BTreeMap<String, Option<String>>,
    healthcheck: Vec<String>,
    ports: Vec<String>,
    volumes: Vec<String>,
    container_name: Option<String>,
}

impl Compose {
    fn load(path: &Path, project_env: &BTreeMap<String, String>) -> Result<Compose, String> {
        let text = read(path);
        let mut root: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        merge_fully(&mut root).map_err(|e| format!("{}: merge keys: {e}", path.display()))?;
        let root =
            interpolate_value(root, project_env).map_err(|e| format!("{}: {e}", path.display()))?;
        let services = root
            .get("services")
            .and_then(Value::as_mapping)
            .ok_or_else(|| format!("{}: no services", path.display()))?;
        let services = services
            .iter()
            .map(|(name, body)| {
                let name = scalar(name).unwrap_or_default();
                (name.clone(), Service::from_yaml(name, body))
            })
            .collect();
        Ok(Compose {
            path: path.to_owned(),
            services,
        })
    }
}

impl Service {
    fn from_yaml(name: String, body: &Value) -> Service {
        let strings = |key: &str| -> Vec<String> {
            match body.get(key) {
                Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
                Some(value) => scalar(value).into_iter().collect(),
                None => Vec::new(),
            }
        };
        let environment = match body.get("environment") {
            Some(Value::Mapping(map)) => map
                .iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v))))
                .collect(),
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(scalar)
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (item, None),
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let healthcheck = match body.get("healthcheck").and_then(|h| h.get("test")) {
            Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
            _ => Vec::new(),
        };
        Service {
            image: body.get("image").and_then(scalar),
            build: body.get("build").is_some(),
            command: strings("command"),
            environment,
            healthcheck,
            ports: strings("ports"),
            volumes: strings("volumes"),
            container_name: body.get("container_name").and_then(scalar),
            name,
        }
    }

    /// Ours: built from deploy/Dockerfile.
    fn is_bridge_image(&self) -> bool {
        self.build
    }

    fn binary(&self) -> Option<&str> {
        self.command.first().map(String::as_str)
    }

    /// The variables the container gets when neither the shell nor `.env` sets the others.
    fn set_environment(&self) -> BTreeMap<String, String> {
        self.environment
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect()
    }

    /// The repository file bind-mounted at `in_container`.
    fn host_path_of(&self, in_container: &str, compose_file: &Path) -> Option<PathBuf> {
        let dir = compose_file.parent()?;
        self.volumes.iter().find_map(|volume| {
            let mut parts = volume.split(':');
            let (host, target) = (parts.next()?, parts.next()?);
            (target == in_container && host.starts_with('.')).then(|| dir.join(host))
        })
    }
}

/// Resolves merge keys, also those that a merged mapping brought with it (`x-worker` merges
/// `x-bridge-image`): one `apply_merge` pass leaves those in place.
fn merge_fully(root: &mut Value) -> Result<(), serde_yaml_ng::Error> {
    fn has_merge_key(value: &Value) -> bool {
        match value {
            Value::Mapping(map) => map.contains_key("<<") || map.values().any(has_merge_key),
            Value::Sequence(items) => items.iter().any(has_merge_key),
            _ => false,
        }
    }
    // Each pass resolves one level of nesting; compose files nest two or three.
    for _ in 0..8 {
        if !has_merge_key(root) {
            return Ok(());
        }
        root.apply_merge()?;
    }
    assert!(
        !has_merge_key(root),
        "merge keys nested deeper than 8 levels"
    );
    Ok(())
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn interpolate_value(value: Value, env: &BTreeMap<String, String>) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => Value::String(interpolate(&text, env)?),
        Value::Sequence(items) => Value::Sequence(
            items
                .into_iter()
                .map(|item| interpolate_value(item, env))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(map) => {
            let mut out = serde_yaml_ng::Mapping::new();
            for (key, item) in map {
                // Extension fields were merged where they are used; skip the originals.
                if scalar(&key).is_some_and(|k| k.starts_with("x-")) {
                    continue;
                }
                out.insert(key, interpolate_value(item, env)?);
            }
            Value::Mapping(out)
        }
        other => other,
    })
}

/// One `${NAME…}` reference of a compose file.
#[derive(Debug)]
struct Reference {
    name: String,
    /// The `:-` or `-` default, when it has one.
    default: Option<String>,
    /// The `:?` or `?` message of a required variable.
    required: Option<String>,
}

/// Every `${…}` reference in `text`, in order.
fn references(text: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            rest = &rest[start + 2..];
            continue;
        }
        let body = &rest[start + 2..];
        let Some(end) = body.find('}') else { break };
        found.push(parse_reference(&body[..end]));
        rest = &body[end + 1..];
    }
    found
}

fn parse_reference(body: &str) -> Reference {
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, operator) = body.split_at(name_end);
    let strip = |prefixes: [&str; 2]| {
        prefixes
            .iter()
            .find_map(|p| operator.strip_prefix(p))
            .map(str::to_owned)
    };
    Reference {
        name: name.to_owned(),
        default: strip([":-", "-"]),
        required: strip([":?", "?"]),
    }
}

/// Compose's interpolation: `${NAME}`, `${NAME:-default}`, `${NAME:?message}`, `$$`.
fn interpolate(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let reference = parse_reference(&body[..end]);
            let value = env.get(&reference.name).filter(|v| !v.is_empty());
            match (value, &reference.default, &reference.required) {
                (Some(value), _, _) => out.push_str(value),
                (None, Some(default), _) => out.push_str(default),
                (None, None, Some(message)) => {
                    return Err(format!("{} is required: {message}", reference.name));
                }
                (None, None, None) => {}
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Dotenv files.
// ---------------------------------------------------------------------------------------------

/// A `.env` file: the values it sets, and the names it documents in commented examples.
struct DotEnv {
    values: BTreeMap<String, String>,
    commented: BTreeSet<String>,
}

impl DotEnv {
    fn read(path: &Path) -> DotEnv {
        let mut env = DotEnv {
            values: BTreeMap::new(),
            commented: BTreeSet::new(),
        };
        for line in read(path).lines().map(str::trim) {
            if let Some(comment) = line.strip_prefix('#') {
                if let Some((name, _)) = comment.trim().split_once('=') {
                    if is_variable_name(name) {
                        env.commented.insert(name.to_owned());
                    }
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not NAME=value: {line:?}", path.display()));
            assert!(
                is_variable_name(name),
                "{}: bad name {name:?}",
                path.display()
            );
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            env.values.insert(name.to_owned(), unquoted.to_owned());
        }
        env
    }

    fn documented(&self) -> BTreeSet<String> {
        self.values.keys().chain(&self.commented).cloned().collect()
    }
}

fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Each value the example sets equals the compose file's default for it, and each variable
/// without a default there is one the example leaves commented.
fn env_matches_compose(example: &DotEnv, compose: &str, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for reference in references(compose) {
        let value = example.values.get(&reference.name);
        match (&reference.default, value) {
            (Some(default), Some(value)) if default != value => problems.push(format!(
                "{}: the example says {value:?}, {what} defaults to {default:?}",
                reference.name
            )),
            _ => {}
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Files.
// ---------------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_owned()
}

fn compose_files() -> [PathBuf; 2] {
    [
        repo().join("docker-compose.yml"),
        repo().join("deploy/nats-cluster/docker-compose.yml"),
    ]
}

/// The example a compose file's directory holds: the cluster's, or the root one.
fn cluster_or_root_env(compose: &Path) -> PathBuf {
    let beside = compose.with_file_name(".env.example");
    if beside.is_file() {
        beside
    } else {
        repo().join("deploy/.env.example")
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every file below `dir` whose name ends with `.{extension}` (any file for ""), sorted.
fn files_under(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if extension.is_empty() || path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

#[test]
fn interpolation_follows_compose() {
    let env = BTreeMap::from([
        ("SET".to_owned(), "x".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ]);
    assert_eq!(
        interpolate("${SET:-d}/${UNSET:-d}/${EMPTY:-e}/$$1", &env).unwrap(),
        "x/d/e/$1"
    );
    assert!(
        interpolate("${UNSET:?needed}", &env)
            .unwrap_err()
            .contains("needed")
    );
    let found = references("a ${A:-1} $${B} ${C:?why}");
    let names: Vec<&str> = found.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["A", "C"]);
    assert_eq!(found[0].default.as_deref(), Some("1"));
    assert_eq!(found[1].required.as_deref(), Some("why"));
}
