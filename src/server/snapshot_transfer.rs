//! Moving a snapshot file from the RM that has it to one that needs it,
//! over their RM links, in chunks, without the event loop touching the
//! disk.
//!
//! raft-rs decides *when* a follower needs a snapshot and sends it a
//! `MsgSnapshot`; here that message carries only a descriptor (size,
//! checksum, address book). The receiver holds the message back, pulls
//! the file chunk by chunk (`SnapshotRequest` → `SnapshotChunk`, one
//! [`CHUNK`] in flight), has each chunk written by the snapshot I/O thread,
//! checks the checksum of the whole, and only then steps the message into
//! raft, which restores from it. It tells the sender how it ended
//! (`SnapshotDone`), which the sender reports to raft. A transfer that
//! stalls is retried (receiver) or given up and reported failed (sender),
//! and raft starts over.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::Waker;
use raft::eraftpb::{Message, MessageType};

use super::event_loop::EventLoop;
use crate::protocol::peer::PeerFrame;
use crate::raft::membership::AddressBook;
use crate::raft::snapshot::{self, Descriptor};
use crate::wake_queue::WakeQueue;

/// Bytes per chunk.
pub const CHUNK: u64 = 1 << 20;
/// A receiver asks again for a chunk not received within this.
const REQUEST_AGAIN: Duration = Duration::from_secs(3);
/// A sender gives a transfer up after this long without a request.
const SENDER_GIVES_UP: Duration = Duration::from_secs(30);

enum IoJob {
    Read {
        to: u64,
        index: u64,
        term: u64,
        offset: u64,
        path: PathBuf,
    },
    Write {
        index: u64,
        term: u64,
        offset: u64,
        bytes: Vec<u8>,
        size: u64,
        crc: u32,
        path: PathBuf,
    },
}

enum IoDone {
    Chunk {
        to: u64,
        index: u64,
        term: u64,
        offset: u64,
        total: u64,
        bytes: Vec<u8>,
    },
    Written {
        index: u64,
        term: u64,
        received: u64,
        /// `Some(ok)` once the file is whole (or the fetch failed).
        finished: Option<bool>,
    },
}

/// The snapshot I/O thread: reads chunks for peers, writes fetched ones.
struct SnapshotIo {
    jobs: Sender<IoJob>,
    done: Arc<WakeQueue<IoDone>>,
}

struct Incoming {
    index: u64,
    term: u64,
    file: File,
    hasher: crc32fast::Hasher,
    written: u64,
    partial: PathBuf,
}

fn io_thread(jobs: crossbeam_channel::Receiver<IoJob>, done: &WakeQueue<IoDone>) {
    let mut incoming: Option<Incoming> = None;
    let mut reading: Option<(PathBuf, File)> = None;
    while let Ok(job) = jobs.recv() {
        match job {
            IoJob::Read {
                to,
                index,
                term,
                offset,
                path,
            } => {
                if reading.as_ref().is_none_or(|(p, _)| *p != path) {
                    reading = File::open(&path).ok().map(|f| (path.clone(), f));
                }
                let chunk = reading.as_ref().and_then(|(_, f)| {
                    let total = f.metadata().ok()?.len();
                    let len = CHUNK.min(total.saturating_sub(offset)) as usize;
                    let mut bytes = vec![0u8; len];
                    f.read_exact_at(&mut bytes, offset).ok()?;
                    Some((total, bytes))
                });
                let (total, bytes) = chunk.unwrap_or((0, Vec::new()));
                done.push(IoDone::Chunk {
                    to,
                    index,
                    term,
                    offset,
                    total,
                    bytes,
                });
            }
            IoJob::Write {
                index,
                term,
                offset,
                bytes,
                size,
                crc,
                path,
            } => {
                let finished = write_chunk(&mut incoming, index, term, offset, &bytes, size, crc, &path);
                let received = incoming.as_ref().map_or(0, |i| i.written);
                if finished.is_some() {
                    if let Some(i) = incoming.take() {
                        let _ = std::fs::remove_file(&i.partial);
                    }
                }
                done.push(IoDone::Written {
                    index,
                    term,
                    received,
                    finished,
                });
            }
        }
    }
}

