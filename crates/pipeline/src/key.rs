//! A reversible encoding of arbitrary text into NATS KV keys.
//!
//! KV keys may only hold `A-Z a-z 0-9 - _ = / .`, and a dot separates tokens. Business numbers
//! hold anything: Chinese, spaces, dots, slashes. The encoding keeps `A-Z a-z 0-9 - _` as they
//! are, so that `nats kv ls` stays readable for the usual numbers, and writes every other byte
//! of the UTF-8 text as `=` and two upper-case hex digits (`客` becomes `=E5=AE=A2`). Because `=`
//! itself is escaped, decoding is unambiguous. The empty text, which KV cannot store as a key,
//! becomes a lone `=`, a string no other text encodes to. The encoded key never contains a dot,
//! so callers may join encoded parts with dots to build hierarchical keys.
//!
//! Which keys a bucket uses is left to the modules that own the bucket.

/// Why a key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A `=` not followed by two hex digits, or a character the encoding never produces.
    #[error("malformed encoded key {key:?} at byte {at}")]
    Malformed {
        /// The key as found.
        key: String,
        /// Byte offset of the problem.
        at: usize,
    },
    /// The escapes decode to bytes that are not UTF-8.
    #[error("encoded key {0:?} does not decode to UTF-8 text")]
    NotUtf8(String),
}

impl KeyError {
    /// A key is what it is: retrying never helps.
    pub fn is_transient(&self) -> bool {
        false
    }
}

const ESCAPE: u8 = b'=';
const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

fn is_kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// Encodes `text` into a valid KV key token (never empty, never containing a dot).
pub fn encode(text: &str) -> String {
    if text.is_empty() {
        return "=".to_owned();
    }
    let mut key = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if is_kept(byte) {
            key.push(char::from(byte));
        } else {
            key.push(char::from(ESCAPE));
            key.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            key.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
    }
    key
}

/// Decodes a key token produced by [`encode`].
pub fn decode(key: &str) -> Result<String, KeyError> {
    if key == "=" {
        return Ok(String::new());
    }
    let malformed = |at| KeyError::Malformed {
        key: key.to_owned(),
        at,
    };
    let bytes = key.as_bytes();
    let mut text = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if is_kept(byte) {
            text.push(byte);
            at += 1;
        } else if byte == ESCAPE {
            let high = bytes
                .get(at + 1)
                .and_then(|&b| hex_value(b))
                .ok_or(malformed(at))?;
            let low = bytes
                .get(at + 2)
                .and_then(|&b| hex_value(b))
                .ok_or(malformed(at))?;
            text.push(high << 4 | low);
            at += 3;
        } else {
            return Err(malformed(at));
        }
    }
    String::from_utf8(text).map_err(|_| KeyError::NotUtf8(key.to_owned()))
}

fn hex_value(digit: u8) -> Option<u8> {
    HEX_DIGITS
        .iter()
        .position(|&d| d == digit)
        .and_then(|p| u8::try_from(p).ok())
}

/// Whether `key` is accepted by NATS KV: the rule async-nats enforces, restated so tests can
/// check the encoding against it.
pub fn is_valid_kv_key(key: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-/_=.".contains(c);
    !key.is_empty() && !key.starts_with('.') && !key.ends_with('.') && key.chars().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_numbers_stay_readable() {
        assert_eq!(encode("SO2024-0001_a"), "SO2024-0001_a");
    }

    #[test]
    fn chinese_spaces_dots_and_slashes_are_escaped() {
        assert_eq!(encode("客 1.2/3"), "=E5=AE=A2=201=2E2=2F3");
        assert_eq!(encode("a=b"), "a=3Db");
        assert_eq!(decode("=E5=AE=A2=201=2E2=2F3").as_deref(), Ok("客 1.2/3"));
    }

    #[test]
    fn the_empty_text_has_a_key_of_its_own() {
        assert_eq!(encode(""), "=");
        assert_eq!(decode("=").as_deref(), Ok(""));
    }

    #[test]
    fn keys_the_encoding_never_produces_are_refused() {
        for bad in ["a.b", "=4", "=G0", "a b", "=e5"] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
        assert_eq!(decode("=FF"), Err(KeyError::NotUtf8("=FF".to_owned())));
    }

    proptest! {
        #[test]
        fn any_text_round_trips_through_a_valid_key(text in any::<String>()) {
            let key = encode(&text);
            prop_assert!(is_valid_kv_key(&key), "invalid key {key:?}");
            prop_assert!(!key.contains('.'));
            prop_assert_eq!(decode(&key), Ok(text));
        }

        #[test]
        fn different_texts_get_different_keys(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(encode(&a), encode(&b));
        }
    }
}
