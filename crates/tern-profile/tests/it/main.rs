use std::time::Duration;

use tern_profile::{
    format_duration, json_schema, parse, parse_duration, parse_size, ErrorKind, MigrationMode,
    Profile, ProfileError, RestartPolicy,
};

const FULL: &str = r#"# A complete profile: every field the format has.
name = "counter-7"
module = "build/counter.wasm"
args = ["--start", "10"]
env = { RUST_LOG = "info", "MY.VAR" = "x" }
ports = [8080, 9090]

[limits]
memory = "512MiB"
cpu = 0.5
wall_time = "1h30m"

[[files]]
host = "config/app.json"
guest = "/etc/app.json"

[[files]]
host = "data/seed.bin"
guest = "/seed.bin"

[[volumes]]
name = "data"
guest = "/data"

[placement]
require = { region = ["eu-west", "us-east"], arch = ["x86_64"] }
exclude_nodes = ["old-box"]
prefer = { region = "eu-west" }

[migration]
mode = "stateless"
live = false
threshold = 0.25
cooldown = "5m"

[migration.weights]
performance = 1.0
proximity = 2
resources = 0.5
affinity = 0.0
cost = 1.5
move_cost = 3

[restart]
policy = "always"
backoff = "250ms"
max_backoff = "2m"

[http]
host = "counter.example.com"
path_prefix = "/counter"
"#;

const MINIMAL: &str = "name = \"app\"\nmodule = \"app.wasm\"\n";

fn err(text: &str) -> ProfileError {
    match parse("tern.toml", text) {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e,
    }
}

/// `text` is the minimal profile followed by `rest`, which therefore starts on line 3.
fn err_after_minimal(rest: &str) -> ProfileError {
    err(&format!("{MINIMAL}{rest}"))
}

/// Checks line, column and field both as fields and at the start of the message, which is
/// what a person sees.
#[track_caller]
fn assert_at(e: &ProfileError, line: usize, column: usize, field: &str) {
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (Some(line), Some(column), field),
        "{e}"
    );
    let prefix = format!("tern.toml:{line}:{column}: {field}: ");
    assert!(
        e.to_string().starts_with(&prefix),
        "{e:?} should start with {prefix:?}"
    );
}

#[test]
fn full_example() {
    let p = parse("tern.toml", FULL).unwrap();
    assert_eq!(p.name, "counter-7");
    assert_eq!(p.module, "build/counter.wasm");
    assert_eq!(p.args, ["--start", "10"]);
    assert_eq!(p.env.len(), 2);
    assert_eq!(p.env["RUST_LOG"], "info");
    assert_eq!(p.env["MY.VAR"], "x");
    assert_eq!(p.ports, [8080, 9090]);
    assert_eq!(p.limits.memory, Some(512 << 20));
    assert_eq!(p.limits.cpu, Some(0.5));
    assert_eq!(p.limits.wall_time, Some(Duration::from_secs(5400)));
    assert_eq!(p.files.len(), 2);
    assert_eq!(p.files[1].host, "data/seed.bin");
    assert_eq!(p.files[1].guest, "/seed.bin");
    assert_eq!(p.volumes[0].name, "data");
    assert_eq!(p.volumes[0].guest, "/data");
    assert_eq!(p.placement.require["region"], ["eu-west", "us-east"]);
    assert_eq!(p.placement.require["arch"], ["x86_64"]);
    assert_eq!(p.placement.exclude_nodes, ["old-box"]);
    assert_eq!(p.placement.prefer["region"], "eu-west");
    assert_eq!(p.migration.mode, MigrationMode::Stateless);
    assert!(!p.migration.live);
    assert_eq!(p.migration.threshold, Some(0.25));
    assert_eq!(p.migration.cooldown, Some(Duration::from_secs(300)));
    let w = &p.migration.weights;
    assert_eq!(
        [
            w.performance,
            w.proximity,
            w.resources,
            w.affinity,
            w.cost,
            w.move_cost
        ],
        [
            Some(1.0),
            Some(2.0),
            Some(0.5),
            Some(0.0),
            Some(1.5),
            Some(3.0)
        ]
    );
    assert_eq!(p.restart.policy, RestartPolicy::Always);
    assert_eq!(p.restart.backoff, Duration::from_millis(250));
    assert_eq!(p.restart.max_backoff, Duration::from_secs(120));
    assert_eq!(p.http.host.as_deref(), Some("counter.example.com"));
    assert_eq!(p.http.path_prefix.as_deref(), Some("/counter"));
}

