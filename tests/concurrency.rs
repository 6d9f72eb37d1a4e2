//! Many clients at once against one server: answers stay right, the data
//! stays consistent, and no id is handed out twice.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn field(line: &[u8], start: usize, len: usize) -> String {
    String::from_utf8_lossy(&line[start..start + len]).trim().to_string()
}

#[test]
fn many_frames_on_many_connections_at_once() {
    let dir = TempDir::new("fanout");
    let server = Arc::new(Server::start(dir.path(), &[]));
    for i in 0..20 {
        let reply = server.legacy(&frame("create_new_user", &simple_record(&format!("member{i:03}"))));
        assert_eq!(reply.len(), 260);
    }
    // Open 64 connections, send every frame, then read every reply.
    let mut streams = Vec::new();
    for c in 0..64 {
        let mut s = server.connect();
        let name = format!("member{:03}", c % 20);
        std::io::Write::write_all(&mut s, &frame("read_user", name.as_bytes())).unwrap();
        streams.push((name, s));
    }
    for (name, mut s) in streams {
        let reply = read_to_close(&mut s);
        assert_eq!(reply.len(), 260);
        assert_eq!(field(&reply, 0, 25), name);
    }
    // And 16 threads of 50 requests each.
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let server = server.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = (t * 7 + i) % 20;
                    let reply = server.legacy(&frame("read_id", id.to_string().as_bytes()));
                    assert_eq!(field(&reply, 58, 11), id.to_string());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

const CLIENTS: usize = 32;
const OPS: usize = 200;
const USERS_PER_CLIENT: usize = 3;

/// What one client knows it did: the woots acknowledged for its users, and
/// the followees each of its users has (only this client changes them).
#[derive(Default)]
struct Ledger {
    woots: HashMap<String, u32>,
    followees: HashMap<String, BTreeSet<String>>,
}

/// Registers client `c`'s users; returns their ids.
fn register(server: &Server, c: usize) -> Vec<u32> {
    (0..USERS_PER_CLIENT)
        .map(|u| {
            let name = format!("c{c:02}user{u}");
            let reply = server.legacy(&frame("create_new_user", &simple_record(&name)));
            assert_eq!(reply.len(), 260, "create {name}");
            field(&reply, 58, 11).parse().unwrap()
        })
        .collect()
}

fn client(server: &Server, c: usize) -> Ledger {
    let mut rng = SmallRng::seed_from_u64(c as u64 * 7919 + 1);
    let mut ledger = Ledger::default();
    let mine: Vec<String> = (0..USERS_PER_CLIENT).map(|u| format!("c{c:02}user{u}")).collect();
    for name in &mine {
        ledger.woots.insert(name.clone(), 0);
        ledger.followees.insert(name.clone(), BTreeSet::new());
    }
    for _ in 0..OPS {
        let me = &mine[rng.gen_range(0..mine.len())];
        let other_client = rng.gen_range(0..CLIENTS);
        let other = format!("c{other_client:02}user{}", rng.gen_range(0..USERS_PER_CLIENT));
        let rec = simple_record(me);
        match rng.gen_range(0..10) {
            0..=2 => {
                let reply = server.legacy(&frame("read_user", me.as_bytes()));
                assert_eq!(field(&reply, 0, 25), *me);
                let woots: u32 = field(&reply, 249, 10).parse().unwrap();
                assert_eq!(woots, ledger.woots[me], "{me}'s woot counter");
            }
            3..=4 => {
                let mut p = rec.clone();
                p.extend_from_slice(format!(" woot from {me} at op {}", rng.gen::<u32>()).as_bytes());
                let reply = server.legacy(&frame("write_woot", &p));
                assert_eq!(reply.len(), 260, "write_woot");
                *ledger.woots.get_mut(me).unwrap() += 1;
                assert_eq!(field(&reply, 249, 10).parse::<u32>().unwrap(), ledger.woots[me]);
            }
            5..=7 => {
                let follow = rng.gen_range(0..3) != 0;
                let command = if follow { "follow" } else { "unfollow" };
                let p = [rec.as_slice(), b" ", simple_record(&other).as_slice()].concat();
                let reply = server.legacy(&frame(command, &p));
                if other == *me {
                    assert!(reply.is_empty(), "self follow refused");
                    continue;
                }
                assert_eq!(reply.len(), 520, "{command} {me} {other}");
                let set = ledger.followees.get_mut(me).unwrap();
                if follow {
                    set.insert(other.clone());
                } else {
                    set.remove(&other);
                }
                assert_eq!(
                    field(&reply, 237, 11).parse::<usize>().unwrap(),
                    set.len(),
                    "{me}'s followees counter"
                );
            }
            8 => {
                let p = [rec.as_slice(), b" 10"].concat();
                let reply = server.legacy(&frame("load_woots", &p));
                let expected = ledger.woots[me].min(10) as usize;
                assert_eq!(reply.len(), expected * 124 + expected.div_ceil(4));
            }
            _ => {
                let p = [rec.as_slice(), b" followees 100"].concat();
                let reply = server.legacy(&frame("load_following", &p));
                let n = String::from_utf8_lossy(&reply).split_whitespace().count();
                assert_eq!(n, ledger.followees[me].len());
            }
        }
    }
    ledger
}

/// Runs `f` for every client on its own thread; joins them all.
fn on_every_client<T: Send + 'static>(server: &Arc<Server>, f: fn(&Server, usize) -> T) -> Vec<std::thread::Result<T>> {
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let server = server.clone();
            std::thread::spawn(move || f(&server, c))
        })
        .collect();
    threads.into_iter().map(|t| t.join()).collect()
}

