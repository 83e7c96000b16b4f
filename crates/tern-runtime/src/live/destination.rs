//! The destination's side, driven by `Runtime::run` for `Start::Incoming`: answer the hello,
//! write pages into the new instance's memory and mirror the files as they come, take the
//! final state, say ready, and wait for the verdict. Its failures are charged to the step the
//! source is in when they happen.

use std::io::{Read, Write};
use std::path::PathBuf;

use tern_api::MigrationStep;
use tern_snapshot::Snapshot;

use super::frame::{
    io_err, kind, proto, read_body, read_frame, read_head, At, Caused, FrameWriter, Hello, Reason,
    PROTOCOL_VERSION,
};
use super::memory::{receive_pages, PageSink};
use super::mirror;
use crate::fault::{self, Cuttable, Side};
use crate::{Error, MigrationCause, Result};

/// The destination's view of a migration while it receives.
pub(crate) struct Receiver<'a, S: Read + Write> {
    conn: &'a mut Cuttable<S>,
    buf: Vec<u8>,
    /// This side's preopened directories: (guest path, host path).
    dirs: Vec<(String, PathBuf)>,
}

impl<'a, S: Read + Write> Receiver<'a, S> {
    pub(crate) fn new(conn: &'a mut Cuttable<S>, dirs: Vec<(String, PathBuf)>) -> Self {
        Receiver {
            conn,
            buf: Vec::new(),
            dirs,
        }
    }

    /// Answer the source's hello: refuse a different module or protocol, with the reason.
    /// Returns the sizes the source's memories have now.
    pub(crate) fn handshake(&mut self, module_digest: &str, memories: &[u32]) -> Result<Vec<u64>> {
        Ok(self
            .hello(module_digest, memories)
            .at(MigrationStep::Prepare)?)
    }

    fn hello(&mut self, module_digest: &str, memories: &[u32]) -> Caused<Vec<u64>> {
        let k = read_frame(self.conn, &mut self.buf)?;
        if k != kind::HELLO {
            return Err(MigrationCause::UnexpectedFrame {
                kind: k,
                context: "instead of hello",
            });
        }
        let hello: Hello = serde_json::from_slice(&self.buf).map_err(proto)?;
        if fault::at(Side::Destination, "prepare") {
            self.conn.cut();
        }
        let refusal = if hello.version != PROTOCOL_VERSION {
            Some(format!(
                "protocol version {} (this node speaks {PROTOCOL_VERSION})",
                hello.version
            ))
        } else if hello.module_digest != module_digest {
            Some(format!(
                "the program is module {}, this destination prepared {module_digest}",
                hello.module_digest
            ))
        } else if hello.transform_version != tern_instrument::TRANSFORM_VERSION {
            Some(format!(
                "instrumentation version {} (this node has {})",
                hello.transform_version,
                tern_instrument::TRANSFORM_VERSION
            ))
        } else if hello.memories != memories {
            Some("the program's memories differ from the module's".into())
        } else {
            None
        };
        let mut fw = FrameWriter::new(&mut *self.conn, None);
        match refusal {
            Some(reason) => {
                let _ = fw.send(kind::REFUSE, &[&Reason::encode(&reason)]);
                Err(MigrationCause::Incompatible(reason))
            }
            None => fw
                .send(kind::ACCEPT, &[])
                .map(|_| hello.sizes)
                .map_err(io_err("answering")),
        }
    }

    /// Write pages as they come until the final state arrives; return it.
    pub(crate) fn receive(&mut self, sink: &mut dyn PageSink) -> Result<Snapshot> {
        // Pre-copy until the source's sync, stop-and-copy after it; the files' first pass is
        // the volumes step.
        let mut step = MigrationStep::PreCopy;
        loop {
            let head = read_head(self.conn).at(step)?;
            if head[0] == kind::PAGES {
                receive_pages(self.conn, head, &mut self.buf, sink).at(step)?;
                continue;
            }
            match read_body(self.conn, head, &mut self.buf).at(step)? {
                kind::MANIFEST => {
                    let frame = std::mem::take(&mut self.buf);
                    let files_step = match step {
                        MigrationStep::PreCopy => MigrationStep::Volumes,
                        s => s,
                    };
                    mirror::receive(self.conn, &frame, &mut self.buf, &self.dirs).at(files_step)?;
                }
                kind::ROUND_END => {
                    if fault::at(Side::Destination, "pre-copy") {
                        self.conn.cut();
                    }
                }
                kind::SYNC => {
                    FrameWriter::new(&mut *self.conn, None)
                        .send(kind::SYNCED, &[])
                        .map_err(io_err("answering"))
                        .at(step)?;
                    step = MigrationStep::StopAndCopy;
                }
                kind::FINAL => return tern_snapshot::decode(&self.buf).map_err(Error::from),
                kind::ABORT => {
                    let cause = MigrationCause::SourceAborted;
                    return Err(Error::Migration { step, cause });
                }
                k => {
                    let cause = MigrationCause::UnexpectedFrame {
                        kind: k,
                        context: "while receiving",
                    };
                    return Err(Error::Migration { step, cause });
                }
            }
        }
    }

    /// Tell the source why this side gave up (best effort: it may be gone).
    pub(crate) fn fail(&mut self, reason: &str) {
        let _ =
            FrameWriter::new(&mut *self.conn, None).send(kind::FAILED, &[&Reason::encode(reason)]);
    }

    /// Say ready; then wait for the verdict: Ok(true) go, Ok(false) abort, Err if the
    /// connection ended without one (someone else must decide).
    pub(crate) fn ready_then_verdict(&mut self) -> Result<bool> {
        if fault::at(Side::Destination, "resume") {
            self.conn.cut();
        }
        FrameWriter::new(&mut *self.conn, None)
            .send(kind::READY, &[])
            .map_err(io_err("saying ready"))
            .at(MigrationStep::Resume)?;
        if fault::at(Side::Destination, "verdict") {
            self.conn.cut();
        }
        match read_frame(self.conn, &mut self.buf).at(MigrationStep::Commit)? {
            kind::GO => Ok(true),
            kind::ABORT => Ok(false),
            k => Err(Error::Migration {
                step: MigrationStep::Commit,
                cause: MigrationCause::UnexpectedFrame {
                    kind: k,
                    context: "instead of a verdict",
                },
            }),
        }
    }
}