/// Writes one fetched chunk; `Some(ok)` once the file is whole (checked
/// and renamed into place) or the fetch cannot go on.
#[allow(clippy::too_many_arguments)]
fn write_chunk(
    incoming: &mut Option<Incoming>,
    index: u64,
    term: u64,
    offset: u64,
    bytes: &[u8],
    size: u64,
    crc: u32,
    path: &std::path::Path,
) -> Option<bool> {
    if offset == 0 {
        let partial = path.with_extension("partial");
        let opened = path
            .parent()
            .map_or(Ok(()), crate::storage::create_private_dir)
            .and_then(|()| crate::storage::files::open_private(&partial))
            .and_then(|f| f.set_len(0).map(|()| f));
        match opened {
            Ok(file) => {
                *incoming = Some(Incoming {
                    index,
                    term,
                    file,
                    hasher: crc32fast::Hasher::new(),
                    written: 0,
                    partial,
                })
            }
            Err(e) => {
                log::warn!("cannot store an incoming snapshot: {e}");
                return Some(false);
            }
        }
    }
    let Some(inc) = incoming.as_mut() else {
        return Some(false);
    };
    if inc.index != index || inc.term != term || inc.written != offset || offset + bytes.len() as u64 > size {
        return Some(false);
    }
    if let Err(e) = inc.file.write_all(bytes) {
        log::warn!("cannot store an incoming snapshot: {e}");
        return Some(false);
    }
    inc.hasher.update(bytes);
    inc.written += bytes.len() as u64;
    if inc.written < size {
        return None;
    }
    if inc.hasher.clone().finalize() != crc {
        log::warn!("snapshot {index} arrived whole but its checksum does not match; fetching again");
        return Some(false);
    }
    let placed = inc
        .file
        .sync_all()
        .and_then(|()| std::fs::rename(&inc.partial, path))
        .and_then(|()| path.parent().map_or(Ok(()), snapshot::sync_dir));
    match placed {
        Ok(()) => Some(true),
        Err(e) => {
            log::warn!("cannot store an incoming snapshot: {e}");
            Some(false)
        }
    }
}

/// A snapshot this RM is sending.
struct Outgoing {
    index: u64,
    last_activity: Instant,
}

/// A snapshot this RM is fetching.
struct Fetch {
    from: u64,
    index: u64,
    term: u64,
    size: u64,
    crc: u32,
    /// The leader's `MsgSnapshot`, stepped once the file is here.
    msg: Message,
    received: u64,
    /// A chunk is with the I/O thread: a repeat of it is ignored.
    writing: bool,
    requested_at: Option<Instant>,
    started: Instant,
}

/// The loop's snapshot transfers, both ways.
pub struct Transfers {
    io: SnapshotIo,
    outgoing: HashMap<u64, Outgoing>,
    fetch: Option<Fetch>,
    /// Addresses learned from a snapshot descriptor before it is installed
    /// (a new RM knows no one else yet).
    pub learned: AddressBook,
}

impl Transfers {
    /// Starts the snapshot I/O thread.
    pub fn start(waker: Arc<Waker>) -> std::io::Result<Transfers> {
        let (jobs, rx) = crossbeam_channel::unbounded();
        let done = Arc::new(WakeQueue::new(waker));
        {
            let done = done.clone();
            std::thread::Builder::new()
                .name("wooter-snapshot-io".into())
                .spawn(move || io_thread(rx, &done))?;
        }
        Ok(Transfers {
            io: SnapshotIo { jobs, done },
            outgoing: HashMap::new(),
            fetch: None,
            learned: AddressBook::new(),
        })
    }

    /// The lowest snapshot index being sent: the log is kept from there.
    pub fn hold(&self) -> Option<u64> {
        self.outgoing.values().map(|o| o.index).min()
    }

    /// Whether a fetch from `rm` is under way (its link must stay).
    pub fn fetching_from(&self, rm: u64) -> bool {
        self.fetch.as_ref().is_some_and(|f| f.from == rm)
    }
}

impl EventLoop {
    /// Notes a `MsgSnapshot` this RM is sending.
    pub(super) fn snapshot_sent(&mut self, msg: &Message) {
        let index = msg.get_snapshot().get_metadata().index;
        log::info!("sending snapshot {index} to RM {}", msg.to);
        self.transfers.outgoing.insert(
            msg.to,
            Outgoing {
                index,
                last_activity: Instant::now(),
            },
        );
    }

    /// A `MsgSnapshot` from the leader: fetch its file first, step it
    /// after.
    pub(super) fn snapshot_received(&mut self, msg: Message) {
        let meta = msg.get_snapshot().get_metadata();
        let (index, term, from) = (meta.index, meta.term, msg.from);
        let Some(desc) = Descriptor::decode(&msg.get_snapshot().data) else {
            log::warn!("RM {from} sent a snapshot message without a readable descriptor; ignored");
            return;
        };
        if let Some(f) = &mut self.transfers.fetch {
            if f.index == index && f.term == term && f.from == from {
                f.msg = msg; // the newest copy is stepped
                return;
            }
            log::info!(
                "abandoning snapshot {} from RM {}: RM {from} sent {index}",
                f.index,
                f.from
            );
        }
        log::info!(
            "fetching snapshot {index} (term {term}, {} bytes) from RM {from}",
            desc.size
        );
        for (id, a) in &desc.book {
            if !self.replica.book().contains_key(id) {
                self.transfers.learned.insert(*id, *a);
            }
        }
        self.transfers.fetch = Some(Fetch {
            from,
            index,
            term,
            size: desc.size,
            crc: desc.crc,
            msg,
            received: 0,
            writing: false,
            requested_at: None,
            started: Instant::now(),
        });
        self.dial_peers();
        self.request_chunk();
    }

