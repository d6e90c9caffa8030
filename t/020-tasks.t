# The task endpoints: GET tasks/{id}, GET tasks (filters, pages), positions,
# DELETE tasks/{id}, GET tasks/{id}/result, owners, methods, system/stats.
#
# Every block starts from a store seeded before nginx starts (see
# seed_fixture below), so the answers are known to the byte.

use strict;
use warnings;

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(tid store_dir);
use JSON::PP ();

# The seeded tasks.  Ids are UUIDv7-shaped and time-ordered: the suffix n
# (hex) orders them as their created_at does.
#
#   n   kind    status    user   priority  notes
#   01  image   QUEUED    alice  5         image queue position 2
#   02  image   QUEUED    alice  9         image queue position 0
#   03  speech  QUEUED    alice  5         speech position 0, input 03.in
#   04  image   QUEUED    bob    7         image queue position 1
#   05  image   QUEUED    -      5         image queue position 3 (no owner)
#   06  image   DONE      alice  5         result file 06.png
#   07  speech  DONE      alice  5         result {"text":"hello",...}
#   08  image   FAILED    alice  5
#   09  image   CANCELED  alice  5
#   0a  image   QUEUED    alice  5         image queue position 4
#   0b  speech  QUEUED    alice  5         speech position 1

our $T0 = 1764410000000;        # 2025-11-29T09:53:20.000Z
our $PNG = "\x89PNG\r\n\x1a\n" . join('', map { chr } 0 .. 255)
           . "\r\n\r\n\0end";   # 272 bytes, every byte value
our $PNG_MTIME = 1764410040;    # ETag "692ac2b8-110"

our $SPEECH = '{"filename":"a.wav","content_type":"audio/wav","bytes":4}';

sub store_db  { return store_dir() . '/tasks.db' }
sub files_dir { return store_dir() . '/files' }

sub task {
    my ($n, %t) = @_;

    return {
        id => tid($n),
        priority => 5,
        params => sprintf('{"prompt":"t%02x"}', $n),
        created_at => $T0 + $n * 1000 + 123,
        %t,
    };
}

sub write_file {
    my ($name, $data, $mtime) = @_;

    my $dir = files_dir();
    -d $dir or mkdir $dir or die "$dir: $!";

    open my $fh, '>:raw', "$dir/$name" or die "$dir/$name: $!";
    print $fh $data;
    close $fh or die "$dir/$name: $!";

    utime $mtime, $mtime, "$dir/$name" if defined $mtime;
}

