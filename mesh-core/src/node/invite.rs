//! The node's room for invites ([`crate::invite`]): join datagrams on the
//! mesh port, the invites this router handed out, and its own join.
//!
//! The node answers and sends join datagrams; writing the member sections
//! is the daemon's (a file edit, off the packet loop), told through
//! [`Node::poll_invite_outcome`].

use super::output::TxMeta;
use super::*;

use crate::invite::{
    self, Full, Invites, JoinState, Joining, Name, Outcome, Refusal, Reply, Token, ID_LEN,
    NONCE_LEN, SECRET_LEN,
};

/// Invites a router holds at once (used ones stay until they expire).
pub const MAX_INVITES: usize = 8;
/// Outcomes waiting for the daemon.
pub const INVITE_OUTCOMES: usize = 4;

/// What the daemon must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteOutcome {
    /// A friend used one of our invites: it is member `name`, key `key`,
    /// with `numbers` if it does not derive them from its key; its join
    /// request came `from` there (where its mesh port is reached now).
    Joined {
        name: Name,
        key: Key,
        numbers: Option<invite::Numbers>,
        from: SocketAddr,
    },
    /// The inviter accepted our join: it is member
    /// `token.inviter_name`, key `token.inviter`, at `token.endpoints`.
    Accepted { token: Token },
    /// The inviter refused our join, and said why.
    Refused { token: Token, why: Refusal },
    /// Our join had no answer in time.
    TimedOut { token: Token },
}

/// The room's state in the node.
#[derive(Debug, Default)]
pub(super) struct InviteRoom {
    pub invites: Invites<MAX_INVITES>,
    pub joining: Option<Joining>,
    pub out: heapless::Deque<InviteOutcome, INVITE_OUTCOMES>,
    /// Outcomes the daemon did not take in time.
    pub dropped: u64,
}

impl InviteRoom {
    fn tell(&mut self, o: InviteOutcome) {
        if self.out.push_back(o).is_err() {
            self.dropped += 1;
        }
    }
}

impl<C: Crypto> Node<'_, C> {
    /// Holds an invite giving `name`, valid for `valid_for` (the daemon
    /// makes the id and secret from the system's random source and puts
    /// them in the token).
    pub fn add_invite(
        &mut self,
        now: Instant,
        id: [u8; ID_LEN],
        secret: [u8; SECRET_LEN],
        name: Name,
        valid_for: Duration,
    ) -> Result<(), Full> {
        self.invite.invites.add(now, id, secret, name, valid_for)
    }

    /// Withdraws the live invite giving `name`; true if there was one.
    pub fn cancel_invite(&mut self, name: &str) -> bool {
        self.invite.invites.cancel(name)
    }

    /// The invites and their counters.
    pub fn invites(&self) -> &Invites<MAX_INVITES> {
        &self.invite.invites
    }

    /// Our join, if one was started.
    pub fn joining(&self) -> Option<&Joining> {
        self.invite.joining.as_ref()
    }

    /// Outcomes the daemon could not take in time (the queue was full).
    pub fn invite_outcomes_dropped(&self) -> u64 {
        self.invite.dropped
    }

    /// Joins the mesh of `token`'s inviter: the request goes to its
    /// endpoints now and every [`invite::JOIN_RETRY`] until it accepts or
    /// [`invite::JOIN_TIMEOUT`] passes. A join in progress is replaced.
    /// `numbers`: ours, when not derived from our key (the inviter writes
    /// them in its section for us).
    pub fn join(
        &mut self,
        now: Instant,
        token: Token,
        nonce: [u8; NONCE_LEN],
        numbers: Option<invite::Numbers>,
    ) {
        let mut j = Joining::new(now, token, nonce);
        j.numbers = numbers;
        self.invite.joining = Some(j);
        self.join_step(now);
        self.timers_changed = true;
        self.settle();
    }

    /// The next thing the daemon must do about invites.
    pub fn poll_invite_outcome(&mut self) -> Option<InviteOutcome> {
        self.invite.out.pop_front()
    }

    pub(super) fn join_timeout(&self) -> Option<Instant> {
        self.invite.joining.as_ref().and_then(Joining::poll_timeout)
    }

    /// Sends our join request if it is due; tells a timeout once.
    pub(super) fn join_step(&mut self, now: Instant) {
        let own = self.crypto.public_key().0;
        let Some(j) = self.invite.joining.as_mut() else {
            return;
        };
        let mut buf = [0u8; invite::MAX_DATAGRAM];
        if let Some(n) = j.poll_request(now, &own, &mut buf) {
            for e in j.token.endpoints.iter() {
                let meta = TxMeta::to(SocketAddr::from(*e), n);
                if !self.tx.push(&buf[..n], meta) {
                    self.stats.queue_full += 1;
                }
            }
        }
        if j.state == JoinState::TimedOut {
            let token = j.token.clone();
            self.invite.joining = None;
            self.invite.tell(InviteOutcome::TimedOut { token });
        }
    }

    /// A datagram on the mesh port that starts with [`invite::MAGIC`].
    pub(super) fn join_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.join_in += 1;
        if !self.invite.invites.admit(now) {
            return;
        }
        if invite::is_request(bytes) {
            let own = self.crypto.public_key().0;
            let mut buf = [0u8; invite::MAX_DATAGRAM];
            let (len, joined) = match self.invite.invites.handle(now, bytes, &own, &mut buf) {
                Outcome::Joined {
                    name,
                    key,
                    numbers,
                    len,
                } => (len, Some((name, key, numbers))),
                Outcome::Again { len } | Outcome::Told { len } => (len, None),
                Outcome::Refused => return,
            };
            if !self.tx.push(&buf[..len], TxMeta::to(from, len)) {
                self.stats.queue_full += 1;
            }
            if let Some((name, key, numbers)) = joined {
                self.invite.tell(InviteOutcome::Joined {
                    name,
                    key: Key(key),
                    numbers,
                    from,
                });
            }
            return;
        }
        // An accept or a refusal, for our join if it is in progress.
        let reply = self
            .invite
            .joining
            .as_mut()
            .map_or(Reply::Ignored, |j| j.handle(bytes));
        let stats = &mut self.invite.invites.stats;
        match reply {
            Reply::Ignored => {
                stats.malformed += 1;
                return;
            }
            Reply::Accepted => stats.accepted += 1,
            Reply::Refused(_) => stats.refusals += 1,
        }
        if let Some(j) = self.invite.joining.take() {
            self.invite.tell(match reply {
                Reply::Refused(why) => InviteOutcome::Refused {
                    token: j.token,
                    why,
                },
                _ => InviteOutcome::Accepted { token: j.token },
            });
            self.timers_changed = true;
        }
    }
}
