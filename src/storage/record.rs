//! The 259-byte user record and the 124-byte woot, as bytes.
//!
//! The same fixed-width record travels on the wire and sits in the user
//! files. The frontend sends fields left-aligned, the old server wrote them
//! right-aligned; both are read by offset and trimmed, and wooter always
//! writes right-aligned. Every value is bytes: nothing here assumes UTF-8.

use nom::bytes::complete::take;
use nom::IResult;
use thiserror::Error;

use super::layout::WOOT_LEN;

/// Length of a user record without its line break.
pub const RECORD_LEN: usize = 259;

/// Field widths, in record order (reference §1).
pub mod width {
    /// Username.
    pub const USERNAME: usize = 25;
    /// Password.
    pub const PASSWORD: usize = 33;
    /// Id.
    pub const ID: usize = 11;
    /// Full name.
    pub const NAME: usize = 52;
    /// Age.
    pub const AGE: usize = 4;
    /// Email address.
    pub const EMAIL: usize = 101;
    /// Followers count.
    pub const FOLLOWERS: usize = 11;
    /// Followees count.
    pub const FOLLOWEES: usize = 11;
    /// Status byte.
    pub const STATUS: usize = 1;
    /// Woot count.
    pub const WOOTS: usize = 10;
    /// Woot text.
    pub const WOOT_TEXT: usize = 100;
    /// Woot timestamp.
    pub const WOOT_TIME: usize = 22;
}

/// Why a field or record was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// A value does not fit its field with at least one space of padding.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Largest accepted length.
        max: usize,
    },
    /// A required value is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A value has a character its field cannot hold.
    #[error("{0} contains a character it may not contain")]
    BadCharacter(&'static str),
    /// A number field holds something else.
    #[error("{0} is not a number")]
    NotANumber(&'static str),
    /// A number is larger than wooter accepts.
    #[error("{0} is too large (at most 999999999)")]
    TooLarge(&'static str),
    /// The status is neither `n` nor `d`.
    #[error("status must be 'n' (active) or 'd' (deactivated)")]
    BadStatus,
}

/// Replaces the bytes that would break a line-based file or reply (line
/// breaks and NUL) with spaces.
pub fn sanitize(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| match b {
            b'\n' | b'\r' | 0 => b' ',
            other => other,
        })
        .collect()
}

/// Trims spaces (only spaces: fields are space-padded) from both ends.
pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(start, |e| e + 1);
    &bytes[start..end]
}

fn check_len(field: &'static str, value: &[u8], width: usize) -> Result<(), RecordError> {
    // One byte of padding is always left so that right-aligned fields stay
    // apart on the line, as the reference's limits (24 of 25, 3 of 4) imply.
    if value.len() >= width {
        return Err(RecordError::TooLong { field, max: width - 1 });
    }
    Ok(())
}

/// A valid username: 1 to 24 bytes, none of them a space or control byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(Vec<u8>);

impl Username {
    /// Checks and wraps a username.
    pub fn new(bytes: &[u8]) -> Result<Username, RecordError> {
        if bytes.is_empty() {
            return Err(RecordError::Empty("username"));
        }
        check_len("username", bytes, width::USERNAME)?;
        if bytes.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(RecordError::BadCharacter("username"));
        }
        Ok(Username(bytes.to_vec()))
    }

    /// The username's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The username for log lines and messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// Whether an account is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `n`: active.
    Active,
    /// `d`: deactivated.
    Deactivated,
}

impl Status {
    /// Parses the status byte(s) of a record.
    pub fn parse(bytes: &[u8]) -> Result<Status, RecordError> {
        match bytes {
            b"n" => Ok(Status::Active),
            b"d" => Ok(Status::Deactivated),
            _ => Err(RecordError::BadStatus),
        }
    }

    /// The status byte.
    pub fn byte(self) -> u8 {
        match self {
            Status::Active => b'n',
            Status::Deactivated => b'd',
        }
    }
}

/// The fields a user edits: everything but the name, the id and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Password, stored and returned in plain text (the frontend checks it).
    pub password: Vec<u8>,
    /// Full name; may hold spaces.
    pub name: Vec<u8>,
    /// Age: up to three decimal digits, or empty.
    pub age: Vec<u8>,
    /// Email address.
    pub email: Vec<u8>,
}