sub seed_fixture {
    my (%opt) = @_;

    my $done = { started_at => $T0 + 30000, finished_at => $T0 + 40000,
                 attempts => 1 };

    AsyncTaskTest::seed(store_db(),
        task(0x01, kind => 'image', status => 'QUEUED', user => 'alice'),
        task(0x02, kind => 'image', status => 'QUEUED', user => 'alice',
                   priority => 9),
        task(0x03, kind => 'speech', status => 'QUEUED', user => 'alice',
                   params => $SPEECH, file => tid(0x03) . '.in'),
        task(0x04, kind => 'image', status => 'QUEUED', user => 'bob',
                   priority => 7),
        task(0x05, kind => 'image', status => 'QUEUED'),
        task(0x06, kind => 'image', status => 'DONE', user => 'alice', %$done,
                   backend => 'gpu_image/127.0.0.1:9',
                   file => tid(0x06) . '.png',
                   result => '{"content_type":"image/png","bytes":'
                             . length($PNG) . '}'),
        task(0x07, kind => 'speech', status => 'DONE', user => 'alice',
                   %$done, params => $SPEECH,
                   backend => 'gpu_speech/127.0.0.1:9',
                   result => '{"text":"hello","language":"en"}'),
        task(0x08, kind => 'image', status => 'FAILED', user => 'alice',
                   %$done, attempts => 3, backend => 'gpu_image/127.0.0.1:9',
                   error => '{"code":"timeout","message":"no answer in 300s"}'),
        task(0x09, kind => 'image', status => 'CANCELED', user => 'alice',
                   finished_at => $T0 + 50000),
        task(0x0a, kind => 'image', status => 'QUEUED', user => 'alice'),
        task(0x0b, kind => 'speech', status => 'QUEUED', user => 'alice',
                   params => $SPEECH),
        @{ $opt{more} // [] },
    );

    write_file(tid(0x03) . '.in', 'RIFF');
    write_file(tid(0x06) . '.png', $PNG, $PNG_MTIME) unless $opt{no_png};
}

# A response body made short: one line per task ("<n> <kind> <status>
# <user> p<priority> pos=<position> fin=<finished_at set?>"), and for a
# list whether a next page is announced.  Anything else is left as it is.

sub task_line {
    my $t = shift;

    my $id = $t->{id};
    $id =~ s/^01900000-0000-7000-8000-0000000000(?=[0-9a-f]{2}$)//;

    return sprintf "%s %s %s %s p%s pos=%s fin=%s\n",
        $id, $t->{kind}, $t->{status}, $t->{user} // '-', $t->{priority},
        !exists $t->{position} ? '-' : $t->{position} // 'null',
        defined $t->{finished_at} ? 'set' : 'null';
}

sub brief {
    my $body = shift;

    my $json = eval { JSON::PP->new->decode($body) };
    return $body unless ref $json eq 'HASH';

    if (ref $json->{tasks} eq 'ARRAY') {
        my $keys = join ',', sort keys %$json;
        return "unexpected keys: $keys\n" if $keys ne 'next_cursor,tasks';

        my $out = join '', map { task_line($_) } @{ $json->{tasks} };
        my $c = $json->{next_cursor};

        return $out . 'next_cursor: '
               . (!defined $c ? 'null'
                  : !ref $c && length $c ? 'more' : 'bad') . "\n";
    }

    return task_line($json) if exists $json->{id};

    return $body;
}

# Pages through GET tasks?<query>, following next_cursor, as <user>.

sub walk_pages {
    my ($user, $query, $expect, $sizes) = @_;

    my (@seen, @pages, $cursor);
    my $what = "$0 pages of \"$query\" for $user";

    for (1 .. 50) {
        my $q = $query;
        if (defined $cursor) {
            (my $c = $cursor) =~ s/([^A-Za-z0-9._~-])/sprintf '%%%02X', ord $1/ge;
            $q .= "&cursor=$c";
        }

        my ($status, $json, $h, $body) =
            AsyncTaskTest::api('GET', "tasks?$q",
                               headers => { 'X-User-Id' => $user });

        if ($status != 200 || ref $json ne 'HASH') {
            Test::More::fail("$what: GET tasks?$q answered $status $body");
            return;
        }

        push @pages, scalar @{ $json->{tasks} };
        push @seen, map { $_->{id} } @{ $json->{tasks} };

        $cursor = $json->{next_cursor};
        last unless defined $cursor;
    }

    Test::More::is_deeply(\@seen, [map { tid($_) } @$expect],
                          "$what: each task once, newest first");
    Test::More::is_deeply(\@pages, $sizes, "$what: page sizes");
    Test::More::ok(!defined $cursor, "$what: no cursor on the last page");
}

run_tests();

__DATA__

=== TEST 1: a queued task, as its owner sees it: every field, and its position
--- post_setup_server_root
::seed_fixture();
--- request
GET /api/v1/tasks/01900000-0000-7000-8000-000000000001
--- more_headers
X-User-Id: alice
--- response_headers
Content-Type: application/json
--- response_body chomp
{"id":"01900000-0000-7000-8000-000000000001","kind":"image","status":"QUEUED","user":"alice","priority":5,"position":2,"params":{"prompt":"t01"},"created_at":"2025-11-29T09:53:21.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}
--- no_error_log
[error]
[alert]



=== TEST 2: GET tasks?id= is GET tasks/{id}; an upper-case id is answered in lower case
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks?id=01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-00000000000A",
 "GET /api/v1/tasks?id=01900000-0000-7000-8000-00000000000A",
 "GET /api/v1/tasks/01900000-0000-7000-8000-00000000000b"]
--- more_headers
X-User-Id: alice
--- error_code eval
[200, 200, 200, 200]
--- response_body eval
['{"id":"01900000-0000-7000-8000-000000000001","kind":"image","status":"QUEUED","user":"alice","priority":5,"position":2,"params":{"prompt":"t01"},"created_at":"2025-11-29T09:53:21.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}',
 '{"id":"01900000-0000-7000-8000-00000000000a","kind":"image","status":"QUEUED","user":"alice","priority":5,"position":4,"params":{"prompt":"t0a"},"created_at":"2025-11-29T09:53:30.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}',
 '{"id":"01900000-0000-7000-8000-00000000000a","kind":"image","status":"QUEUED","user":"alice","priority":5,"position":4,"params":{"prompt":"t0a"},"created_at":"2025-11-29T09:53:30.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}',
 '{"id":"01900000-0000-7000-8000-00000000000b","kind":"speech","status":"QUEUED","user":"alice","priority":5,"position":1,"params":{"filename":"a.wav","content_type":"audio/wav","bytes":4},"created_at":"2025-11-29T09:53:31.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}']
--- no_error_log
[error]
[alert]



=== TEST 3: finished tasks come from the store: result, error, times, no position
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000007",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000008",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000009"]
--- more_headers
X-User-Id: alice
--- error_code eval
[200, 200, 200, 200]
--- response_body eval
['{"id":"01900000-0000-7000-8000-000000000006","kind":"image","status":"DONE","user":"alice","priority":5,"params":{"prompt":"t06"},"created_at":"2025-11-29T09:53:26.123Z","started_at":"2025-11-29T09:53:50.000Z","finished_at":"2025-11-29T09:54:00.000Z","attempts":1,"backend":"gpu_image/127.0.0.1:9","result":{"url":"/api/v1/tasks/01900000-0000-7000-8000-000000000006/result","content_type":"image/png","bytes":272},"error":null}',
 '{"id":"01900000-0000-7000-8000-000000000007","kind":"speech","status":"DONE","user":"alice","priority":5,"params":{"filename":"a.wav","content_type":"audio/wav","bytes":4},"created_at":"2025-11-29T09:53:27.123Z","started_at":"2025-11-29T09:53:50.000Z","finished_at":"2025-11-29T09:54:00.000Z","attempts":1,"backend":"gpu_speech/127.0.0.1:9","result":{"text":"hello","language":"en"},"error":null}',
 '{"id":"01900000-0000-7000-8000-000000000008","kind":"image","status":"FAILED","user":"alice","priority":5,"params":{"prompt":"t08"},"created_at":"2025-11-29T09:53:28.123Z","started_at":"2025-11-29T09:53:50.000Z","finished_at":"2025-11-29T09:54:00.000Z","attempts":3,"backend":"gpu_image/127.0.0.1:9","result":null,"error":{"code":"timeout","message":"no answer in 300s"}}',
 '{"id":"01900000-0000-7000-8000-000000000009","kind":"image","status":"CANCELED","user":"alice","priority":5,"params":{"prompt":"t09"},"created_at":"2025-11-29T09:53:29.123Z","started_at":null,"finished_at":"2025-11-29T09:54:10.000Z","attempts":0,"backend":null,"result":null,"error":null}']
--- no_error_log
[error]
[alert]



=== TEST 4: the result URL of an image follows the location's prefix
--- config
    location /gpu/api/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
::seed_fixture();
--- request
GET /gpu/api/tasks/01900000-0000-7000-8000-000000000006
--- more_headers
X-User-Id: alice
--- response_body_like: "result":\{"url":"/gpu/api/tasks/01900000-0000-7000-8000-000000000006/result","content_type":"image/png","bytes":272\},"error":null\}$
--- no_error_log
[error]
[alert]



