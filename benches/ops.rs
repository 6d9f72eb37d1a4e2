//! Micro-benchmarks of applying each `Op` (and the main queries) on a data
//! directory of 10,000 users.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

use wooter::storage::layout::ListKind;
use wooter::storage::query::WootOrder;
use wooter::storage::record::{Profile, Status, Username, Woot};
use wooter::storage::{Op, Query, Store};

const USERS: u32 = 10_000;

fn name(i: u32) -> Username {
    Username::new(format!("bench{i:06}").as_bytes()).unwrap()
}

fn profile() -> Profile {
    Profile::new(b"benchpassword", b"Bench User", b"30", b"bench@bench.example").unwrap()
}

fn setup() -> (Store, PathBuf) {
    let dir = std::env::temp_dir().join(format!("wooter-bench-ops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    for i in 0..USERS {
        store
            .apply(&Op::CreateUser {
                username: name(i),
                profile: profile(),
            })
            .unwrap();
    }
    for i in 0..USERS {
        store
            .apply(&Op::Follow {
                follower: name(i),
                followee: name((i * 7 + 1) % USERS),
            })
            .unwrap();
    }
    (store, dir)
}

fn ops(c: &mut Criterion) {
    let (store, dir) = setup();
    let mut next = USERS;
    c.bench_function("apply CreateUser (10k users)", |b| {
        b.iter(|| {
            next += 1;
            store
                .apply(&Op::CreateUser {
                    username: name(next),
                    profile: profile(),
                })
                .unwrap()
        })
    });
    c.bench_function("apply FlushUser", |b| {
        b.iter(|| {
            store
                .apply(&Op::FlushUser {
                    username: name(4321),
                    profile: profile(),
                    status: Status::Active,
                })
                .unwrap()
        })
    });
    let woot = Woot::new(b"a bench woot of ordinary length", b"2026-01-01 -> 9:00:00").unwrap();
    let mut writer = 0;
    c.bench_function("apply WriteWoot", |b| {
        b.iter(|| {
            writer = (writer + 1) % USERS;
            store
                .apply(&Op::WriteWoot {
                    username: name(writer),
                    woot: woot.clone(),
                })
                .unwrap()
        })
    });
    c.bench_function("apply Follow then Unfollow", |b| {
        b.iter(|| {
            store
                .apply(&Op::Follow {
                    follower: name(10),
                    followee: name(9000),
                })
                .unwrap();
            store
                .apply(&Op::Unfollow {
                    follower: name(10),
                    followee: name(9000),
                })
                .unwrap()
        })
    });
    c.bench_function("query ReadUser", |b| {
        b.iter(|| store.query(&Query::ReadUser(name(5555))).unwrap())
    });
    c.bench_function("query LoadFollowing", |b| {
        b.iter(|| {
            store
                .query(&Query::LoadFollowing {
                    username: name(1),
                    kind: ListKind::Followers,
                    n: 20,
                })
                .unwrap()
        })
    });
    c.bench_function("query LoadWoots 10", |b| {
        b.iter(|| {
            store
                .query(&Query::LoadWoots {
                    username: name(1),
                    n: 10,
                    order: WootOrder::NewestFirst,
                })
                .unwrap()
        })
    });
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = ops
}
criterion_main!(benches);
