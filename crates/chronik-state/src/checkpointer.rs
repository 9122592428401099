//! Makes applied partition state durable off the Raft loop's thread.
//!
//! Once a second the loop hands over, per partition that applied something,
//! a handle to the active segment file and the checkpoint to write after it.
//! fsyncing a partition's new data can take long (hundreds of MiB may be
//! dirty under load); doing it on the loop thread held up every group's
//! heartbeats, and followers started elections. The thread reports what it
//! made durable, and the loop compacts Raft logs up to that.
//!
//! A simulation runs the jobs inline instead, on the caller's thread, so
//! that when a checkpoint lands does not depend on thread scheduling.

use std::fs::File;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use chronik_raft::{GroupId, fail_stop};
use std::time::Instant;

use crate::partition::{ApplyCheckpoint, Partition};

pub struct Job {
    pub group: GroupId,
    pub partition: Arc<Partition>,
    /// The active segment, whose data up to `checkpoint.next_offset` is
    /// written; none when it is durable already (one write per record
    /// fsyncs segments as their entries are appended).
    pub file: Option<File>,
    pub checkpoint: ApplyCheckpoint,
}

/// Per group: the Raft index made durable, or `None` when the job did not
/// write (the partition was retired, or an error was logged).
type Done = Arc<Mutex<Vec<(GroupId, Option<u64>)>>>;

pub struct Checkpointer {
    /// `None` once dropping (the thread then finishes its queue and ends),
    /// and when jobs run inline.
    jobs: Option<mpsc::Sender<Job>>,
    done: Done,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// A checkpointer with a thread of its own.
    pub fn start() -> std::io::Result<Checkpointer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let done = Done::default();
        let finished = done.clone();
        let thread = std::thread::Builder::new().name("checkpointer".into()).spawn(move || {
            for job in queue {
                let outcome = run(&job);
                finished.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
            }
        })?;
        Ok(Checkpointer {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// A checkpointer that runs each job as it is submitted.
    pub fn inline() -> Checkpointer {
        Checkpointer {
            jobs: None,
            done: Done::default(),
            thread: None,
        }
    }

    pub fn submit(&self, job: Job) {
        if self.thread.is_none() {
            let outcome = run(&job);
            self.done.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
            return;
        }
        if self.jobs.as_ref().is_none_or(|jobs| jobs.send(job).is_err()) {
            tracing::error!("the checkpointer thread has stopped");
        }
    }

    /// What finished since the last call.
    pub fn finished(&self) -> Vec<(GroupId, Option<u64>)> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// How long one partition's checkpoint took: the fsync of its new data and
/// the checkpoint file. It shares the disk with the Raft log's fsyncs.
pub const CHECKPOINT_SECONDS: &str = "chronik_partition_checkpoint_seconds";

/// fsyncs the partition's data, then writes the checkpoint that covers it.
fn run(job: &Job) -> (GroupId, Option<u64>) {
    // Timed for metrics only.
    let started = Instant::now();
    let outcome = job
        .file
        .as_ref()
        .map_or(Ok(()), File::sync_data)
        .and_then(|()| job.partition.save_checkpoint(&job.checkpoint));
    metrics::histogram!(CHECKPOINT_SECONDS).record(started.elapsed().as_secs_f64());
    let durable = match outcome {
        Ok(true) => Some(job.checkpoint.index),
        Ok(false) => None,
        // A failed fsync is never retried: what the page cache held may be
        // gone (fail-stop).
        Err(e) => fail_stop(
            &format!("cannot checkpoint {}-{}", job.partition.topic, job.partition.index),
            &e,
        ),
    };
    (job.group, durable)
}

impl Drop for Checkpointer {
    /// Lets the thread finish what was submitted, so no checkpoint is
    /// written after its owner is gone.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