=== TEST 5: an owner with characters JSON must escape
--- post_setup_server_root
::seed_fixture(more => [::task(0x31, kind => 'image', status => 'QUEUED',
                                 user => 'o"neil\\ x')]);
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-000000000031",
 "GET /api/v1/tasks"]
--- more_headers
X-User-Id: o"neil\ x
--- error_code eval
[200, 200]
--- response_body eval
['{"id":"01900000-0000-7000-8000-000000000031","kind":"image","status":"QUEUED","user":"o\"neil\\\\ x","priority":5,"position":5,"params":{"prompt":"t31"},"created_at":"2025-11-29T09:54:09.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}',
 '{"tasks":[{"id":"01900000-0000-7000-8000-000000000031","kind":"image","status":"QUEUED","user":"o\"neil\\\\ x","priority":5,"position":5,"params":{"prompt":"t31"},"created_at":"2025-11-29T09:54:09.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}],"next_cursor":null}']
--- no_error_log
[error]
[alert]



=== TEST 6: malformed ids
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks/nope",
 "GET /api/v1/tasks/01900000-0000-7000-8000-00000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-0000000000011",
 "GET /api/v1/tasks/0190000g-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000_0000-7000-8000-000000000001",
 "GET /api/v1/tasks/019000000-000-7000-8000-000000000001",
 "GET /api/v1/tasks?id=nope",
 "GET /api/v1/tasks?id=",
 "GET /api/v1/tasks/nope/result",
 "DELETE /api/v1/tasks/nope",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-00000000001"]
--- more_headers
X-User-Id: alice
--- error_code eval
[(400) x 11]
--- response_body eval
[('{"error":{"code":"invalid_argument","message":"malformed task id","field":"id"}}') x 11]
--- no_error_log
[error]
[alert]



=== TEST 7: an unknown id
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-0000000000ff",
 "GET /api/v1/tasks?id=01900000-0000-7000-8000-0000000000ff",
 "GET /api/v1/tasks/01900000-0000-7000-8000-0000000000ff/result",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-0000000000ff"]
--- more_headers
X-User-Id: alice
--- error_code eval
[404, 404, 404, 404]
--- response_body eval
[('{"error":{"code":"not_found","message":"no such task"}}') x 4]
--- no_error_log
[error]
[alert]



=== TEST 8: another user's task, or an owned one asked for anonymously, does not exist
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks?id=01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000007/result",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000004",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000005",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000005"]
--- more_headers eval
["X-User-Id: bob",
 "",
 "X-User-Id: Alice",
 "X-User-Id: bob",
 "X-User-Id: bob",
 "",
 "X-User-Id: bob",
 "X-User-Id: bob",
 "",
 "",
 "X-User-Id: bob",
 "",
 "X-User-Id: bob",
 "",
 "X-User-Id: alice",
 "X-User-Id: alice",
 "X-User-Id: alice"]
--- error_code eval
[(404) x 17]
--- response_body eval
[('{"error":{"code":"not_found","message":"no such task"}}') x 17]
--- no_error_log
[error]
[alert]



