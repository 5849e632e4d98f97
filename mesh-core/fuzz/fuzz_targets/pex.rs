//! Peer exchange messages (what members tell each other inside the mesh).
//!
//! The input is one message. Checked: no panic; whatever decodes encodes
//! back to the same bytes (the format has one encoding per message) and
//! decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::pex::{Message, MAX_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let mut out = [0u8; MAX_LEN];
        let n = m.encode(&mut out).expect("a decoded message fits MAX_LEN");
        assert_eq!(&out[..n], data, "re-encoding differs");
        assert_eq!(Message::decode(&out[..n]).as_ref(), Ok(&m));
    }
});
