//! What the store's threads and tasks share: how a job reaches one and its answer comes
//! back, and the lower priority of the threads no client waits on.

use tokio::sync::{mpsc, oneshot};

use crate::errors::failure;

/// A queue in front of a store thread or task.
pub(crate) trait Queue<J> {
    /// Queues `job`; false when nothing takes jobs from the queue any more.
    fn push(&self, job: J) -> bool;
}

impl<J> Queue<J> for std::sync::mpsc::Sender<J> {
    fn push(&self, job: J) -> bool {
        self.send(job).is_ok()
    }
}

impl<J> Queue<J> for mpsc::UnboundedSender<J> {
    fn push(&self, job: J) -> bool {
        self.send(job).is_ok()
    }
}

/// Hands a job to the writer thread or the sequencer through its queue and waits for
/// its answer; `gone` is the error when it is no longer there.
pub(crate) async fn ask<J, T>(
    queue: &impl Queue<J>,
    job: impl FnOnce(oneshot::Sender<rusqlite::Result<T>>) -> J,
    gone: &'static str,
) -> rusqlite::Result<T> {
    let (reply, answer) = oneshot::channel();
    if !queue.push(job(reply)) {
        return Err(failure(rusqlite::ffi::SQLITE_MISUSE, gone));
    }
    answer
        .await
        .unwrap_or_else(|_| Err(failure(rusqlite::ffi::SQLITE_INTERNAL, gone)))
}

/// Lowers the calling thread's CPU priority (nice 10), for the threads whose work no
/// client waits on: applying acked messages and checkpoints. Both come in bursts (a
/// second's messages at once); on a busy machine they then took CPU from the threads
/// that ack and deliver. In the 1:1 benchmark at 10,000 msg/s with the machine under
/// other load, p99 was 8.0-9.2 ms with these threads niced and 10.3-16.5 ms without
/// (three runs each, interleaved).
pub(crate) fn background_priority() {
    // On Linux a thread id names that one thread here.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "could not lower a store thread's priority");
    }
}