=== TEST 9: ... and none of that changed anything
--- post_setup_server_root
::seed_fixture();
--- init
for my $user ('bob', undef) {
    my %h = defined $user ? (headers => { 'X-User-Id' => $user }) : ();
    for my $n (0x01, 0x03, 0x06) {
        my ($status) = AsyncTaskTest::api('DELETE', 'tasks/' . ::tid($n), %h);
        Test::More::is($status, 404, "$0 DELETE of alice's $n as "
                                     . ($user // 'nobody'));
    }
}
Test::More::ok(-e ::files_dir() . '/' . ::tid(0x03) . '.in',
               "$0 the input of alice's task is still there");
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000003",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000004",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000005",
 "GET /api/v1/system/stats"]
--- more_headers eval
["X-User-Id: alice",
 "X-User-Id: alice",
 "X-User-Id: alice",
 "X-User-Id: bob",
 "",
 ""]
--- response_body_filters eval
\&::brief
--- error_code eval
[(200) x 6]
--- response_body eval
["01 image QUEUED alice p5 pos=2 fin=null\n",
 "03 speech QUEUED alice p5 pos=0 fin=null\n",
 "06 image DONE alice p5 pos=- fin=set\n",
 "04 image QUEUED bob p7 pos=1 fin=null\n",
 "05 image QUEUED - p5 pos=3 fin=null\n",
 qr/"tasks":\{"QUEUED":7,"RUNNING":0,"DONE":2,"FAILED":1,"CANCELED":1\},"queue":\{"depth":7,"capacity":1000,"kinds":\{"image":5,"speech":2\}\}/]
--- no_error_log
[error]
[alert]



=== TEST 10: lists show the requester's tasks only, newest first, with positions
--- post_setup_server_root
::seed_fixture();
--- request eval
[("GET /api/v1/tasks") x 5]
--- more_headers eval
["X-User-Id: alice", "X-User-Id: bob", "", "X-User-Id: carol",
 "X-User-Id: ALICE"]
--- response_body_filters eval
\&::brief
--- error_code eval
[(200) x 5]
--- response_body eval
["0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=4 fin=null
09 image CANCELED alice p5 pos=- fin=set
08 image FAILED alice p5 pos=- fin=set
07 speech DONE alice p5 pos=- fin=set
06 image DONE alice p5 pos=- fin=set
03 speech QUEUED alice p5 pos=0 fin=null
02 image QUEUED alice p9 pos=0 fin=null
01 image QUEUED alice p5 pos=2 fin=null
next_cursor: null
",
"04 image QUEUED bob p7 pos=1 fin=null
next_cursor: null
",
"05 image QUEUED - p5 pos=3 fin=null
next_cursor: null
",
"next_cursor: null
",
"next_cursor: null
"]
--- no_error_log
[error]
[alert]



=== TEST 11: list entries are the task objects, byte for byte; an empty list
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks", "GET /api/v1/tasks", "GET /api/v1/tasks?status=DONE&kind=image"]
--- more_headers eval
["X-User-Id: bob", "X-User-Id: carol", "X-User-Id: alice"]
--- error_code eval
[200, 200, 200]
--- response_body eval
['{"tasks":[{"id":"01900000-0000-7000-8000-000000000004","kind":"image","status":"QUEUED","user":"bob","priority":7,"position":1,"params":{"prompt":"t04"},"created_at":"2025-11-29T09:53:24.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}],"next_cursor":null}',
 '{"tasks":[],"next_cursor":null}',
 '{"tasks":[{"id":"01900000-0000-7000-8000-000000000006","kind":"image","status":"DONE","user":"alice","priority":5,"params":{"prompt":"t06"},"created_at":"2025-11-29T09:53:26.123Z","started_at":"2025-11-29T09:53:50.000Z","finished_at":"2025-11-29T09:54:00.000Z","attempts":1,"backend":"gpu_image/127.0.0.1:9","result":{"url":"/api/v1/tasks/01900000-0000-7000-8000-000000000006/result","content_type":"image/png","bytes":272},"error":null}],"next_cursor":null}']
--- no_error_log
[error]
[alert]



=== TEST 12: filters: status, kind, both
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks?status=QUEUED",
 "GET /api/v1/tasks?status=DONE",
 "GET /api/v1/tasks?status=FAILED",
 "GET /api/v1/tasks?status=CANCELED",
 "GET /api/v1/tasks?status=RUNNING",
 "GET /api/v1/tasks?kind=speech",
 "GET /api/v1/tasks?kind=image&status=QUEUED",
 "GET /api/v1/tasks?status=FAILED&kind=speech",
 "GET /api/v1/tasks?kind=%69mage&status=DONE"]
--- more_headers
X-User-Id: alice
--- response_body_filters eval
\&::brief
--- error_code eval
[(200) x 9]
--- response_body eval
["0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=4 fin=null
03 speech QUEUED alice p5 pos=0 fin=null
02 image QUEUED alice p9 pos=0 fin=null
01 image QUEUED alice p5 pos=2 fin=null
next_cursor: null
",
"07 speech DONE alice p5 pos=- fin=set
06 image DONE alice p5 pos=- fin=set
next_cursor: null
",
"08 image FAILED alice p5 pos=- fin=set
next_cursor: null
",
"09 image CANCELED alice p5 pos=- fin=set
next_cursor: null
",
"next_cursor: null
",
"0b speech QUEUED alice p5 pos=1 fin=null
07 speech DONE alice p5 pos=- fin=set
03 speech QUEUED alice p5 pos=0 fin=null
next_cursor: null
",
"0a image QUEUED alice p5 pos=4 fin=null
02 image QUEUED alice p9 pos=0 fin=null
01 image QUEUED alice p5 pos=2 fin=null
next_cursor: null
",
"next_cursor: null
",
"06 image DONE alice p5 pos=- fin=set
next_cursor: null
"]
--- no_error_log
[error]
[alert]



=== TEST 13: limit, and a cursor (the last id of a page) continues after it
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks?limit=2",
 "GET /api/v1/tasks?limit=9",
 "GET /api/v1/tasks?limit=8",
 "GET /api/v1/tasks?limit=100",
 "GET /api/v1/tasks?limit=1&status=DONE",
 "GET /api/v1/tasks?cursor=01900000-0000-7000-8000-00000000000a&limit=3",
 "GET /api/v1/tasks?cursor=01900000-0000-7000-8000-000000000003",
 "GET /api/v1/tasks?cursor=01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks?status=QUEUED&cursor=01900000-0000-7000-8000-00000000000A"]
--- more_headers
X-User-Id: alice
--- response_body_filters eval
\&::brief
--- error_code eval
[(200) x 9]
--- response_body eval
["0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=4 fin=null
next_cursor: more
",
"0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=4 fin=null
09 image CANCELED alice p5 pos=- fin=set
08 image FAILED alice p5 pos=- fin=set
07 speech DONE alice p5 pos=- fin=set
06 image DONE alice p5 pos=- fin=set
03 speech QUEUED alice p5 pos=0 fin=null
02 image QUEUED alice p9 pos=0 fin=null
01 image QUEUED alice p5 pos=2 fin=null
next_cursor: null
",
"0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=4 fin=null
09 image CANCELED alice p5 pos=- fin=set
08 image FAILED alice p5 pos=- fin=set
07 speech DONE alice p5 pos=- fin=set
06 image DONE alice p5 pos=- fin=set
03 speech QUEUED alice p5 pos=0 fin=null
02 image QUEUED alice p9 pos=0 fin=null
next_cursor: more
",
"0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=4 fin=null
09 image CANCELED alice p5 pos=- fin=set
08 image FAILED alice p5 pos=- fin=set
07 speech DONE alice p5 pos=- fin=set
06 image DONE alice p5 pos=- fin=set
03 speech QUEUED alice p5 pos=0 fin=null
02 image QUEUED alice p9 pos=0 fin=null
01 image QUEUED alice p5 pos=2 fin=null
next_cursor: null
",
"07 speech DONE alice p5 pos=- fin=set
next_cursor: more
",
"09 image CANCELED alice p5 pos=- fin=set
08 image FAILED alice p5 pos=- fin=set
07 speech DONE alice p5 pos=- fin=set
next_cursor: more
",
"02 image QUEUED alice p9 pos=0 fin=null
01 image QUEUED alice p5 pos=2 fin=null
next_cursor: null
",
"next_cursor: null
",
"03 speech QUEUED alice p5 pos=0 fin=null
02 image QUEUED alice p9 pos=0 fin=null
01 image QUEUED alice p5 pos=2 fin=null
next_cursor: null
"]
--- no_error_log
[error]
[alert]



=== TEST 14: paging through with next_cursor shows every task exactly once
--- post_setup_server_root
::seed_fixture(more => [
    ::task(0x11, kind => 'image',  status => 'QUEUED',   user => 'pager'),
    ::task(0x12, kind => 'speech', status => 'DONE',     user => 'pager',
                 params => $::SPEECH, result => '{"text":"x"}',
                 started_at => $::T0 + 30000, finished_at => $::T0 + 40000),
    ::task(0x13, kind => 'image',  status => 'CANCELED', user => 'pager',
                 finished_at => $::T0 + 50000),
    ::task(0x14, kind => 'image',  status => 'QUEUED',   user => 'pager',
                 priority => 0),
    ::task(0x15, kind => 'image',  status => 'FAILED',   user => 'pager',
                 error => '{"code":"backend_error","message":"500"}',
                 started_at => $::T0 + 30000, finished_at => $::T0 + 40000),
]);
--- init
::walk_pages('pager', 'limit=2', [0x15, 0x14, 0x13, 0x12, 0x11], [2, 2, 1]);
::walk_pages('pager', 'limit=1', [0x15, 0x14, 0x13, 0x12, 0x11],
             [1, 1, 1, 1, 1]);
::walk_pages('pager', 'kind=image&limit=2', [0x15, 0x14, 0x13, 0x11],
             [2, 2]);
::walk_pages('pager', 'status=QUEUED&limit=1', [0x14, 0x11], [1, 1]);
::walk_pages('pager', 'limit=5', [0x15, 0x14, 0x13, 0x12, 0x11], [5]);
::walk_pages('alice', 'limit=4',
             [0x0b, 0x0a, 0x09, 0x08, 0x07, 0x06, 0x03, 0x02, 0x01],
             [4, 4, 1]);
--- request
GET /api/v1/tasks?limit=2
--- more_headers
X-User-Id: pager
--- response_body_filters eval
\&::brief
--- response_body
15 image FAILED pager p5 pos=- fin=set
14 image QUEUED pager p0 pos=6 fin=null
next_cursor: more
--- no_error_log
[error]
[alert]



=== TEST 15: bad list parameters
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks?status=queued",
 "GET /api/v1/tasks?status=",
 "GET /api/v1/tasks?status=PENDING",
 "GET /api/v1/tasks?kind=video",
 "GET /api/v1/tasks?kind=",
 "GET /api/v1/tasks?kind=Image",
 "GET /api/v1/tasks?limit=0",
 "GET /api/v1/tasks?limit=101",
 "GET /api/v1/tasks?limit=-1",
 "GET /api/v1/tasks?limit=abc",
 "GET /api/v1/tasks?limit=",
 "GET /api/v1/tasks?limit=2x",
 "GET /api/v1/tasks?cursor=nope",
 "GET /api/v1/tasks?cursor=",
 "GET /api/v1/tasks?cursor=01900000-0000-7000-8000-00000000000g",
 "GET /api/v1/tasks?foo=bar",
 "GET /api/v1/tasks?limit=2&user=bob",
 "GET /api/v1/tasks?status"]
--- more_headers
X-User-Id: alice
--- error_code eval
[(400) x 18]
--- response_body eval
[('{"error":{"code":"invalid_argument","message":"status must be one of QUEUED, RUNNING, DONE, FAILED, CANCELED","field":"status"}}') x 3,
 ('{"error":{"code":"invalid_argument","message":"kind must be image or speech","field":"kind"}}') x 3,
 ('{"error":{"code":"invalid_argument","message":"limit must be between 1 and 100","field":"limit"}}') x 6,
 ('{"error":{"code":"invalid_argument","message":"malformed cursor","field":"cursor"}}') x 3,
 '{"error":{"code":"invalid_argument","message":"unknown query parameter \"foo\"","field":"foo"}}',
 '{"error":{"code":"invalid_argument","message":"unknown query parameter \"user\"","field":"user"}}',
 '{"error":{"code":"invalid_argument","message":"status must be one of QUEUED, RUNNING, DONE, FAILED, CANCELED","field":"status"}}']
--- no_error_log
[error]
[alert]



=== TEST 16: a bad list parameter does not cost the keep-alive connection
--- post_setup_server_root
::seed_fixture();
--- pipelined_requests eval
["GET /api/v1/tasks?limit=0", "GET /api/v1/system/stats"]
--- error_code eval
[400, 200]
--- response_body eval
['{"error":{"code":"invalid_argument","message":"limit must be between 1 and 100","field":"limit"}}',
 qr/"tasks":\{"QUEUED":7,"RUNNING":0,"DONE":2,"FAILED":1,"CANCELED":1\}/]
--- no_error_log
[error]
[alert]



=== TEST 17: positions: per kind, higher priority first, then older, whoever owns them
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-000000000002",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000004",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000005",
 "GET /api/v1/tasks/01900000-0000-7000-8000-00000000000a",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000003",
 "GET /api/v1/tasks/01900000-0000-7000-8000-00000000000b"]
