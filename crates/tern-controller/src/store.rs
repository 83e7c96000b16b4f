//! The controller's state in one redb file: nodes, workloads, blobs and logs. Every change is a
//! transaction that reaches the disk before the API answers, so a restarted controller has
//! lost nothing it acknowledged.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tern_api::{Migration, Node, StoredLog, Workload};

use crate::{Error, Result};

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const WORKLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("workloads");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
/// Key: `<workload>\0<seq as 20 digits>`, so that one workload's chunks are one ordered range.
const LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("logs");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Key: `<id as 20 digits>`, so that migrations list in the order they were asked for.
const MIGRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("migrations");

fn db<T, E: Into<redb::Error>>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| Error::Store(e.into().to_string()))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("{what}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Store(e.to_string()))
}

/// Every record of a table, decoded (read and write transactions share this).
fn all<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    what: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for item in db(t.iter())? {
        let (_, v) = db(item)?;
        out.push(decode(what, v.value())?);
    }
    Ok(out)
}

/// One record of a table, decoded.
fn one<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    what: &str,
) -> Result<Option<T>> {
    let v = db(t.get(key))?;
    v.map(|v| decode(what, v.value())).transpose()
}

/// Migration ids are `m<n>`; keys pad the number so that they sort.
fn migration_key(id: &str) -> String {
    match id.strip_prefix('m').and_then(|n| n.parse::<u64>().ok()) {
        Some(n) => format!("{n:020}"),
        None => id.to_string(),
    }
}

fn log_key(workload: &str, seq: u64) -> String {
    format!("{workload}\0{seq:020}")
}

pub struct Store {
    db: Database,
}

/// One write transaction.
pub struct Tx {
    tx: redb::WriteTransaction,
    /// Whether anything was written: a transaction that only read is aborted instead of
    /// committed, so the reconcile pass does not wait for the disk five times a second.
    dirty: bool,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let database = db(Database::create(path))?;
        let tx = db(database.begin_write())?;
        db(tx.open_table(NODES))?;
        db(tx.open_table(WORKLOADS))?;
        db(tx.open_table(BLOBS))?;
        db(tx.open_table(LOGS))?;
        db(tx.open_table(COUNTERS))?;
        db(tx.open_table(MIGRATIONS))?;
        db(tx.commit())?;
        Ok(Store { db: database })
    }

    /// Run `f` in a write transaction, committed only if `f` succeeds.
    pub fn write<R>(&self, f: impl FnOnce(&mut Tx) -> Result<R>) -> Result<R> {
        let mut tx = Tx {
            tx: db(self.db.begin_write())?,
            dirty: false,
        };
        let r = f(&mut tx)?;
        if tx.dirty {
            db(tx.tx.commit())?;
        } else {
            db(tx.tx.abort())?;
        }
        Ok(r)
    }

    pub fn nodes(&self) -> Result<Vec<Node>> {
        let rx = db(self.db.begin_read())?;
        all(&db(rx.open_table(NODES))?, "node")
    }

    /// The value of counter `name` (0 if never set, or before the table exists).
    pub fn counter(&self, name: &str) -> Result<u64> {
        let rx = db(self.db.begin_read())?;
        let t = match rx.open_table(COUNTERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(crate::Error::Store(e.to_string())),
        };
        let value = db(t.get(name))?.map(|v| v.value()).unwrap_or(0);
        Ok(value)
    }

    pub fn node(&self, name: &str) -> Result<Option<Node>> {
        let rx = db(self.db.begin_read())?;
        one(&db(rx.open_table(NODES))?, name, "node")
    }

    pub fn workloads(&self) -> Result<Vec<Workload>> {
        let rx = db(self.db.begin_read())?;
        all(&db(rx.open_table(WORKLOADS))?, "workload")
    }

    pub fn workload(&self, name: &str) -> Result<Option<Workload>> {
        let rx = db(self.db.begin_read())?;
        one(&db(rx.open_table(WORKLOADS))?, name, "workload")
    }

    pub fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let rx = db(self.db.begin_read())?;
        let t = db(rx.open_table(BLOBS))?;
        Ok(db(t.get(digest))?.map(|v| v.value().to_vec()))
    }

    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        let rx = db(self.db.begin_read())?;
        let t = db(rx.open_table(BLOBS))?;
        Ok(db(t.get(digest))?.is_some())
    }

    pub fn migrations(&self) -> Result<Vec<Migration>> {
        let rx = db(self.db.begin_read())?;
        all(&db(rx.open_table(MIGRATIONS))?, "migration")
    }

    pub fn migration(&self, id: &str) -> Result<Option<Migration>> {
        let rx = db(self.db.begin_read())?;
        one(
            &db(rx.open_table(MIGRATIONS))?,
            &migration_key(id),
            "migration",
        )
    }

    /// Up to `limit` log chunks of `workload` from sequence number `from` on.
    pub fn logs(&self, workload: &str, from: u64, limit: usize) -> Result<Vec<StoredLog>> {
        let rx = db(self.db.begin_read())?;
        let t = db(rx.open_table(LOGS))?;
        let start = log_key(workload, from);
        let end = log_key(workload, u64::MAX);
        let mut out = Vec::new();
        for item in db(t.range(start.as_str()..end.as_str()))?.take(limit) {
            let (_, v) = db(item)?;
            out.push(decode("log", v.value())?);
        }
        Ok(out)
    }
}