    fn request_chunk(&mut self) {
        let Some(f) = &self.transfers.fetch else { return };
        let (from, frame) = (
            f.from,
            PeerFrame::SnapshotRequest {
                index: f.index,
                term: f.term,
                offset: f.received,
            },
        );
        if self.send_to_peer(from, &frame) {
            if let Some(f) = &mut self.transfers.fetch {
                f.requested_at = Some(Instant::now());
            }
        }
    }

    /// A peer asks for a chunk of a snapshot this RM holds.
    pub(super) fn snapshot_requested(&mut self, from: u64, index: u64, term: u64, offset: u64) {
        if let Some(o) = self.transfers.outgoing.get_mut(&from) {
            o.last_activity = Instant::now();
        }
        let path = snapshot::path_of(&self.replica.snapshot_dir(), index, term);
        let _ = self.transfers.io.jobs.send(IoJob::Read {
            to: from,
            index,
            term,
            offset,
            path,
        });
    }

    /// A chunk of the snapshot this RM is fetching.
    pub(super) fn snapshot_chunk(&mut self, from: u64, index: u64, term: u64, offset: u64, total: u64, bytes: Vec<u8>) {
        let Some(f) = &mut self.transfers.fetch else { return };
        if f.from != from || f.index != index || f.term != term || f.received != offset || f.writing {
            return; // a late duplicate
        }
        f.writing = true;
        if total == 0 || total != f.size {
            log::warn!("RM {from} no longer has snapshot {index}; raft will offer another");
            self.finish_fetch(false);
            return;
        }
        let (size, crc) = (f.size, f.crc);
        let path = snapshot::path_of(&self.replica.snapshot_dir(), index, term);
        let _ = self.transfers.io.jobs.send(IoJob::Write {
            index,
            term,
            offset,
            bytes,
            size,
            crc,
            path,
        });
    }

    fn finish_fetch(&mut self, ok: bool) {
        let Some(f) = self.transfers.fetch.take() else { return };
        let done = PeerFrame::SnapshotDone {
            index: f.index,
            term: f.term,
            ok,
        };
        if ok {
            log::info!(
                "snapshot {} fetched from RM {} and checked ({} bytes in {} ms)",
                f.index,
                f.from,
                f.size,
                f.started.elapsed().as_millis()
            );
            self.replica.step(f.msg);
        }
        self.send_to_peer(f.from, &done);
    }

    /// A receiver says how a snapshot this RM sent it ended.
    pub(super) fn snapshot_done(&mut self, from: u64, index: u64, ok: bool) {
        if self.transfers.outgoing.remove(&from).is_some() {
            log::info!(
                "RM {from} {} snapshot {index}",
                if ok { "received" } else { "could not take" }
            );
            self.replica.report_snapshot(from, ok);
        }
    }

    /// Hands the I/O thread's results on: chunks to peers, progress to the
    /// fetch.
    pub(super) fn deliver_snapshot_io(&mut self) {
        for done in self.transfers.io.done.take() {
            match done {
                IoDone::Chunk {
                    to,
                    index,
                    term,
                    offset,
                    total,
                    bytes,
                } => {
                    let frame = PeerFrame::SnapshotChunk {
                        index,
                        term,
                        offset,
                        total,
                        bytes,
                    };
                    self.send_to_peer(to, &frame);
                }
                IoDone::Written {
                    index,
                    term,
                    received,
                    finished,
                } => {
                    if !self
                        .transfers
                        .fetch
                        .as_ref()
                        .is_some_and(|f| f.index == index && f.term == term)
                    {
                        continue;
                    }
                    match finished {
                        Some(ok) => self.finish_fetch(ok),
                        None => {
                            if let Some(f) = &mut self.transfers.fetch {
                                f.received = received;
                                f.writing = false;
                            }
                            self.request_chunk();
                        }
                    }
                }
            }
        }
    }

    /// Every raft tick: ask again for a chunk that did not come, give up
    /// on receivers that went quiet.
    pub(super) fn snapshot_tick(&mut self) {
        let now = Instant::now();
        let stalled = self
            .transfers
            .fetch
            .as_ref()
            .is_some_and(|f| !f.writing && f.requested_at.is_none_or(|t| now.duration_since(t) >= REQUEST_AGAIN));
        if stalled {
            self.request_chunk();
        }
        let quiet: Vec<u64> = self
            .transfers
            .outgoing
            .iter()
            .filter(|(_, o)| now.duration_since(o.last_activity) >= SENDER_GIVES_UP)
            .map(|(id, _)| *id)
            .collect();
        for id in quiet {
            log::warn!("RM {id} stopped fetching its snapshot; raft will offer it again");
            self.transfers.outgoing.remove(&id);
            self.replica.report_snapshot(id, false);
        }
    }
}

/// Whether a raft message is a snapshot (handled here, not stepped at once).
pub fn is_snapshot(msg: &Message) -> bool {
    msg.get_msg_type() == MessageType::MsgSnapshot
}
