//! Workload profiles (`tern.toml`) for the workspace's fixtures, written where a test wants
//! them.

use std::path::{Path, PathBuf};

use crate::tern::fixture;

/// A profile that runs fixture `fixture` as workload `name`:
///
/// ```toml
/// name = "<name>"
/// module = "<fixture>.wasm"
/// args = [<args>]
/// <top-level keys>
/// <tables>
/// ```
///
/// so that the first table starts on line 4 (tests of error messages count on it).
#[derive(Debug, Clone)]
pub struct Profile {
    name: String,
    fixture: String,
    args: Vec<String>,
    top: String,
    tables: String,
}

impl Profile {
    pub fn new(name: &str, fixture_name: &str) -> Profile {
        Profile {
            name: name.into(),
            fixture: fixture_name.into(),
            args: Vec::new(),
            top: String::new(),
            tables: String::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn args(mut self, args: &[&str]) -> Profile {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Top-level keys (`ports = [8080]`, `volumes = […]`), which TOML wants before any table.
    pub fn top(mut self, toml: &str) -> Profile {
        self.top.push_str(toml);
        self
    }

    /// Tables (`[limits]\nmemory = "64MiB"\n`…), after those given before.
    pub fn toml(mut self, toml: &str) -> Profile {
        self.tables.push_str(toml);
        self
    }

    /// `[restart] policy = "never"`: the program runs once, as an unmoved run does.
    pub fn restart_never(self) -> Profile {
        self.toml("[restart]\npolicy = \"never\"\n")
    }

    /// The text of `tern.toml`.
    pub fn text(&self) -> String {
        let args: Vec<String> = self.args.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "name = \"{}\"\nmodule = \"{}.wasm\"\nargs = [{}]\n{}{}",
            self.name,
            self.fixture,
            args.join(", "),
            self.top,
            self.tables
        )
    }

    /// Write it with a copy of its module in `dir/<name>/`; the path of its `tern.toml`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let d = dir.join(&self.name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::copy(
            fixture(&self.fixture),
            d.join(format!("{}.wasm", self.fixture)),
        )
        .expect("copy the fixture");
        let p = d.join("tern.toml");
        std::fs::write(&p, self.text()).expect("write tern.toml");
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_before_tables_and_the_first_table_is_on_line_4() {
        let p = Profile::new("svc", "counter")
            .args(&["1", "a b"])
            .toml("[limits]\nmemory = \"lots\"\n")
            .top("ports = [8080]\n");
        assert_eq!(
            p.text(),
            "name = \"svc\"\nmodule = \"counter.wasm\"\nargs = [\"1\", \"a b\"]\n\
             ports = [8080]\n[limits]\nmemory = \"lots\"\n"
        );
        let bare = Profile::new("x", "printer").toml("[limits]\n").text();
        assert_eq!(bare.lines().nth(3), Some("[limits]"));
    }
}
