//! Telling a legacy frame from a text line by the first bytes.
//!
//! A legacy frame starts with a 40-byte command field: a name, then only
//! spaces up to byte 40, and no line break anywhere in it. A text line is a
//! name, then one space and arguments, or a line break, within those 40
//! bytes. So: a line break in the first 40 bytes means text; 40 bytes of
//! "word, then spaces only" means legacy; anything else is text (and gets a
//! text `ERR` a person can read). Until 40 bytes or a line break arrive, the
//! framing is not yet known.

use super::legacy::COMMAND_LEN;
use super::Framing;

/// The framing of a connection whose first bytes are `buf`, if already known.
pub fn detect(buf: &[u8]) -> Option<Framing> {
    let head = &buf[..buf.len().min(COMMAND_LEN)];
    // The legacy command field is padded with spaces only: a line break or
    // a tab in it means a person typing.
    if head.contains(&b'\n') || head.contains(&b'\t') {
        return Some(Framing::Text);
    }
    if head.len() < COMMAND_LEN {
        return None;
    }
    let name_end = head.iter().position(|&b| b == b' ').unwrap_or(COMMAND_LEN);
    if head[name_end..].iter().all(|&b| b == b' ') {
        Some(Framing::Legacy)
    } else {
        Some(Framing::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_them_apart() {
        let mut legacy = b"read_user".to_vec();
        legacy.resize(560, b' ');
        assert_eq!(detect(&legacy[..39]), None);
        assert_eq!(detect(&legacy), Some(Framing::Legacy));
        assert_eq!(detect(b"read_user member001\n"), Some(Framing::Text));
        assert_eq!(detect(b"help\n"), Some(Framing::Text));
        assert_eq!(
            detect(b"write_woot member001 a long woot text that goes on"),
            Some(Framing::Text)
        );
        assert_eq!(detect(b"read_user member001"), None);
        assert_eq!(detect(b"read_user\tmember001"), Some(Framing::Text));
    }
}