#[test]
fn thirty_two_clients_of_random_operations_leave_consistent_data() {
    let dir = TempDir::new("random");
    let server = Arc::new(Server::start(dir.path(), &[]));
    // Everyone registers (concurrently) before anyone follows, so a refused
    // follow is a real failure. Threads are joined before judging, so the
    // server is stopped (dropped) even when a client failed.
    let registered: Vec<Vec<u32>> = on_every_client(&server, register)
        .into_iter()
        .map(|r| r.expect("register thread"))
        .collect();
    let ledgers: Vec<Ledger> = on_every_client(&server, client)
        .into_iter()
        .map(|r| r.expect("client thread"))
        .collect();
    // No id handed out twice, and ids are dense.
    let mut ids: Vec<u32> = registered.into_iter().flatten().collect();
    ids.sort_unstable();
    let n = ids.len() as u32;
    assert_eq!(ids, (0..n).collect::<Vec<_>>(), "ids are unique and dense");
    // Every acknowledged change is there.
    let name_of: HashMap<u32, String> = (0..n)
        .map(|id| {
            let reply = server.legacy(&frame("read_id", id.to_string().as_bytes()));
            (id, field(&reply, 0, 25))
        })
        .collect();
    for ledger in &ledgers {
        for (name, woots) in &ledger.woots {
            let reply = server.legacy(&frame("read_user", name.as_bytes()));
            assert_eq!(field(&reply, 249, 10).parse::<u32>().unwrap(), *woots, "{name} woots");
            let p = [simple_record(name).as_slice(), b" followees 1000"].concat();
            let got: BTreeSet<String> = String::from_utf8_lossy(&server.legacy(&frame("load_following", &p)))
                .split_whitespace()
                .map(|id| name_of[&id.parse::<u32>().unwrap()].clone())
                .collect();
            assert_eq!(got, ledger.followees[name], "{name} followees");
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    // Counters match the list files, follows are symmetric, fids is right.
    let (clean, out) = check_data(dir.path());
    assert!(clean, "check failed:\n{out}");
    assert!(out.contains(&format!("{} users", CLIENTS * USERS_PER_CLIENT)), "{out}");
}
