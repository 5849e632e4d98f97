//! Decode errors, layered so that each maps one-to-one onto the NOTIFICATION it
//! becomes (RFC 4271 §6), and the RFC 7606 action each UPDATE error calls for.
//! The header's own [`HeaderError`] is defined in `wire`, beside the header
//! it checks, so that `wire` needs nothing from here; it is re-exported here.

use super::notification::{
    CeaseSubcode, ErrorCode, FsmSubcode, HeaderSubcode, NotificationTooShort, OpenSubcode,
    UpdateSubcode,
};
pub use super::wire::HeaderError;

/// OPEN message errors (RFC 4271 §6.2, RFC 5492).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The version the peer asked for; we answer with the one we support (4).
    UnsupportedVersion(u8),
    BadPeerAs,
    BadBgpIdentifier,
    UnsupportedOptionalParameter,
    UnacceptableHoldTime,
    /// Optional parameters or capabilities whose lengths do not add up.
    Malformed,
}

/// UPDATE message errors (RFC 4271 §6.3), each with the attribute type code it
/// concerns where there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    MalformedAttributeList,
    UnrecognizedWellKnownAttribute(u8),
    MissingWellKnownAttribute(u8),
    AttributeFlags(u8),
    AttributeLength(u8),
    InvalidOrigin(u8),
    InvalidNextHop,
    OptionalAttribute(u8),
    InvalidNetworkField,
    MalformedAsPath,
    /// The AS_PATH of an eBGP route does not start with the peer's AS (RFC 4271 §6.3).
    FirstAsNotPeer,
    /// A path that decoded correctly but exceeds our fixed capacities (AS_PATH
    /// length, community count). Not an error of the peer's: treat-as-withdraw and
    /// count it, never reset.
    ResourceLimit(u8),
}

/// What RFC 7606 §2 prescribes for a malformed UPDATE, from least to most drastic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorAction {
    /// Drop the attribute, keep the route (§2 "attribute discard").
    AttributeDiscard,
    /// Keep the session; withdraw every route the UPDATE carried (§2 "treat-as-withdraw").
    TreatAsWithdraw,
    /// Send a NOTIFICATION and close (§2 "session reset"): only where the NLRI
    /// cannot be located or the RFC requires it.
    SessionReset,
}

impl UpdateError {
    pub fn subcode(self) -> UpdateSubcode {
        match self {
            UpdateError::MalformedAttributeList => UpdateSubcode::MalformedAttributeList,
            UpdateError::UnrecognizedWellKnownAttribute(_) => {
                UpdateSubcode::UnrecognizedWellKnownAttribute
            }
            UpdateError::MissingWellKnownAttribute(_) => UpdateSubcode::MissingWellKnownAttribute,
            UpdateError::AttributeFlags(_) => UpdateSubcode::AttributeFlagsError,
            UpdateError::AttributeLength(_) => UpdateSubcode::AttributeLengthError,
            UpdateError::InvalidOrigin(_) => UpdateSubcode::InvalidOriginAttribute,
            UpdateError::InvalidNextHop => UpdateSubcode::InvalidNextHopAttribute,
            UpdateError::OptionalAttribute(_) => UpdateSubcode::OptionalAttributeError,
            UpdateError::InvalidNetworkField => UpdateSubcode::InvalidNetworkField,
            UpdateError::MalformedAsPath | UpdateError::FirstAsNotPeer => {
                UpdateSubcode::MalformedAsPath
            }
            UpdateError::ResourceLimit(_) => UpdateSubcode::Unspecific,
        }
    }

    /// The attribute type code the error concerns, if any.
    pub fn attribute(self) -> Option<u8> {
        match self {
            UpdateError::UnrecognizedWellKnownAttribute(t)
            | UpdateError::MissingWellKnownAttribute(t)
            | UpdateError::AttributeFlags(t)
            | UpdateError::AttributeLength(t)
            | UpdateError::OptionalAttribute(t)
            | UpdateError::ResourceLimit(t) => Some(t),
            UpdateError::InvalidOrigin(_) => Some(1),
            UpdateError::MalformedAsPath | UpdateError::FirstAsNotPeer => Some(2),
            UpdateError::InvalidNextHop => Some(3),
            UpdateError::MalformedAttributeList | UpdateError::InvalidNetworkField => None,
        }
    }
}