impl Profile {
    /// Checks and builds a profile from raw field values.
    pub fn new(password: &[u8], name: &[u8], age: &[u8], email: &[u8]) -> Result<Profile, RecordError> {
        let password = sanitize(password);
        let name = sanitize(name);
        let email = sanitize(email);
        if trim(&password).is_empty() {
            return Err(RecordError::Empty("password"));
        }
        check_len("password", &password, width::PASSWORD)?;
        check_len("full name", &name, width::NAME)?;
        check_len("age", age, width::AGE)?;
        if !age.iter().all(u8::is_ascii_digit) {
            return Err(RecordError::NotANumber("age"));
        }
        check_len("email", &email, width::EMAIL)?;
        Ok(Profile {
            password: trim(&password).to_vec(),
            name: trim(&name).to_vec(),
            age: age.to_vec(),
            email: trim(&email).to_vec(),
        })
    }
}

/// A stored user, as the user file and the legacy reply hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Username.
    pub username: Username,
    /// Id = row * 10 + slot.
    pub id: u32,
    /// Password, name, age and email.
    pub profile: Profile,
    /// Number of followers.
    pub followers: u32,
    /// Number of followees.
    pub followees: u32,
    /// Active or deactivated.
    pub status: Status,
    /// Number of woots written.
    pub woots: u32,
}

/// A record's ten fields, trimmed, not yet interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Username field.
    pub username: &'a [u8],
    /// Password field.
    pub password: &'a [u8],
    /// Id field.
    pub id: &'a [u8],
    /// Full name field.
    pub name: &'a [u8],
    /// Age field.
    pub age: &'a [u8],
    /// Email field.
    pub email: &'a [u8],
    /// Followers field.
    pub followers: &'a [u8],
    /// Followees field.
    pub followees: &'a [u8],
    /// Status field.
    pub status: &'a [u8],
    /// Woots field.
    pub woots: &'a [u8],
}

fn field(len: usize) -> impl Fn(&[u8]) -> IResult<&[u8], &[u8]> {
    move |input| {
        let (rest, bytes) = take(len)(input)?;
        Ok((rest, trim(bytes)))
    }
}

/// Parses the ten fixed-width fields of a record by offset.
pub fn raw_record(input: &[u8]) -> IResult<&[u8], RawRecord<'_>> {
    let (input, username) = field(width::USERNAME)(input)?;
    let (input, password) = field(width::PASSWORD)(input)?;
    let (input, id) = field(width::ID)(input)?;
    let (input, name) = field(width::NAME)(input)?;
    let (input, age) = field(width::AGE)(input)?;
    let (input, email) = field(width::EMAIL)(input)?;
    let (input, followers) = field(width::FOLLOWERS)(input)?;
    let (input, followees) = field(width::FOLLOWEES)(input)?;
    let (input, status) = field(width::STATUS)(input)?;
    let (input, woots) = field(width::WOOTS)(input)?;
    Ok((
        input,
        RawRecord {
            username,
            password,
            id,
            name,
            age,
            email,
            followers,
            followees,
            status,
            woots,
        },
    ))
}

/// Parses a decimal counter or id (up to nine digits, so it fits a `u32`
/// and its 10- or 11-byte field).
pub fn parse_number(field: &'static str, bytes: &[u8]) -> Result<u32, RecordError> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(RecordError::NotANumber(field));
    }
    if bytes.len() > 9 {
        return Err(RecordError::TooLarge(field));
    }
    Ok(bytes.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')))
}

impl UserRecord {
    /// Reads a stored record line (259 bytes); `None` for an empty slot.
    pub fn decode(bytes: &[u8]) -> Result<Option<UserRecord>, RecordError> {
        if bytes.len() < RECORD_LEN {
            return Err(RecordError::Empty("record"));
        }
        let bytes = &bytes[..RECORD_LEN];
        if bytes.iter().all(|&b| b == b' ') {
            return Ok(None);
        }
        let (_, raw) = raw_record(bytes).map_err(|_| RecordError::Empty("record"))?;
        Ok(Some(UserRecord {
            username: Username::new(raw.username)?,
            id: parse_number("id", raw.id)?,
            profile: Profile {
                password: raw.password.to_vec(),
                name: raw.name.to_vec(),
                age: raw.age.to_vec(),
                email: raw.email.to_vec(),
            },
            followers: parse_number("followers", raw.followers)?,
            followees: parse_number("followees", raw.followees)?,
            status: Status::parse(raw.status)?,
            woots: parse_number("woots", raw.woots)?,
        }))
    }