--- more_headers eval
["X-User-Id: alice", "X-User-Id: bob", "X-User-Id: alice", "",
 "X-User-Id: alice", "X-User-Id: alice", "X-User-Id: alice"]
--- response_body_filters eval
\&::brief
--- error_code eval
[(200) x 7]
--- response_body eval
["02 image QUEUED alice p9 pos=0 fin=null\n",
 "04 image QUEUED bob p7 pos=1 fin=null\n",
 "01 image QUEUED alice p5 pos=2 fin=null\n",
 "05 image QUEUED - p5 pos=3 fin=null\n",
 "0a image QUEUED alice p5 pos=4 fin=null\n",
 "03 speech QUEUED alice p5 pos=0 fin=null\n",
 "0b speech QUEUED alice p5 pos=1 fin=null\n"]
--- no_error_log
[error]
[alert]



=== TEST 18: the same priority and creation time: the id decides
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(),
    map { ::task($_, kind => 'image', status => 'QUEUED', user => 'u',
                 created_at => $::T0) } 0x23, 0x21, 0x22);
--- request eval
["GET /api/v1/tasks"]
--- more_headers
X-User-Id: u
--- response_body_filters eval
\&::brief
--- error_code eval
[200]
--- response_body eval
["23 image QUEUED u p5 pos=2 fin=null
22 image QUEUED u p5 pos=1 fin=null
21 image QUEUED u p5 pos=0 fin=null
next_cursor: null
"]
--- no_error_log
[error]
[alert]



=== TEST 19: DELETE of a queued task: 200, CANCELED, finished_at set, no position
--- post_setup_server_root
::seed_fixture();
--- request
DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000001
--- more_headers
X-User-Id: alice
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"id":"01900000-0000-7000-8000-000000000001","kind":"image","status":"CANCELED","user":"alice","priority":5,"params":\{"prompt":"t01"\},"created_at":"2025-11-29T09:53:21\.123Z","started_at":null,"finished_at":"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\d\dZ","attempts":0,"backend":null,"result":null,"error":null\}$
--- no_error_log
[error]
[alert]



