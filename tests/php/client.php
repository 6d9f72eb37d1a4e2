<?php
// A client that frames requests exactly as the Wooter PHP frontend does:
// stream_socket_client, one fwrite of 560 bytes, fgets until end of file.
// Usage: php client.php HOST:PORT [ROUNDS]
// Exits 0 when every check holds, 1 otherwise, printing what failed.
// A refused or reset connection is retried for up to 10 s, as a frontend
// behind a load balancer would while the primary fails over; ROUNDS repeats
// the whole sequence with fresh users (to span a failover).

$addr = $argv[1] ?? '127.0.0.1:13090';
$rounds = intval($argv[2] ?? '1');
$failures = 0;
$checks = 0;

function request($addr, $command, $payload) {
    $deadline = microtime(true) + 10;
    while (true) {
        $fp = @stream_socket_client("tcp://$addr", $errno, $errstr, 10);
        if ($fp) {
            break;
        }
        if (microtime(true) > $deadline) {
            fwrite(STDERR, "cannot connect to $addr: $errstr\n");
            exit(1);
        }
        usleep(100000);
    }
    stream_set_timeout($fp, 10);
    $msg = str_pad(str_pad($command, 40) . $payload, 560);
    fwrite($fp, $msg);
    $lines = array();
    while (($line = fgets($fp)) !== false) {
        $lines[] = $line;
    }
    fclose($fp);
    return $lines;
}

// The user record as the frontend builds it: every field left-aligned.
function record($user) {
    return str_pad($user['username'], 25) . str_pad($user['password'], 33)
        . str_pad($user['id'], 11) . str_pad($user['name'], 52)
        . str_pad($user['age'], 4) . str_pad($user['email'], 101)
        . str_pad($user['followers'], 11) . str_pad($user['followees'], 11)
        . $user['status'] . str_pad($user['woots'], 10);
}

// Parses a reply line by offset, as the frontend does.
function parse_user($line) {
    return array(
        'username' => trim(substr($line, 0, 25)),
        'password' => trim(substr($line, 25, 33)),
        'id' => trim(substr($line, 58, 11)),
        'name' => trim(substr($line, 69, 52)),
        'age' => trim(substr($line, 121, 4)),
        'email' => trim(substr($line, 125, 101)),
        'followers' => trim(substr($line, 226, 11)),
        'followees' => trim(substr($line, 237, 11)),
        'status' => substr($line, 248, 1),
        'woots' => trim(substr($line, 249, 10)),
    );
}

function check($what, $ok) {
    global $failures, $checks;
    $checks++;
    if (!$ok) {
        $failures++;
        echo "FAILED: $what\n";
    }
}

function new_user($name, $age) {
    return array('username' => $name, 'password' => "pw_$name", 'id' => '0',
        'name' => "Php $name", 'age' => "$age", 'email' => "$name@php.example",
        'followers' => '0', 'followees' => '0', 'status' => 'n', 'woots' => '0');
}

for ($round = 0; $round < $rounds; $round++) {
    $suffix = substr(md5(uniqid('', true)), 0, 6);
    $alice = new_user("alice$suffix", 31);
    $bob = new_user("bob$suffix", 42);

    foreach (array(&$alice, &$bob) as &$u) {
        $lines = request($addr, 'create_new_user', record($u));
        check("create {$u['username']} answers one line", count($lines) == 1 && strlen($lines[0]) == 260);
        $stored = parse_user($lines[0]);
        check("create {$u['username']} stores the name", $stored['username'] === $u['username'] && $stored['name'] === $u['name']);
        $u['id'] = $stored['id'];
    }
    unset($u);

    $lines = request($addr, 'create_new_user', record($alice));
    check('a taken username gets the empty reply', count($lines) == 0);

    $lines = request($addr, 'read_user', $alice['username']);
    $read = parse_user($lines[0] ?? '');
    check('read_user finds alice with her password', $read['password'] === $alice['password'] && $read['age'] === '31');
    check('read_user of an unknown name is empty', count(request($addr, 'read_user', "nobody$suffix")) == 0);

    $lines = request($addr, 'read_id', $bob['id']);
    check('read_id finds bob', parse_user($lines[0] ?? '')['username'] === $bob['username']);

    $lines = request($addr, 'follow', record($alice) . ' ' . record($bob));
    check('follow answers both users', count($lines) == 2);
    check('follow counts', parse_user($lines[0])['followees'] === '1' && parse_user($lines[1])['followers'] === '1');

    $lines = request($addr, 'already_following', record($alice) . ' ' . $bob['id']);
    check('already_following says YES', $lines === array("YES\n"));
    $lines = request($addr, 'already_following', record($bob) . ' ' . $alice['id']);
    check('already_following says NO', $lines === array("NO\n"));

    $lines = request($addr, 'load_following', record($alice) . ' followees 10');
    check('load_following lists bob', count($lines) == 1 && trim($lines[0]) === $bob['id']);

    // The frontend's session copy of alice is stale (woots 0): the server must
    // use its own counters.
    for ($i = 0; $i < 5; $i++) {
        $text = str_pad("php woot $i", 100);
        $stamp = str_pad("2026-02-0" . ($i + 1) . " -> 9:0$i:00", 22);
        $lines = request($addr, 'write_woot', record($alice) . ' ' . $text . ' ' . $stamp);
        check("write_woot $i answers the user", count($lines) == 1 && parse_user($lines[0])['woots'] === strval($i + 1));
    }
    $lines = request($addr, 'load_woots', record($alice) . ' 10');
    check('load_woots packs 4 woots per line', count($lines) == 2 && strlen($lines[0]) == 497 && strlen($lines[1]) == 125);
    check('load_woots is newest first', strpos($lines[0], 'php woot 4') === 0);
    $lines = request($addr, 'load_woots_seq', record($alice) . ' 2');
    check('load_woots_seq is oldest first', count($lines) == 1 && strpos($lines[0], 'php woot 0') === 0);

    $deactivated = $alice;
    $deactivated['status'] = 'd';
    $lines = request($addr, 'flush_user', record($deactivated));
    check('flush_user deactivates', parse_user($lines[0] ?? '')['status'] === 'd');
    check('flush_user keeps the counters', parse_user($lines[0] ?? '')['woots'] === '5');

    $lines = request($addr, 'unfollow', record($alice) . ' ' . record($bob));
    check('unfollow counts', count($lines) == 2 && parse_user($lines[0])['followees'] === '0');
    check('load_following after unfollow is empty', count(request($addr, 'load_following', record($alice) . ' followees 10')) == 0);
}

echo "php client: $checks checks, $failures failed\n";
exit($failures == 0 ? 0 : 1);
