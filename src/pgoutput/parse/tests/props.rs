//! Property tests: `parse` never panics, truncations fail cleanly, and
//! encode → parse is the identity.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::super::arbitrary::message;
use super::super::encode::encode;
use super::super::parse;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..64)) {
        if let Err(err) = parse(Bytes::from(data.clone())) {
            prop_assert!(err.offset <= data.len());
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_tag_never_panic(
        tag in prop::sample::select(b"BCORYIUDTM".to_vec()),
        rest in vec(any::<u8>(), 0..64),
    ) {
        let mut data = vec![tag];
        data.extend(rest);
        if let Err(err) = parse(Bytes::from(data.clone())) {
            prop_assert!(err.offset <= data.len());
        }
    }

    #[test]
    fn every_truncation_is_an_error_within_bounds(msg in message()) {
        let bytes = encode(&msg);
        for len in 0..bytes.len() {
            let err = parse(Bytes::copy_from_slice(&bytes[..len]));
            prop_assert!(err.is_err(), "prefix of {len} bytes parsed");
            let err = err.unwrap_err();
            prop_assert!(err.offset <= len, "offset {} > len {len}", err.offset);
        }
    }

    #[test]
    fn encode_then_parse_round_trips(msg in message()) {
        prop_assert_eq!(parse(Bytes::from(encode(&msg))), Ok(msg));
    }
}
