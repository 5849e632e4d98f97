//! [`enum_with_unknown!`](crate::enum_with_unknown): the one shape of every
//! table that names a protocol's code points (NOTIFICATION subcodes, ORIGIN,
//! BFD diagnostics, ubus message types and statuses, ...).
//!
//! Modelled on smoltcp's macro of the same name. A code point this table
//! does not name is kept as `Unknown(n)`, neither rejected nor folded into a
//! named value, so a decoder can carry it, log it, or re-encode it to the
//! number it came in as. Whether an unknown value is an error is the
//! decoder's decision, made by matching `Unknown(_)`, not the table's.

/// Declares an enum of named code points plus `Unknown(repr)`, with
/// `From<repr> for Enum` (unnamed values become `Unknown`) and
/// `From<Enum> for repr` (`Unknown(n)` gives back `n`).
///
/// Doc comments and other attributes on the enum and on each variant are
/// passed through; the enum always derives `Debug, Clone, Copy, PartialEq,
/// Eq, PartialOrd, Ord, Hash` (ordered as declared, `Unknown` last).
/// `Enum::KNOWN` lists the named variants in the order declared.
///
/// ```
/// mesh_core::enum_with_unknown! {
///     /// Colours of a made-up protocol.
///     pub enum Colour(u8) {
///         Red = 1,
///         /// Docs on a variant are kept.
///         Green = 2,
///     }
/// }
///
/// assert_eq!(Colour::from(2), Colour::Green);
/// assert_eq!(Colour::from(7), Colour::Unknown(7));
/// assert_eq!(u8::from(Colour::Unknown(7)), 7);
/// assert_eq!(Colour::KNOWN, &[Colour::Red, Colour::Green]);
/// ```
#[macro_export]
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        $vis:vis enum $name:ident($repr:ty) {
            $(
                $(#[$variant_attr:meta])*
                $variant:ident = $value:literal
            ),+ $(,)?
        }
    ) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $(#[$enum_attr])*
        $vis enum $name {
            $(
                $(#[$variant_attr])*
                $variant,
            )+
            /// A code point this table does not name, kept as it came.
            Unknown($repr),
        }

        impl $name {
            /// Every named code point, in the order declared.
            $vis const KNOWN: &[$name] = &[$($name::$variant),+];
        }

        impl ::core::convert::From<$repr> for $name {
            fn from(value: $repr) -> $name {
                match value {
                    $($value => $name::$variant,)+
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $repr {
            fn from(value: $name) -> $repr {
                match value {
                    $($name::$variant => $value,)+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use core::fmt::Debug;

    enum_with_unknown! {
        /// A made-up table with gaps, as real ones have.
        pub enum Sparse(u8) {
            Zero = 0,
            /// Documented variants keep their docs.
            Two = 2,
            Last = 255,
        }
    }

    enum_with_unknown! {
        /// A wide repr, as ubus statuses are.
        pub enum Wide(u32) {
            Small = 1,
            Large = 0x1_0000,
        }
    }

    /// Every named value decodes to its variant and encodes back.
    fn assert_known_round_trip<E, R>(known: &[E])
    where
        E: Copy + Eq + Debug + From<R>,
        R: Copy + Eq + Debug + From<E>,
    {
        for &e in known {
            let code = R::from(e);
            assert_eq!(E::from(code), e, "{e:?} = {code:?}");
        }
    }

    #[test]
    fn every_known_code_round_trips() {
        assert_known_round_trip::<Sparse, u8>(Sparse::KNOWN);
        assert_known_round_trip::<Wide, u32>(Wide::KNOWN);
        assert_eq!(u8::from(Sparse::Two), 2);
        assert_eq!(u32::from(Wide::Large), 0x1_0000);
    }

    #[test]
    fn an_unknown_code_is_kept_and_encodes_to_the_same_number() {
        assert_eq!(Sparse::from(1), Sparse::Unknown(1));
        assert_eq!(u8::from(Sparse::from(1)), 1);
        assert_eq!(Wide::from(0xdead_beef), Wide::Unknown(0xdead_beef));
        assert_eq!(u32::from(Wide::from(0xdead_beef)), 0xdead_beef);
    }

    #[test]
    fn known_lists_the_named_variants_in_declared_order() {
        assert_eq!(Sparse::KNOWN, &[Sparse::Zero, Sparse::Two, Sparse::Last]);
        assert!(Sparse::Last < Sparse::Unknown(1));
    }

    /// The crate's own tables: each named value round-trips, and a value
    /// none of them names is kept as `Unknown`. A table that gave one
    /// number two names would fail here.
    #[test]
    fn every_table_in_the_crate_round_trips() {
        use crate::bfd::Diagnostic;
        use crate::bgp::attr::{Origin, SegmentKind};
        use crate::bgp::notification::{
            CeaseSubcode, FsmSubcode, HeaderSubcode, OpenSubcode, UpdateSubcode,
        };
        use crate::bgp::wire::MessageType;

        fn check<E>(known: &[E])
        where
            E: Copy + Eq + Debug + From<u8>,
            u8: From<E>,
        {
            assert_known_round_trip::<E, u8>(known);
            let named = |c: u8| known.iter().any(|&e| u8::from(e) == c);
            for code in (0..=u8::MAX).filter(|&c| !named(c)) {
                assert_eq!(u8::from(E::from(code)), code);
                assert!(!known.contains(&E::from(code)), "{code}");
            }
        }

        check(HeaderSubcode::KNOWN);
        check(OpenSubcode::KNOWN);
        check(UpdateSubcode::KNOWN);
        check(FsmSubcode::KNOWN);
        check(CeaseSubcode::KNOWN);
        check(Origin::KNOWN);
        check(SegmentKind::KNOWN);
        check(Diagnostic::KNOWN);
        check(MessageType::KNOWN);
    }
}
