//! Property tests: arbitrary bytes never panic any parser, and every value
//! that can be encoded comes back unchanged through encode then parse.

use proptest::prelude::*;

use wooter::protocol::peer::{parse_frame, PeerFrame};
use wooter::protocol::{detect, legacy, text};
use wooter::storage::record::{Profile, Status, UserRecord, Username, Woot, RECORD_LEN};
use wooter::storage::Op;

fn username() -> impl Strategy<Value = Username> {
    proptest::collection::vec(0x21u8..0x7f, 1..=24).prop_map(|b| Username::new(&b).expect("valid by construction"))
}

fn field(max: usize) -> impl Strategy<Value = Vec<u8>> {
    // Printable bytes without line breaks, not starting or ending with a
    // space (fields are stored trimmed), possibly empty.
    proptest::collection::vec(0x21u8..0x7f, 0..=max)
}

fn profile() -> impl Strategy<Value = Profile> {
    (
        field(32).prop_filter("password", |p| !p.is_empty()),
        field(51),
        proptest::collection::vec(b'0'..=b'9', 0..=3),
        field(100),
    )
        .prop_map(|(pw, name, age, email)| Profile::new(&pw, &name, &age, &email).expect("valid by construction"))
}

fn woot() -> impl Strategy<Value = Woot> {
    (field(100).prop_filter("text", |t| !t.is_empty()), field(22)).prop_map(|(t, s)| Woot::new(&t, &s).expect("valid"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (username(), profile()).prop_map(|(username, profile)| Op::CreateUser { username, profile }),
        (username(), profile(), any::<bool>()).prop_map(|(username, profile, d)| Op::FlushUser {
            username,
            profile,
            status: if d { Status::Deactivated } else { Status::Active },
        }),
        (username(), username()).prop_map(|(follower, followee)| Op::Follow { follower, followee }),
        (username(), username()).prop_map(|(follower, followee)| Op::Unfollow { follower, followee }),
        (username(), woot()).prop_map(|(username, woot)| Op::WriteWoot { username, woot }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn legacy_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = legacy::parse_frame(&bytes);
        let _ = detect::detect(&bytes);
        if let Some(frame) = legacy::take_frame(&bytes) {
            prop_assert_eq!(frame.len(), legacy::FRAME_LEN);
        }
    }

    #[test]
    fn legacy_frames_with_known_commands_never_panic(
        command in prop_oneof![Just("create_new_user"), Just("read_user"), Just("read_id"), Just("flush_user"),
            Just("follow"), Just("unfollow"), Just("load_following"), Just("write_woot"), Just("load_woots"),
            Just("load_woots_seq"), Just("already_following")],
        payload in proptest::collection::vec(any::<u8>(), 0..520),
    ) {
        let mut frame = command.as_bytes().to_vec();
        frame.resize(40, b' ');
        frame.extend(payload);
        frame.resize(560, b' ');
        match legacy::parse_frame(&frame) {
            Ok(legacy::LegacyRequest::Request(r)) => prop_assert_eq!(r.name(), command),
            Ok(legacy::LegacyRequest::Unknown(_)) => prop_assert!(false, "a known command was taken as unknown"),
            Err(_) => {}
        }
    }

    #[test]
    fn text_lines_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = text::parse_line(&bytes, || b"2026-01-01 -> 9:00:00".to_vec());
    }

    #[test]
    fn peer_frames_never_panic_nor_overreach(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some((_, used))) = parse_frame(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn op_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Op::decode(&bytes);
    }

    #[test]
    fn ops_round_trip(op in op()) {
        prop_assert_eq!(Op::decode(&op.encode()), Ok(op));
    }

    #[test]
    fn records_round_trip(username in username(), profile in profile(), id in 0u32..1_000_000_000,
        counts in (0u32..1_000_000_000, 0u32..1_000_000_000, 0u32..1_000_000_000), d in any::<bool>()) {
        let rec = UserRecord {
            username, id, profile, followers: counts.0, followees: counts.1,
            status: if d { Status::Deactivated } else { Status::Active }, woots: counts.2,
        };
        let bytes = rec.encode();
        prop_assert_eq!(bytes.len(), RECORD_LEN);
        prop_assert_eq!(UserRecord::decode(&bytes), Ok(Some(rec)));
    }

    #[test]
    fn peer_frames_round_trip(rm_id in any::<u64>(), req in any::<u64>(), index in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..200)) {
        for frame in [
            PeerFrame::Hello { rm_id, mac: body.clone() },
            PeerFrame::Challenge { nonce: body.clone() },
            PeerFrame::Raft(body.clone()),
            PeerFrame::Forward { req_id: req, framing: 1, request: body.clone() },
            PeerFrame::ForwardReply { req_id: req, index, reply: body.clone() },
            PeerFrame::SnapshotRequest { index, term: req, offset: rm_id },
            PeerFrame::SnapshotChunk { index, term: req, offset: rm_id, total: index ^ req, bytes: body.clone() },
            PeerFrame::SnapshotDone { index, term: req, ok: rm_id % 2 == 0 },
        ] {
            let bytes = frame.encode();
            prop_assert_eq!(parse_frame(&bytes), Ok(Some((frame, bytes.len()))));
        }
    }
}

/// Regression cases kept from fuzzing and attacks.
#[test]
fn kept_regressions() {
    // A frame of NUL bytes as a woot: refused, not stored blank.
    let mut frame = b"write_woot".to_vec();
    frame.resize(40, b' ');
    frame.extend_from_slice(b"member001");
    frame.resize(300, b' ');
    frame.extend_from_slice(&[0u8; 100]);
    frame.resize(560, b' ');
    assert!(legacy::parse_frame(&frame).is_err());
    // 4096 bytes and a carriage return are within the line limit.
    let mut line = b"read_user ".to_vec();
    line.resize(4096, b'a');
    line.push(b'\r');
    assert_ne!(text::parse_line(&line, Vec::new), Err(text::TextError::TooLong));
    // A tab in the first 40 bytes is a person typing.
    assert_eq!(
        detect::detect(b"read_user\tmember001"),
        Some(wooter::protocol::Framing::Text)
    );
}