#[test]
fn minimal_example_takes_defaults() {
    let p = parse("tern.toml", MINIMAL).unwrap();
    assert_eq!(p.name, "app");
    assert_eq!(p.module, "app.wasm");
    assert!(p.args.is_empty() && p.env.is_empty() && p.files.is_empty());
    assert!(p.volumes.is_empty() && p.ports.is_empty());
    assert_eq!(p.limits, Default::default());
    assert_eq!(p.placement, Default::default());
    assert_eq!(p.migration.mode, MigrationMode::Stateful);
    assert!(p.migration.live);
    assert_eq!(p.migration.weights, Default::default());
    assert_eq!((p.migration.threshold, p.migration.cooldown), (None, None));
    assert_eq!(p.restart.policy, RestartPolicy::OnFailure);
    assert_eq!(p.restart.backoff, Duration::from_secs(1));
    assert_eq!(p.restart.max_backoff, Duration::from_secs(60));
    assert_eq!(p.http, Default::default());
}

#[test]
fn memory_as_integer_bytes() {
    let p = parse("tern.toml", &format!("{MINIMAL}limits.memory = 1048576\n")).unwrap();
    assert_eq!(p.limits.memory, Some(1 << 20));
}

#[test]
fn syntax_error() {
    let e = err("name = \"app\"\nmodule = \"app.wasm\"\nargs = [\"a\",\n\n[limits\n");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.to_string().starts_with("tern.toml:5:"), "{e}");
    assert!(e.message.starts_with("invalid TOML"), "{e}");

    let e = err("name = \"app\"\nmodule = lots\n");
    assert_eq!(
        (e.kind, e.line, e.column),
        (ErrorKind::Syntax, Some(2), Some(10)),
        "{e}"
    );
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let e = err("name = \"app\"\nmodule = \"a.wasm\"\nname = \"other\"\n");
    assert_eq!(
        (e.kind, e.line, e.column),
        (ErrorKind::Syntax, Some(3), Some(1)),
        "{e}"
    );
}

#[test]
fn unknown_field_at_top_level() {
    let e = err_after_minimal("\nmodules = [\"x\"]\n");
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_at(&e, 4, 1, "modules");
    assert!(
        e.message.contains("expected one of `name`, `module`"),
        "{e}"
    );
}

#[test]
fn unknown_field_nested() {
    let e = err_after_minimal("[limits]\ncpu = 1\nmemroy = \"1GiB\"\n");
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_at(&e, 5, 1, "limits.memroy");

    let e = err_after_minimal("[migration.weights]\ncost = 1\nspeed = 2\n");
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_at(&e, 5, 1, "migration.weights.speed");

    let e = err_after_minimal(
        "files = [\n  { host = \"a\", guest = \"/a\" },\n  { host = \"b\", guest = \"/b\", mode = 1 },\n]\n",
    );
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert_at(&e, 5, 31, "files[1].mode");
}

#[test]
fn missing_fields() {
    let e = err("name = \"app\"\n");
    assert_eq!(e.kind, ErrorKind::MissingField);
    assert_eq!((e.line, e.field.as_str()), (None, "module"));
    assert_eq!(
        e.to_string(),
        "tern.toml: module: required field is missing"
    );

    // A nested table lacking a field is reported at its header.
    let e = err_after_minimal(
        "[[volumes]]\nname = \"a\"\nguest = \"/a\"\n\n[[volumes]]\nname = \"b\"\n",
    );
    assert_eq!(e.kind, ErrorKind::MissingField);
    assert_at(&e, 7, 1, "volumes[1].guest");
}

