//! This crate's way into tern-testkit's harness: the `tern` binary that cargo built for these
//! tests, and the cluster every fleet test starts from.

use std::path::PathBuf;

pub use tern_testkit::{assert_ends_alike, fixture, text, Cluster, Ending, Profile, Tern};

/// `tern` with the Tern home that all tests share, so that each fixture is instrumented and
/// compiled once.
pub fn tern() -> Tern {
    Tern::new(env!("CARGO_BIN_EXE_tern"), tern_home())
}

pub fn tern_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tern-home")
}

/// A cluster as the fleet tests want it: nodes declared down after a second without a
/// heartbeat, uploads up to 64 MiB, each agent counting its own instances' CPU (the nodes
/// share this machine) and ready for the fault-injection tests' faults. Placement is paused:
/// tests move workloads themselves, and those that test automatic placement say `tern
/// placement resume` when the stage is set.
pub fn cluster() -> tern_testkit::Builder {
    Cluster::builder(tern())
        .down_after("1s")
        .max_blob_bytes(64 << 20)
        .every_agent_args(&["--cpu-measure", "instances"])
        .fault_files()
}

/// Two nodes in two regions: alpha in eu-west, beta in us-east.
pub fn two_regions() -> tern_testkit::Builder {
    cluster()
        .node("alpha", "region=eu-west")
        .node("beta", "region=us-east")
}

/// Those and gamma in ap-south.
pub fn three_regions() -> tern_testkit::Builder {
    two_regions().node("gamma", "region=ap-south")
}

/// A profile for `fixture` that runs once (`[restart] policy = "never"`), as an unmoved run.
pub fn once(name: &str, fixture: &str, args: &[&str]) -> Profile {
    Profile::new(name, fixture).args(args).restart_never()
}

/// The counter service (`fixtures/counter.wasm`), for host `counter.example` on port 8080.
pub fn counter() -> Profile {
    Profile::new("counter", "counter")
        .top("ports = [8080]\n")
        .toml("[http]\nhost = \"counter.example\"\n")
}

/// Deploy a service and wait until it runs and has an endpoint.
pub fn deploy_service(c: &Cluster, profile: &Profile) {
    c.deploy_running(profile);
    c.wait(
        |c| endpoint(c, profile.name()).is_some(),
        &format!("{}'s endpoint", profile.name()),
    );
}

/// The address of a service's first endpoint.
pub fn endpoint(c: &Cluster, workload: &str) -> Option<String> {
    c.workload(workload)["endpoints"][0]["address"]
        .as_str()
        .map(str::to_string)
}

/// The other node of a two-node cluster of alpha and beta.
pub fn other(node: &str) -> &'static str {
    if node == "alpha" {
        "beta"
    } else {
        "alpha"
    }
}