=== TEST 20: after a cancel: 409 on a second one, the counts move, the others move up
--- post_setup_server_root
::seed_fixture();
--- request eval
["DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/result",
 "GET /api/v1/tasks?status=QUEUED",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000004",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000005",
 "GET /api/v1/system/stats",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000002",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000004",
 "GET /api/v1/tasks?status=QUEUED",
 "GET /api/v1/tasks?status=CANCELED",
 "GET /api/v1/system/stats"]
--- more_headers eval
["X-User-Id: alice", "X-User-Id: alice", "X-User-Id: alice",
 "X-User-Id: alice", "X-User-Id: alice", "X-User-Id: bob", "", "",
 "X-User-Id: alice", "X-User-Id: bob", "X-User-Id: alice",
 "X-User-Id: alice", ""]
--- response_body_filters eval
\&::brief
--- error_code eval
[200, 409, 200, 409, 200, 200, 200, 200, 200, 200, 200, 200, 200]
--- response_body eval
["01 image CANCELED alice p5 pos=- fin=set\n",
 '{"error":{"code":"conflict","message":"the task is already CANCELED"}}',
 "01 image CANCELED alice p5 pos=- fin=set\n",
 '{"error":{"code":"conflict","message":"the task is CANCELED, not DONE"}}',
 "0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=3 fin=null
03 speech QUEUED alice p5 pos=0 fin=null
02 image QUEUED alice p9 pos=0 fin=null
next_cursor: null
",
 "04 image QUEUED bob p7 pos=1 fin=null\n",
 "05 image QUEUED - p5 pos=2 fin=null\n",
 qr/"tasks":\{"QUEUED":6,"RUNNING":0,"DONE":2,"FAILED":1,"CANCELED":2\},"queue":\{"depth":6,"capacity":1000,"kinds":\{"image":4,"speech":2\}\}/,
 "02 image CANCELED alice p9 pos=- fin=set\n",
 "04 image QUEUED bob p7 pos=0 fin=null\n",
 "0b speech QUEUED alice p5 pos=1 fin=null
0a image QUEUED alice p5 pos=2 fin=null
03 speech QUEUED alice p5 pos=0 fin=null
next_cursor: null
",
 "09 image CANCELED alice p5 pos=- fin=set
02 image CANCELED alice p9 pos=- fin=set
01 image CANCELED alice p5 pos=- fin=set
next_cursor: null
",
 qr/"tasks":\{"QUEUED":5,"RUNNING":0,"DONE":2,"FAILED":1,"CANCELED":3\},"queue":\{"depth":5,"capacity":1000,"kinds":\{"image":3,"speech":2\}\}/]
--- no_error_log
[error]
[alert]