    /// Writes the record right-aligned, 259 bytes, without a line break.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_LEN + 1);
        let p = &self.profile;
        right(&mut out, self.username.as_bytes(), width::USERNAME);
        right(&mut out, &p.password, width::PASSWORD);
        right(&mut out, self.id.to_string().as_bytes(), width::ID);
        right(&mut out, &p.name, width::NAME);
        right(&mut out, &p.age, width::AGE);
        right(&mut out, &p.email, width::EMAIL);
        right(&mut out, self.followers.to_string().as_bytes(), width::FOLLOWERS);
        right(&mut out, self.followees.to_string().as_bytes(), width::FOLLOWEES);
        out.push(self.status.byte());
        right(&mut out, self.woots.to_string().as_bytes(), width::WOOTS);
        out
    }
}

/// Appends `value` right-aligned in `width` bytes.
pub fn right(out: &mut Vec<u8>, value: &[u8], width: usize) {
    let value = &value[..value.len().min(width)];
    out.extend(std::iter::repeat_n(b' ', width - value.len()));
    out.extend_from_slice(value);
}

/// Appends `value` left-aligned in `width` bytes.
pub fn left(out: &mut Vec<u8>, value: &[u8], width: usize) {
    let value = &value[..value.len().min(width)];
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(b' ', width - value.len()));
}

/// One woot as stored: text padded to 100, space, timestamp padded to 22,
/// space. Kept as its 124 stored bytes so replies repeat them exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Woot(Vec<u8>);

impl Woot {
    /// Builds a woot from its text and timestamp (line breaks and NUL become
    /// spaces). Refuses values longer than their fields.
    pub fn new(text: &[u8], timestamp: &[u8]) -> Result<Woot, RecordError> {
        if text.len() > width::WOOT_TEXT {
            return Err(RecordError::TooLong {
                field: "woot",
                max: width::WOOT_TEXT,
            });
        }
        if timestamp.len() > width::WOOT_TIME {
            return Err(RecordError::TooLong {
                field: "timestamp",
                max: width::WOOT_TIME,
            });
        }
        let text = sanitize(text);
        if trim(&text).is_empty() {
            return Err(RecordError::Empty("woot"));
        }
        let mut out = Vec::with_capacity(WOOT_LEN);
        left(&mut out, &text, width::WOOT_TEXT);
        out.push(b' ');
        left(&mut out, &sanitize(timestamp), width::WOOT_TIME);
        out.push(b' ');
        Ok(Woot(out))
    }

    /// Wraps 124 bytes read from a woot file.
    pub fn from_stored(bytes: &[u8]) -> Woot {
        let mut out = bytes[..bytes.len().min(WOOT_LEN)].to_vec();
        out.resize(WOOT_LEN, b' ');
        Woot(out)
    }

    /// The 124 stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text without its padding.
    pub fn text(&self) -> &[u8] {
        trim(&self.0[..width::WOOT_TEXT])
    }

    /// The timestamp without its padding.
    pub fn timestamp(&self) -> &[u8] {
        trim(&self.0[width::WOOT_TEXT + 1..width::WOOT_TEXT + 1 + width::WOOT_TIME])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UserRecord {
        UserRecord {
            username: Username::new(b"member001").unwrap(),
            id: 1,
            profile: Profile::new(b"secretpass001", b"Given1 Family1", b"17", b"member1@mail1.example").unwrap(),
            followers: 1,
            followees: 0,
            status: Status::Active,
            woots: 24,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let rec = sample();
        let bytes = rec.encode();
        assert_eq!(bytes.len(), RECORD_LEN);
        assert_eq!(UserRecord::decode(&bytes).unwrap(), Some(rec));
    }

    #[test]
    fn blank_slot_is_none() {
        assert_eq!(UserRecord::decode(&[b' '; RECORD_LEN]).unwrap(), None);
    }

    #[test]
    fn too_wide_values_are_refused() {
        assert!(Username::new(&[b'a'; 25]).is_err());
        assert!(Username::new(b"has space").is_err());
        assert!(Profile::new(b"pw", b"n", b"1000", b"e").is_err());
        assert!(Profile::new(b"pw", b"n", b"1x", b"e").is_err());
        assert!(Woot::new(&[b'x'; 101], b"t").is_err());
        assert!(Woot::new(b"\r\0\n ", b"t").is_err(), "blank after cleaning");
        assert!(
            Profile::new(b"\0\0", b"n", b"1", b"e").is_err(),
            "blank password after cleaning"
        );
    }

    #[test]
    fn line_breaks_become_spaces() {
        let w = Woot::new(b"a\nb\0c", b"2026").unwrap();
        assert_eq!(w.text(), b"a b c");
        assert_eq!(w.as_bytes().len(), WOOT_LEN);
    }
}