impl Tx {
    pub fn node(&self, name: &str) -> Result<Option<Node>> {
        one(&db(self.tx.open_table(NODES))?, name, "node")
    }

    pub fn put_node(&mut self, node: &Node) -> Result<()> {
        self.dirty = true;
        let bytes = encode(node)?;
        let mut t = db(self.tx.open_table(NODES))?;
        db(t.insert(node.name.as_str(), bytes.as_slice()))?;
        Ok(())
    }

    pub fn nodes(&self) -> Result<Vec<Node>> {
        all(&db(self.tx.open_table(NODES))?, "node")
    }

    pub fn workload(&self, name: &str) -> Result<Option<Workload>> {
        one(&db(self.tx.open_table(WORKLOADS))?, name, "workload")
    }

    pub fn workloads(&self) -> Result<Vec<Workload>> {
        all(&db(self.tx.open_table(WORKLOADS))?, "workload")
    }

    pub fn put_workload(&mut self, w: &Workload) -> Result<()> {
        self.dirty = true;
        let bytes = encode(w)?;
        let mut t = db(self.tx.open_table(WORKLOADS))?;
        db(t.insert(w.name.as_str(), bytes.as_slice()))?;
        Ok(())
    }

    /// Remove a workload and its logs.
    pub fn delete_workload(&mut self, name: &str) -> Result<bool> {
        self.dirty = true;
        let existed = {
            let mut t = db(self.tx.open_table(WORKLOADS))?;
            let removed = db(t.remove(name))?;
            removed.is_some()
        };
        let mut t = db(self.tx.open_table(LOGS))?;
        let start = log_key(name, 0);
        let end = log_key(name, u64::MAX);
        db(t.retain_in(start.as_str()..end.as_str(), |_, _| false))?;
        Ok(existed)
    }

    pub fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> Result<()> {
        self.dirty = true;
        let mut t = db(self.tx.open_table(BLOBS))?;
        db(t.insert(digest, bytes))?;
        Ok(())
    }

    pub fn set_counter(&mut self, name: &str, value: u64) -> Result<()> {
        self.dirty = true;
        let mut c = db(self.tx.open_table(COUNTERS))?;
        db(c.insert(name, value))?;
        Ok(())
    }

    /// The next number of counter `name` (0 first).
    pub fn next(&mut self, name: &str) -> Result<u64> {
        self.dirty = true;
        let mut c = db(self.tx.open_table(COUNTERS))?;
        let next = db(c.get(name))?.map(|v| v.value()).unwrap_or(0);
        db(c.insert(name, next + 1))?;
        Ok(next)
    }

    pub fn migrations(&self) -> Result<Vec<Migration>> {
        all(&db(self.tx.open_table(MIGRATIONS))?, "migration")
    }

    pub fn migration(&self, id: &str) -> Result<Option<Migration>> {
        one(
            &db(self.tx.open_table(MIGRATIONS))?,
            &migration_key(id),
            "migration",
        )
    }

    pub fn put_migration(&mut self, m: &Migration) -> Result<()> {
        self.dirty = true;
        let bytes = encode(m)?;
        let mut t = db(self.tx.open_table(MIGRATIONS))?;
        db(t.insert(migration_key(&m.id).as_str(), bytes.as_slice()))?;
        Ok(())
    }

    /// Append output of an instance's stream that covers bytes `[offset, end)` of it, unless
    /// it was stored already (`end` 0: no such knowledge, always append).
    pub fn append_output(
        &mut self,
        workload: &str,
        mut log: StoredLog,
        offset: u64,
        end: u64,
    ) -> Result<()> {
        if end == 0 {
            return self.append_log(workload, log);
        }
        let key = format!("out:{}:{:?}", log.instance, log.stream);
        let have = {
            let c = db(self.tx.open_table(COUNTERS))?;
            let v = db(c.get(key.as_str()))?.map(|v| v.value()).unwrap_or(0);
            v
        };
        if end <= have {
            return Ok(());
        }
        if offset < have {
            // Part of it is stored: keep the rest (chunks are cut at character boundaries, so
            // the byte offset falls on one unless invalid bytes were replaced).
            let skip = (have - offset) as usize;
            match log.data.get(skip..) {
                Some(rest) => log.data = rest.to_string(),
                None => return Ok(()),
            }
        }
        {
            self.dirty = true;
            let mut c = db(self.tx.open_table(COUNTERS))?;
            db(c.insert(key.as_str(), end))?;
        }
        if log.data.is_empty() {
            return Ok(());
        }
        self.append_log(workload, log)
    }

    pub fn append_log(&mut self, workload: &str, mut log: StoredLog) -> Result<()> {
        self.dirty = true;
        let seq = {
            let mut c = db(self.tx.open_table(COUNTERS))?;
            let key = format!("log:{workload}");
            let next = db(c.get(key.as_str()))?.map(|v| v.value()).unwrap_or(0);
            db(c.insert(key.as_str(), next + 1))?;
            next
        };
        log.seq = seq;
        let bytes = encode(&log)?;
        let mut t = db(self.tx.open_table(LOGS))?;
        db(t.insert(log_key(workload, seq).as_str(), bytes.as_slice()))?;
        Ok(())
    }
}