=== TEST 21: a finished task cannot be canceled, and stays as it was
--- post_setup_server_root
::seed_fixture();
--- request eval
["DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000007",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000008",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000009",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000009",
 "GET /api/v1/system/stats",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000007/result"]
--- more_headers eval
[("X-User-Id: alice") x 6, "", ("X-User-Id: alice") x 2]
--- response_body_filters eval
\&::brief
--- error_code eval
[409, 409, 409, 409, 200, 200, 200, 200, 200]
--- response_body eval
['{"error":{"code":"conflict","message":"the task is already DONE"}}',
 '{"error":{"code":"conflict","message":"the task is already DONE"}}',
 '{"error":{"code":"conflict","message":"the task is already FAILED"}}',
 '{"error":{"code":"conflict","message":"the task is already CANCELED"}}',
 "06 image DONE alice p5 pos=- fin=set\n",
 "09 image CANCELED alice p5 pos=- fin=set\n",
 qr/"tasks":\{"QUEUED":7,"RUNNING":0,"DONE":2,"FAILED":1,"CANCELED":1\},"queue":\{"depth":7,"capacity":1000,"kinds":\{"image":5,"speech":2\}\}/,
 $::PNG,
 '{"text":"hello","language":"en"}']
--- no_error_log
[error]
[alert]



=== TEST 22: canceling a speech task deletes its uploaded input, and only the owner can
--- post_setup_server_root
::seed_fixture();
::write_file('unrelated.in', 'keep me');
--- init
my $file = ::files_dir() . '/' . ::tid(0x03) . '.in';
Test::More::ok(-e $file, "$0 the input of the queued speech task is there");

my ($status) = AsyncTaskTest::api('DELETE', 'tasks/' . ::tid(0x03),
                                  headers => { 'X-User-Id' => 'bob' });
Test::More::is($status, 404, "$0 DELETE as another user: 404");
Test::More::ok(-e $file, "$0 ... and the input is still there");

($status, my $json) = AsyncTaskTest::api('DELETE', 'tasks/' . ::tid(0x03),
                                  headers => { 'X-User-Id' => 'alice' });
Test::More::is($status, 200, "$0 DELETE as the owner: 200");
Test::More::is($json && $json->{status}, 'CANCELED', "$0 ... CANCELED");
Test::More::ok(!-e $file, "$0 ... and the input file is deleted");
Test::More::ok(-e ::files_dir() . '/unrelated.in',
               "$0 ... but no other file");
Test::More::ok(-e ::files_dir() . '/' . ::tid(0x06) . '.png',
               "$0 ... nor a result");
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-000000000003",
 "GET /api/v1/tasks/01900000-0000-7000-8000-00000000000b",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000002"]
--- more_headers
X-User-Id: alice
--- response_body_filters eval
\&::brief
--- error_code eval
[200, 200, 200]
--- response_body eval
["03 speech CANCELED alice p5 pos=- fin=set\n",
 "0b speech QUEUED alice p5 pos=0 fin=null\n",
 "02 image QUEUED alice p9 pos=0 fin=null\n"]
--- no_error_log
[error]
[alert]



=== TEST 23: a result before DONE is a conflict; a speech result is its JSON
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-00000000000A/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000003/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000008/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000009/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000007/result"]
--- more_headers
X-User-Id: alice
--- error_code eval
[409, 409, 409, 409, 409, 200]
--- response_headers eval
[("Content-Type: application/json") x 6]
--- response_body eval
['{"error":{"code":"conflict","message":"the task is QUEUED, not DONE"}}',
 '{"error":{"code":"conflict","message":"the task is QUEUED, not DONE"}}',
 '{"error":{"code":"conflict","message":"the task is QUEUED, not DONE"}}',
 '{"error":{"code":"conflict","message":"the task is FAILED, not DONE"}}',
 '{"error":{"code":"conflict","message":"the task is CANCELED, not DONE"}}',
 '{"text":"hello","language":"en"}']
--- no_error_log
[error]
[alert]



=== TEST 24: an image result: the PNG's bytes, with Content-Length and an ETag
--- post_setup_server_root
::seed_fixture();
--- request
GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result
--- more_headers
X-User-Id: alice
--- response_headers
Content-Type: image/png
Content-Length: 272
ETag: "692ac2b8-110"
Last-Modified: Sat, 29 Nov 2025 09:54:00 GMT
--- response_body eval
$::PNG
--- no_error_log
[error]
[alert]



=== TEST 25: an image result is a static file: HEAD, If-None-Match, Range
--- post_setup_server_root
::seed_fixture();
--- request eval
["HEAD /api/v1/tasks/01900000-0000-7000-8000-000000000006/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result"]
--- more_headers eval
["X-User-Id: alice",
 "X-User-Id: alice\nIf-None-Match: \"692ac2b8-110\"",
 "X-User-Id: alice\nRange: bytes=0-7"]
--- error_code eval
[200, 304, 206]
--- response_headers eval
["Content-Type: image/png\nContent-Length: 272\nETag: \"692ac2b8-110\"",
 "ETag: \"692ac2b8-110\"",
 "Content-Type: image/png\nContent-Length: 8\nContent-Range: bytes 0-7/272"]
--- response_body eval
["", "", "\x89PNG\r\n\x1a\n"]
--- no_error_log
[error]
[alert]



=== TEST 26: a DONE image whose file is gone
--- post_setup_server_root
::seed_fixture(no_png => 1);
--- request
GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result
--- more_headers
X-User-Id: alice
--- error_code: 404
--- response_body chomp
{"error":{"code":"not_found","message":"the result file is gone"}}
--- error_log
01900000-0000-7000-8000-000000000006.png" failed (2: No such file or directory)
--- no_error_log
[alert]



=== TEST 27: methods: 405 with Allow
--- post_setup_server_root
::seed_fixture();
--- request eval
["POST /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "PUT /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "DELETE /api/v1/tasks",
 "POST /api/v1/tasks",
 "POST /api/v1/tasks/01900000-0000-7000-8000-000000000001/result",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000006/result",
 "DELETE /api/v1/system/stats",
 "POST /api/v1/system/stats"]
--- more_headers
X-User-Id: alice
--- error_code eval
[(405) x 8]
--- response_headers eval
[("Allow: GET, HEAD, DELETE\nContent-Type: application/json") x 2,
 ("Allow: GET, HEAD\nContent-Type: application/json") x 6]
--- response_body eval
[('{"error":{"code":"method_not_allowed","message":"method not allowed here"}}') x 8]
--- no_error_log
[error]
[alert]



=== TEST 28: ... and a 405 changed nothing
--- post_setup_server_root
::seed_fixture();
--- request eval
["POST /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001"]
--- more_headers
X-User-Id: alice
--- response_body_filters eval
\&::brief
--- error_code eval
[405, 200]
--- response_body eval
['{"error":{"code":"method_not_allowed","message":"method not allowed here"}}',
 "01 image QUEUED alice p5 pos=2 fin=null\n"]
--- no_error_log
[error]
[alert]



=== TEST 29: unknown paths
--- post_setup_server_root
::seed_fixture();
--- request eval
["GET /api/v1/nope",
 "GET /api/v1/",
 "GET /api/v1/task/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/results",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000006/result/x",
 "GET /api/v1/system",
 "GET /api/v1/system/stats/x",
 "DELETE /api/v1/nope",
 "GET /api/v1/Tasks"]
--- more_headers
X-User-Id: alice
--- error_code eval
[(404) x 10]
--- response_body eval
[('{"error":{"code":"not_found","message":"no such endpoint"}}') x 10]
--- no_error_log
[error]
[alert]



=== TEST 30: HEAD answers the headers of GET, without a body
--- post_setup_server_root
::seed_fixture();
--- request eval
["HEAD /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "HEAD /api/v1/tasks/01900000-0000-7000-8000-000000000006",
 "HEAD /api/v1/tasks",
 "HEAD /api/v1/system/stats",
 "HEAD /api/v1/tasks/01900000-0000-7000-8000-000000000004",
 "HEAD /api/v1/tasks/01900000-0000-7000-8000-000000000001/result"]
--- more_headers
X-User-Id: alice
--- error_code eval
[200, 200, 200, 200, 404, 409]
--- response_headers eval
["Content-Type: application/json\nContent-Length: 277",
 "Content-Type: application/json\nContent-Length: 427",
 "Content-Type: application/json",
 "Content-Type: application/json",
 "Content-Type: application/json",
 "Content-Type: application/json"]
--- response_body eval
["", "", "", "", "", ""]
--- no_error_log
[error]
[alert]



=== TEST 31: system/stats counts the seeded tasks of every status at start
--- post_setup_server_root
::seed_fixture();
--- request
GET /api/v1/system/stats
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"uptime_seconds":\d+,"tasks":\{"QUEUED":7,"RUNNING":0,"DONE":2,"FAILED":1,"CANCELED":1\},"queue":\{"depth":7,"capacity":1000,"kinds":\{"image":5,"speech":2\}\},"workers":\{"busy":0,"total":0\},"backends":\[.*\]\}$
--- no_error_log
[error]
[alert]



