//! The memory a node runs in, the caller's: the member table, the BGP
//! sessions' message buffers and the overlay's sockets and buffers, sized
//! for the members the node may hold, and the RIB.
//!
//! The node's other tables are fixed-size fields of [`super::Node`]. The
//! member table and the buffers grow with every member (a 13 KiB slot,
//! written when a member is added; 24 KiB of BGP message buffers and 16 KiB
//! of socket buffers, of which a running session writes a few pages), so
//! they are slices the caller sizes; the RIB is fixed-size but large, and
//! lives here so that it is never moved. A driver with a heap allocates
//! them once ([`NodeMemory`], feature `std`); one without gives static
//! arrays.

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
use smoltcp::iface::SocketStorage;

use super::slots::MemberSlot;
use super::NodeRib;
#[cfg(feature = "std")]
use crate::bgp::session::SESSION_BUFFERS;
use crate::overlay::OverlayStorage;
#[cfg(feature = "std")]
use crate::wg::MAX_MEMBERS;

/// The member table's slots and the overlay's storage.
#[derive(Debug)]
pub struct NodeStorage<'a, T> {
    /// One slot per member the node may hold (at most
    /// [`MAX_MEMBERS`](crate::wg::MAX_MEMBERS) are
    /// used). Adding a member to a full table is refused with
    /// [`crate::wg::MemberError::Full`].
    pub members: &'a mut [MemberSlot<'a, T>],
    /// The members' BGP sessions' message buffers:
    /// [`SESSION_BUFFERS`] bytes a slot (a slot without them is not used).
    /// Zeroed memory (a `static` array, or a zeroed allocation) costs a page
    /// only once a message reaches it.
    pub bgp: &'a mut [u8],
    /// The BGP sessions' TCP sockets: [`OverlayStorage::sockets_for`] the
    /// same number of members, or sessions beyond it cannot connect.
    pub overlay: OverlayStorage<'a>,
    /// The RIB (its contents do not matter: the node empties it). The
    /// largest fixed table, some 850 KiB, most of it capacity a small mesh
    /// never uses: kept apart from the node so that it is never copied, and
    /// its unused capacity never written.
    pub rib: &'a mut NodeRib,
}

/// The storage, allocated: for drivers with a heap (feature `std`).
///
/// The BGP and socket buffers are zeroed allocations: the kernel maps their
/// pages when a session first writes them, so a member costs that memory
/// only once its session runs, and only what it writes. The member slots are written only where a
/// member is added (an empty slot is a tag).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct NodeMemory<'a, T> {
    members: std::vec::Vec<MemberSlot<'a, T>>,
    bgp: std::vec::Vec<u8>,
    sockets: std::vec::Vec<SocketStorage<'a>>,
    buffers: std::vec::Vec<u8>,
    /// Made in place by [`NodeMemory::storage`].
    rib: std::boxed::Box<core::mem::MaybeUninit<NodeRib>>,
}

#[cfg(feature = "std")]
impl<'a, T> NodeMemory<'a, T> {
    /// Room for `members` members (clamped to 1..=[`MAX_MEMBERS`]).
    pub fn new(members: usize) -> Self {
        let members = members.clamp(1, MAX_MEMBERS);
        // `default`, not the constant `EMPTY`: the constant is copied in
        // whole (some 13 KiB a slot, every page written), where `default`
        // writes the one word that says "empty".
        let mut slots = std::vec::Vec::new();
        slots.resize_with(members, MemberSlot::default);
        let mut sockets = std::vec::Vec::new();
        sockets.resize_with(OverlayStorage::sockets_for(members), || {
            SocketStorage::EMPTY
        });
        NodeMemory {
            members: slots,
            bgp: std::vec![0u8; members * SESSION_BUFFERS],
            sockets,
            buffers: std::vec![0u8; OverlayStorage::buffer_len(members)],
            rib: std::boxed::Box::new_uninit(),
        }
    }

    /// The storage, for one node.
    pub fn storage(&'a mut self) -> NodeStorage<'a, T> {
        NodeStorage {
            members: &mut self.members,
            bgp: &mut self.bgp,
            overlay: OverlayStorage::new(&mut self.sockets, &mut self.buffers),
            // Made in memory allocated before, so it is made in place: only
            // its small fixed part is written (`Box::new` would build it
            // whole and copy it, every page written).
            rib: self.rib.write(NodeRib::new(0, 1)),
        }
    }

    /// Storage for `members` members that is never freed, for a node that
    /// lives as long as the process.
    pub fn leak(members: usize) -> NodeStorage<'static, T>
    where
        T: 'static,
    {
        let memory: &'static mut NodeMemory<'static, T> =
            std::boxed::Box::leak(std::boxed::Box::new(NodeMemory::new(members)));
        memory.storage()
    }
}
