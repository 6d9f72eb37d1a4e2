//! Micro-benchmarks of the wire: frame parsing, record encoding, reply packing.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use wooter::protocol::{legacy, text};
use wooter::storage::layout::ListKind;
use wooter::storage::record::{left, Profile, Status, UserRecord, Username, Woot};
use wooter::storage::Answer;

fn frame(command: &str, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    left(&mut f, command.as_bytes(), 40);
    f.extend_from_slice(payload);
    f.resize(560, b' ');
    f
}

fn user(i: u32) -> UserRecord {
    UserRecord {
        username: Username::new(format!("bench{i:06}").as_bytes()).unwrap(),
        id: i,
        profile: Profile::new(b"benchpassword", b"Bench User", b"30", b"bench@bench.example").unwrap(),
        followers: 12,
        followees: 34,
        status: Status::Active,
        woots: 56,
    }
}

fn parsing(c: &mut Criterion) {
    let record = user(1).encode();
    let read_user = frame("read_user", b"bench000001");
    let woot = frame(
        "write_woot",
        &[record.as_slice(), b" hello world, this is a woot"].concat(),
    );
    let follow = frame("follow", &[record.as_slice(), b" ", record.as_slice()].concat());
    let list = frame("load_following", &[record.as_slice(), b" followees 20"].concat());
    c.bench_function("parse legacy read_user", |b| {
        b.iter(|| legacy::parse_frame(black_box(&read_user)))
    });
    c.bench_function("parse legacy write_woot", |b| {
        b.iter(|| legacy::parse_frame(black_box(&woot)))
    });
    c.bench_function("parse legacy follow", |b| {
        b.iter(|| legacy::parse_frame(black_box(&follow)))
    });
    c.bench_function("parse legacy load_following", |b| {
        b.iter(|| legacy::parse_frame(black_box(&list)))
    });
    c.bench_function("parse text write_woot", |b| {
        b.iter(|| {
            text::parse_line(
                black_box(b"write_woot bench000001 [2026-01-01 -> 9:00:00] hello world"),
                Vec::new,
            )
        })
    });
    c.bench_function("detect framing", |b| {
        b.iter(|| wooter::protocol::detect::detect(black_box(&read_user)))
    });
}

fn encoding(c: &mut Criterion) {
    let u = user(12345);
    let bytes = u.encode();
    c.bench_function("encode user record", |b| b.iter(|| black_box(&u).encode()));
    c.bench_function("decode user record", |b| {
        b.iter(|| UserRecord::decode(black_box(&bytes)))
    });
    c.bench_function("build woot", |b| {
        b.iter(|| Woot::new(black_box(b"hello world"), b"2026-01-01 -> 9:00:00"))
    });
}

fn packing(c: &mut Criterion) {
    let ids = Ok(Answer::Ids((0..100).collect()));
    let woots = Ok(Answer::Woots(
        (0..10)
            .map(|i| Woot::new(format!("woot {i}").as_bytes(), b"2026").unwrap())
            .collect(),
    ));
    let pair = Ok(Answer::Pair(user(1), user(2)));
    c.bench_function("pack 100 ids (legacy)", |b| {
        b.iter(|| legacy::encode_reply(black_box(&ids)))
    });
    c.bench_function("pack 10 woots (legacy)", |b| {
        b.iter(|| legacy::encode_reply(black_box(&woots)))
    });
    c.bench_function("pack user pair (legacy)", |b| {
        b.iter(|| legacy::encode_reply(black_box(&pair)))
    });
    c.bench_function("pack 10 woots (text)", |b| {
        b.iter(|| text::encode_reply(black_box(&woots)))
    });
    let _ = ListKind::Followers;
}

criterion_group!(benches, parsing, encoding, packing);
criterion_main!(benches);