#[test]
fn wrong_type() {
    let e = err_after_minimal("[migration]\nlive = \"yes\"\n");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_at(&e, 4, 8, "migration.live");
    assert!(
        e.message.starts_with("expected a boolean, got string"),
        "{e}"
    );

    let e = err_after_minimal("args = [\"a\", 2]\n");
    assert_at(&e, 3, 14, "args[1]");
    assert_eq!(e.message, "expected a string, got integer `2`");

    let e = err_after_minimal("limits = { cpu = \"x\" }\n");
    assert_at(&e, 3, 18, "limits.cpu");
    assert_eq!(e.message, "expected a number, got string \"x\"");

    let e = err_after_minimal("ports = 80\n");
    assert_at(&e, 3, 9, "ports");
}

#[test]
fn bad_size() {
    let text = "name = \"app\"\nmodule = \"app.wasm\"\n\n# limits\n\n[limits]\nmemory = \"lots\"\n";
    let e = err(text);
    assert_at(&e, 7, 10, "limits.memory");
    let shown = e.to_string();
    assert!(
        shown.starts_with("tern.toml:7:10: limits.memory: expected a size such as \"512MiB\""),
        "{shown}"
    );
    assert!(shown.ends_with("got \"lots\""), "{shown}");

    let e = err_after_minimal("limits.memory = -1\n");
    assert_at(&e, 3, 17, "limits.memory");
    let e = err_after_minimal("limits.memory = \"0.5B\"\n");
    assert_at(&e, 3, 17, "limits.memory");
    let e = err_after_minimal("limits.memory = \"0MiB\"\n");
    assert_at(&e, 3, 17, "limits.memory");
    assert_eq!(e.message, "expected a size greater than zero, got 0");
}

#[test]
fn bad_duration() {
    let e = err_after_minimal("[restart]\npolicy = \"always\"\nbackoff = \"soon\"\n");
    assert_at(&e, 5, 11, "restart.backoff");
    assert!(e.message.starts_with("expected a duration such as"), "{e}");
    assert!(e.message.ends_with("got \"soon\""), "{e}");

    // A bare number is refused: its unit is the thing most likely to be wrong.
    let e = err_after_minimal("[limits]\nwall_time = 30\n");
    assert_at(&e, 4, 13, "limits.wall_time");
    assert!(e.message.contains("with a unit"), "{e}");

    let e = err_after_minimal("migration.cooldown = \"5 minutes\"\n");
    assert_at(&e, 3, 22, "migration.cooldown");
}

#[test]
fn backoff_longer_than_max_backoff() {
    let e = err_after_minimal("[restart]\nbackoff = \"10s\"\nmax_backoff = \"5s\"\n");
    assert_at(&e, 5, 15, "restart.max_backoff");
    assert_eq!(e.message, "expected at least backoff (10s), got 5s");

    // With the maximum left at its default, the backoff that was written is blamed.
    let e = err_after_minimal("[restart]\nbackoff = \"2m\"\n");
    assert_at(&e, 4, 11, "restart.backoff");
}

#[test]
fn bad_name() {
    for bad in ["My-App", "-app", "app-", "", "app_1", "é"] {
        let e = err(&format!("module = \"a.wasm\"\nname = {bad:?}\n"));
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_at(&e, 2, 8, "name");
    }
    let long = "a".repeat(64);
    let e = err(&format!("name = \"{long}\"\nmodule = \"a.wasm\"\n"));
    assert_at(&e, 1, 8, "name");
    parse(
        "tern.toml",
        &format!("name = \"{}\"\nmodule = \"a.wasm\"\n", "a".repeat(63)),
    )
    .unwrap();
    parse("tern.toml", "name = \"0-a-9\"\nmodule = \"a.wasm\"\n").unwrap();
}

#[test]
fn duplicate_ports() {
    let e = err_after_minimal("ports = [\n  80,\n  443,\n  80,\n]\n");
    assert_at(&e, 6, 3, "ports[2]");
    assert_eq!(e.message, "port 80 is already listed at ports[0]");
}