=== TEST 32: a task that was RUNNING when nginx stopped is QUEUED again at start
--- skip_eval: 3: AsyncTaskTest::on_postgresql()
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(),
    ::task(0x41, kind => 'image', status => 'RUNNING', user => 'alice',
                 started_at => $::T0 + 60000, attempts => 1,
                 backend => 'gpu_image/127.0.0.1:9',
                 lease_owner => 'node/1', lease_expires => $::T0 + 90000),
    ::task(0x42, kind => 'image', status => 'QUEUED', user => 'alice'),
    ::task(0x43, kind => 'speech', status => 'DONE', user => 'alice',
                 params => $::SPEECH, result => '{"text":"a"}',
                 started_at => $::T0 + 60000, finished_at => $::T0 + 70000),
    ::task(0x44, kind => 'speech', status => 'DONE', user => 'alice',
                 params => $::SPEECH, result => '{"text":"b"}',
                 started_at => $::T0 + 60000, finished_at => $::T0 + 70000),
    ::task(0x45, kind => 'image', status => 'FAILED', user => 'alice',
                 error => '{"code":"bad_response","message":"x"}',
                 started_at => $::T0 + 60000, finished_at => $::T0 + 70000),
    ::task(0x46, kind => 'image', status => 'CANCELED',
                 finished_at => $::T0 + 70000));
--- request eval
["GET /api/v1/system/stats",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000041",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000042"]
--- more_headers
X-User-Id: alice
--- error_code eval
[200, 200, 200]
--- response_body eval
[qr/^\{"uptime_seconds":\d+,"tasks":\{"QUEUED":2,"RUNNING":0,"DONE":2,"FAILED":1,"CANCELED":1\},"queue":\{"depth":2,"capacity":1000,"kinds":\{"image":2,"speech":0\}\},/,
 '{"id":"01900000-0000-7000-8000-000000000041","kind":"image","status":"QUEUED","user":"alice","priority":5,"position":0,"params":{"prompt":"t41"},"created_at":"2025-11-29T09:54:25.123Z","started_at":null,"finished_at":null,"attempts":1,"backend":null,"result":null,"error":null}',
 '{"id":"01900000-0000-7000-8000-000000000042","kind":"image","status":"QUEUED","user":"alice","priority":5,"position":1,"params":{"prompt":"t42"},"created_at":"2025-11-29T09:54:26.123Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null}']
--- no_error_log
[error]
[alert]