/// Any error decoding a framed message; each maps onto one NOTIFICATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    Header(HeaderError),
    Open(OpenError),
    /// An UPDATE error that requires a session reset (RFC 7606 §5.3 and §3(g)):
    /// the NLRI cannot be located, or MP_REACH/MP_UNREACH is duplicated.
    Update(UpdateError),
    NotificationLength,
    RouteRefreshLength,
}

impl MessageError {
    /// The NOTIFICATION this error becomes, and its data octets (at most 2).
    pub fn notification(self) -> (ErrorCode, heapless::Vec<u8, 2>) {
        let mut data = heapless::Vec::new();
        let code = match self {
            MessageError::Header(h) => match h {
                HeaderError::Truncated => ErrorCode::MessageHeader(HeaderSubcode::Unspecific),
                HeaderError::ConnectionNotSynchronized => {
                    ErrorCode::MessageHeader(HeaderSubcode::ConnectionNotSynchronized)
                }
                HeaderError::BadMessageLength(l) => {
                    let _ = data.extend_from_slice(&l.to_be_bytes());
                    ErrorCode::MessageHeader(HeaderSubcode::BadMessageLength)
                }
                HeaderError::BadMessageType(t) => {
                    let _ = data.push(t);
                    ErrorCode::MessageHeader(HeaderSubcode::BadMessageType)
                }
            },
            MessageError::Open(o) => ErrorCode::Open(match o {
                OpenError::UnsupportedVersion(_) => {
                    // RFC 4271 §6.2: the data is the largest version we support.
                    let _ = data.extend_from_slice(&4u16.to_be_bytes());
                    OpenSubcode::UnsupportedVersionNumber
                }
                OpenError::BadPeerAs => OpenSubcode::BadPeerAs,
                OpenError::BadBgpIdentifier => OpenSubcode::BadBgpIdentifier,
                OpenError::UnsupportedOptionalParameter => {
                    OpenSubcode::UnsupportedOptionalParameter
                }
                OpenError::UnacceptableHoldTime => OpenSubcode::UnacceptableHoldTime,
                OpenError::Malformed => OpenSubcode::Unspecific,
            }),
            MessageError::Update(u) => ErrorCode::Update(u.subcode()),
            MessageError::NotificationLength => {
                ErrorCode::MessageHeader(HeaderSubcode::BadMessageLength)
            }
            // RFC 7313 §5: Invalid Message Length.
            MessageError::RouteRefreshLength => ErrorCode::RouteRefresh(1),
        };
        (code, data)
    }
}

impl From<NotificationTooShort> for MessageError {
    fn from(_: NotificationTooShort) -> Self {
        MessageError::NotificationLength
    }
}

impl From<OpenError> for MessageError {
    fn from(e: OpenError) -> Self {
        MessageError::Open(e)
    }
}

impl From<UpdateError> for MessageError {
    fn from(e: UpdateError) -> Self {
        MessageError::Update(e)
    }
}

/// Why a session went down, for status output and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    SentNotification(ErrorCode),
    /// The peer sent this NOTIFICATION.
    ReceivedNotification(ErrorCode),
    /// The transport closed or failed without a NOTIFICATION.
    ConnectionLost,
    /// Stopped by configuration or shutdown.
    Stopped,
}

/// FSM errors (RFC 6608): an unexpected message in a state.
pub(crate) fn fsm_error(state_open_sent: bool, state_open_confirm: bool) -> ErrorCode {
    ErrorCode::Fsm(if state_open_sent {
        FsmSubcode::UnexpectedMessageInOpenSent
    } else if state_open_confirm {
        FsmSubcode::UnexpectedMessageInOpenConfirm
    } else {
        FsmSubcode::UnexpectedMessageInEstablished
    })
}

pub(crate) const CEASE_MAX_PREFIX: ErrorCode =
    ErrorCode::Cease(CeaseSubcode::MaximumNumberOfPrefixesReached);