#[test]
fn port_out_of_range() {
    let e = err_after_minimal("ports = [80, 0]\n");
    assert_at(&e, 3, 14, "ports[1]");
    assert_eq!(e.message, "expected a port number from 1 to 65535, got 0");

    let e = err_after_minimal("ports = [65536]\n");
    assert_at(&e, 3, 10, "ports[0]");
    let e = err_after_minimal("ports = [-1]\n");
    assert_at(&e, 3, 10, "ports[0]");
    parse("tern.toml", &format!("{MINIMAL}ports = [1, 65535]\n")).unwrap();
}

#[test]
fn relative_guest_path() {
    let e = err_after_minimal(
        "[[files]]\nhost = \"a\"\nguest = \"/a\"\n\n[[files]]\nhost = \"b\"\nguest = \"b.txt\"\n",
    );
    assert_at(&e, 9, 9, "files[1].guest");
    assert_eq!(
        e.message,
        "expected an absolute guest path (starting with '/'), got \"b.txt\""
    );

    let e = err_after_minimal("volumes = [{ name = \"data\", guest = \"data\" }]\n");
    assert_at(&e, 3, 37, "volumes[0].guest");

    let e = err_after_minimal("volumes = [{ name = \"data\", guest = \"/data/../etc\" }]\n");
    assert_at(&e, 3, 37, "volumes[0].guest");
}

#[test]
fn duplicate_volume_names_and_guest_paths() {
    let e = err_after_minimal(
        "[[volumes]]\nname = \"data\"\nguest = \"/data\"\n[[volumes]]\nname = \"data\"\nguest = \"/other\"\n",
    );
    assert_at(&e, 7, 8, "volumes[1].name");
    assert_eq!(e.message, "\"data\" is already the name of volumes[0]");

    let e = err_after_minimal(
        "files = [{ host = \"a\", guest = \"/x\" }, { host = \"b\", guest = \"/x\" }]\n",
    );
    assert_at(&e, 3, 62, "files[1].guest");
}

#[test]
fn negative_weight() {
    let e = err_after_minimal("[migration.weights]\nperformance = 1\nmove_cost = -0.5\n");
    assert_at(&e, 5, 13, "migration.weights.move_cost");
    assert_eq!(e.message, "expected a weight of 0 or more, got -0.5");

    let e = err_after_minimal("[migration]\nweights = { cost = nan }\n");
    assert_at(&e, 4, 20, "migration.weights.cost");

    let e = err_after_minimal("[migration]\nthreshold = -1\n");
    assert_at(&e, 4, 13, "migration.threshold");
}

#[test]
fn bad_cpu() {
    let e = err_after_minimal("[limits]\ncpu = 0\n");
    assert_at(&e, 4, 7, "limits.cpu");
    let e = err_after_minimal("[limits]\ncpu = -1.5\n");
    assert_at(&e, 4, 7, "limits.cpu");
}

#[test]
fn bad_enum_value() {
    let e = err_after_minimal("[restart]\npolicy = \"sometimes\"\n");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_at(&e, 4, 10, "restart.policy");
    assert_eq!(
        e.message,
        "expected one of \"never\", \"on-failure\", \"always\", got \"sometimes\""
    );

    let e = err_after_minimal("migration = { mode = \"Stateful\" }\n");
    assert_at(&e, 3, 22, "migration.mode");
    assert_eq!(
        e.message,
        "expected \"stateless\" or \"stateful\", got \"Stateful\""
    );
}

#[test]
fn placement_and_http_rules() {
    let e = err_after_minimal("[placement.require]\narch = [\"x86_64\"]\nregion = []\n");
    assert_at(&e, 5, 10, "placement.require.region");
    let e = err_after_minimal("[http]\nhost = \"a.example\"\npath_prefix = \"api\"\n");
    assert_at(&e, 5, 15, "http.path_prefix");
    let e = err_after_minimal("[env]\nOK = \"1\"\n\"A=B\" = \"2\"\n");
    assert_at(&e, 5, 1, "env.\"A=B\"");
}

