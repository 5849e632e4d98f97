//! A session's message buffers, in memory the caller gives.
//!
//! A member's session is written whole when the member is added; its four
//! buffers (24 KiB) are not part of it but borrowed from a zeroed region
//! the caller set aside ([`crate::node::NodeStorage`]'s `bgp`), so a page of
//! them costs memory only once a message reaches it: a session that never
//! connects costs none, one that exchanges a few small UPDATEs a page or
//! two.

use super::TX_BUF;
use crate::bgp::wire::MAX_MESSAGE_LEN;

/// Bytes a session's buffers take: two connections' transmit and receive.
pub const SESSION_BUFFERS: usize = 2 * TX_BUF + 2 * MAX_MESSAGE_LEN;

/// Bytes queued in borrowed memory: `len` of `bytes` used.
#[derive(Debug, Default)]
pub(super) struct Buf<'b> {
    bytes: &'b mut [u8],
    len: usize,
}

impl<'b> Buf<'b> {
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends `data`; `Err` and nothing appended if it does not fit.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), ()> {
        let end = self.len.checked_add(data.len()).ok_or(())?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(())?
            .copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    /// Grows to `len` bytes, the new ones zero; `Err` if it does not fit.
    pub fn grow_zeroed(&mut self, len: usize) -> Result<(), ()> {
        if len > self.bytes.len() {
            return Err(());
        }
        if len > self.len {
            self.bytes[self.len..len].fill(0);
            self.len = len;
        }
        Ok(())
    }
}

impl core::ops::Deref for Buf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::ops::DerefMut for Buf<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

/// The four buffers of one session, cut from the caller's memory.
#[derive(Debug, Default)]
pub struct SessionBuffers<'b> {
    pub(super) tx: [Buf<'b>; 2],
    pub(super) rx: [Buf<'b>; 2],
}

impl<'b> SessionBuffers<'b> {
    /// Cuts `bytes` into the four buffers. [`SESSION_BUFFERS`] bytes give
    /// each its full size ([`TX_BUF`] to send, a largest message to
    /// receive); fewer give smaller buffers (a receive buffer smaller than a
    /// message the peer sends closes the connection), more are left unused.
    pub fn new(bytes: &'b mut [u8]) -> Self {
        let mut rest = bytes;
        let mut cut = |n: usize| {
            let n = n.min(rest.len());
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            Buf {
                bytes: head,
                len: 0,
            }
        };
        let tx = [cut(TX_BUF), cut(TX_BUF)];
        let rx = [cut(MAX_MESSAGE_LEN), cut(MAX_MESSAGE_LEN)];
        SessionBuffers { tx, rx }
    }
}
