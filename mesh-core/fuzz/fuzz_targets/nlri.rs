//! NLRI decoding for both families: one entry, a whole run, and the iterator.
//! Nothing may panic, and the three must agree with each other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::prefix::{validate_nlri, NlriIter};
use mesh_core::{Family, Prefix};

fuzz_target!(|data: &[u8]| {
    for family in [Family::Ipv4, Family::Ipv6] {
        if let Ok((p, used)) = Prefix::parse_nlri(family, data) {
            assert_eq!(p.family(), family);
            assert!(p.prefix_len() <= family.max_len());
            assert_eq!(used, p.nlri_len());
            assert!(used <= data.len());
            // Re-encoding gives the significant octets back, host bits cleared.
            let mut b = [0u8; 17];
            let n = p.emit_nlri(&mut b).expect("17 octets hold any NLRI");
            assert_eq!(n, used);
            assert_eq!(Prefix::parse_nlri(family, &b[..n]), Ok((p, n)));
            // Display and FromStr agree.
            let text = p.to_string();
            assert_eq!(text.parse::<Prefix>(), Ok(p));
        }
        let iterated = NlriIter::new(family, data).count();
        if let Ok(count) = validate_nlri(family, data) {
            assert_eq!(count, iterated);
        }
    }
    // Prefix text parsing, on whatever UTF-8 the input holds.
    if let Ok(s) = core::str::from_utf8(data) {
        let _ = s.parse::<Prefix>();
    }
});