#[test]
fn first_problem_in_the_text_is_reported() {
    // Validation finds the name problem first, but the port comes earlier in the text.
    let e = err("module = \"a.wasm\"\nports = [1, 1]\nname = \"Bad\"\n");
    assert_at(&e, 2, 13, "ports[1]");
}

#[test]
fn columns_count_characters_and_crlf_lines_count_once() {
    let e = err_after_minimal("args = [\"héllo\", 1]\n");
    assert_at(&e, 3, 18, "args[1]");

    let e = err("name = \"app\"\r\nmodule = \"a.wasm\"\r\n\r\n[limits]\r\nmemory = \"lots\"\r\n");
    assert_at(&e, 5, 10, "limits.memory");
}

#[test]
fn profile_round_trips_through_json() {
    for text in [FULL, MINIMAL] {
        let p = parse("tern.toml", text).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
    let p = parse("tern.toml", FULL).unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["limits"]["memory"], 512u64 << 20);
    assert_eq!(json["limits"]["wall_time"], "90m");
    assert_eq!(json["restart"]["backoff"], "250ms");
    assert_eq!(json["restart"]["policy"], "always");
    assert_eq!(json["migration"]["mode"], "stateless");
}

#[test]
fn schema_mentions_every_top_level_field() {
    let schema = json_schema();
    let properties = schema["properties"].as_object().expect("properties");
    let fields = [
        "name",
        "module",
        "args",
        "env",
        "files",
        "volumes",
        "limits",
        "ports",
        "placement",
        "migration",
        "restart",
        "http",
    ];
    for field in fields {
        let described = properties
            .get(field)
            .and_then(|p| p["description"].as_str());
        assert!(
            described.is_some_and(|d| !d.is_empty()),
            "{field} undocumented"
        );
    }
    assert_eq!(properties.len(), fields.len());
    assert_eq!(schema["required"], serde_json::json!(["name", "module"]));
    assert_eq!(schema["additionalProperties"], false);
    // The TOML input form: sizes are strings or integers, durations strings, no nulls.
    let limits = &schema["$defs"]["Limits"]["properties"];
    assert!(limits["memory"]["oneOf"].is_array());
    assert_eq!(limits["wall_time"]["type"], "string");
    assert_eq!(limits["cpu"]["type"], "number");
    assert!(!schema.to_string().contains("\"null\""));
}

#[test]
fn sizes() {
    assert_eq!(parse_size("512MiB"), Some(512 << 20));
    assert_eq!(parse_size("1GiB"), Some(1 << 30));
    assert_eq!(parse_size("64MB"), Some(64_000_000));
    assert_eq!(parse_size("1.5 GiB"), Some(3 << 29));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("10kb"), Some(10_000));
    assert_eq!(parse_size("7B"), Some(7));
    for bad in [
        "",
        "lots",
        "1.5B",
        "1 M",
        "MiB",
        "1.GiB",
        ".5GiB",
        "-1MiB",
        "99999999TiB",
    ] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
    assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
    for bad in ["", "30", "5 s", "1x", "s", "0.5ns", "1h 30m", "-1s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
    for d in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1500),
        Duration::from_secs(60),
        Duration::from_secs(5400),
        Duration::new(86_400 * 3, 7),
    ] {
        assert_eq!(parse_duration(&format_duration(d)), Some(d), "{d:?}");
    }
    assert_eq!(format_duration(Duration::from_secs(90)), "90s");
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    for text in [
        "\u{0}",
        "name = \"a\"\nmodule = \"b\"\nlimits.memory = \"99999999999999999999999999999999999999999TiB\"",
        "name = \"a\"\nmodule = \"b\"\nlimits.wall_time = \"99999999999999999999999d\"",
        "name = \"a\"\nmodule = \"b\"\nlimits.wall_time = \"1.0000000000000000000000000001s\"",
        "[[[",
        "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    ] {
        assert!(parse("tern.toml", text).is_err());
    }
}
