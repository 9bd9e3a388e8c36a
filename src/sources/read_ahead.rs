//! Reading ahead. A worker draining a backlog reads 2,048 messages, takes them in, steps the
//! graph, commits and acknowledges, then reads again. The server's part of that next read (the
//! entries and their pending-list records, ~1.7 µs a message) and its bytes' way over the socket
//! need not wait for all that: after a full read, once the worker has read the floor, it sends the
//! next read at once and takes its answer at its next read.
//!
//! Why the floor stays right: the read ahead is sent only after the worker read the floor it
//! then advances to. Every raise that read saw happened before the server ran the read ahead, so
//! the read ahead holds only messages after the watermarks behind those raises: at or after the
//! floor (a bar before it is late, as from any read).

use super::redis_stream::{Conn, Entry, GROUP, Keys, StreamError};

/// How long the answer to a read sent ahead (which never blocks) may take.
const ANSWER: std::time::Duration = std::time::Duration::from_secs(30);

impl Conn {
    /// Sends a read of up to `count` new messages for `consumer` without waiting (once: a read
    /// already ahead stays the only one). The next [`Conn::read`] or [`Conn::read_watching`]
    /// answers with its messages.
    ///
    /// # Errors
    /// Redis unreachable within the patience.
    pub fn send_read_ahead(
        &mut self,
        keys: &Keys,
        consumer: &str,
        count: usize,
    ) -> Result<(), StreamError> {
        if self.ahead {
            return Ok(());
        }
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(keys.stream())
            .arg(">");
        self.with_reader(|raw| raw.send_read(&read))?;
        self.ahead = true;
        Ok(())
    }

    /// Whether a read was sent ahead and its messages not taken yet.
    pub fn reads_ahead(&self) -> bool {
        self.ahead
    }

    /// The messages of the read sent ahead.
    pub(super) fn take_read_ahead(&mut self, keys: &Keys) -> Result<Vec<Entry>, StreamError> {
        self.ahead = false;
        self.answer(keys, ANSWER)
    }
}
