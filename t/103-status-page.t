# The status page (async_task_status_page): served from the module with no
# file, a policy that allows nothing from elsewhere, and, in headless
# Chromium (tools/status_page_probe.js), the gateway's figures drawn from
# system/stats, whatever that endpoint sends.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

use IPC::Open2 ();
use JSON::PP ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);

our $Probe = abs_path(dirname(__FILE__) . '/../tools/status_page_probe.js');

# loads a page in Chromium: the probe's report, decoded; with "between",
# that code runs once the page has read the figures, and the report is
# taken after two more reads
sub probe {
    my ($path, %opt) = @_;

    my $url = 'http://127.0.0.1:' . AsyncTaskTest::port() . $path;
    my @cmd = ('node', $Probe, $url, '--refreshes', $opt{refreshes} // 2);
    push @cmd, '--screenshot', $opt{screenshot} if $opt{screenshot};
    push @cmd, '--wait-line', '--after', 2 if $opt{between};
    push @cmd, '--until-error' if $opt{error};

    my $pid = IPC::Open2::open2(my $out, my $in, @cmd);

    if ($opt{between}) {
        my $line = <$out>;
        die "the probe did not get ready" unless defined $line
                                                 && $line eq "ready\n";
        $opt{between}->();
        print $in "go\n";
    }
    close $in;

    local $/;
    my $report = <$out>;
    waitpid($pid, 0);
    die "the probe failed ($?)" if $? || !$report;

    return JSON::PP::decode_json($report);
}

our $Probe_sub = \&probe;

master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: the page is served from the module, with the address of the figures
--- config
    location /api/v1/ {
        async_task_api;
    }
    location = /status {
        async_task_status_page /api/v1/system/stats;
    }
--- request
GET /status
--- response_headers
Content-Type: text/html; charset=utf-8
Cache-Control: no-cache
X-Content-Type-Options: nosniff
Referrer-Policy: no-referrer
Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'
--- response_body_like chop
\A<!DOCTYPE html>\n.*<meta name="async-task-stats" content="/api/v1/system/stats">.*</html>\n\z
--- no_error_log
[error]
[alert]



=== TEST 2: no argument: system/stats beside the page; the address is escaped for HTML
--- config
    location /api/v1/ {
        async_task_api;
    }
    location = /api/v1/status {
        async_task_status_page;
    }
    location = /other {
        async_task_status_page "/x?a=1&b=<\"'>";
    }
--- request eval
["GET /api/v1/status", "GET /other"]
--- response_body_like eval
[qr{<meta name="async-task-stats" content="system/stats">},
 qr{<meta name="async-task-stats" content="/x\?a=1&amp;b=&lt;&quot;&#39;&gt;">}]
--- no_error_log
[error]
[alert]



=== TEST 3: HEAD has the headers only; other methods answer 405 with Allow
--- config
    location = /status {
        async_task_status_page /api/v1/system/stats;
    }
--- request eval
["HEAD /status", "POST /status\nx", "DELETE /status"]
--- error_code eval
[200, 405, 405]
--- response_headers_like eval
["Content-Length: \\d{4,}", "Allow: GET, HEAD", "Allow: GET, HEAD"]
--- response_body_like eval
["^\$", "405 Not Allowed", "405 Not Allowed"]
--- no_error_log
[error]
[alert]



=== TEST 4: the figures must come from this server
--- config
    location = /status {
        async_task_status_page http://example.com/api/v1/system/stats;
    }
--- must_die
--- error_log
the address of system/stats "http://example.com/api/v1/system/stats" must be a path on this server



=== TEST 5: a host without a scheme is refused too
--- config
    location = /status {
        async_task_status_page //example.com/stats;
    }
--- must_die
--- error_log
the address of system/stats "//example.com/stats" must be a path on this server



=== TEST 6: duplicate
--- config
    location = /status {
        async_task_status_page;
        async_task_status_page;
    }
--- must_die
--- error_log
"async_task_status_page" directive is duplicate



=== TEST 7: a blank or a control character in the address
--- config
    location = /status {
        async_task_status_page "/api/v1/system/stats x";
    }
--- must_die
--- error_log
invalid address of system/stats "/api/v1/system/stats x"



=== TEST 8: an empty address
--- config
    location = /status {
        async_task_status_page "";
    }
--- must_die
--- error_log
the address of system/stats is empty



=== TEST 9: Chromium draws the instances, their load and failures, the queue and the counts
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=50;
    async_task_backend image gpu_image retries=0;
    async_task_backend speech gpu_speech;

    upstream gpu_image {
        server 127.0.0.1:19331 max_conns=2;
        server 127.0.0.1:9 down;
    }

    upstream gpu_speech {
        server 127.0.0.1:19332;
    }
--- config
    location /api/v1/ {
        async_task_api;
    }
    location = /status {
        async_task_status_page /api/v1/system/stats;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19331, kind => 'image');
AsyncTaskTest::fake_gpu(port => 19332, kind => 'speech', latency => 30);
--- init
my $pcm = sub {
    my ($s, $t) = AsyncTaskTest::api('POST', 'speech/pcm',
        headers => {'Content-Type' => 'application/octet-stream'},
        body => "\0" x 3200);
    return $t->{id};
};
my $image = sub {
    my $id = AsyncTaskTest::submit(@_);
    return AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
};

# two images done, one speech task running for 30 s, two queued behind it
$image->("first")->{status} eq 'DONE' or die "not DONE";
$image->("second")->{status} eq 'DONE' or die "not DONE";
my @speech = map { $pcm->() } 1 .. 3;
AsyncTaskTest::wait_task($speech[0], ['RUNNING']);

# beside the server root, which the next block makes anew
my $shot = File::Basename::dirname(AsyncTaskTest::servroot())
           . '/status-page.png';
unlink $shot;

my $r = $main::Probe_sub->('/status', screenshot => $shot, between => sub {
    # a failure while the page is open: "recent failures"
    AsyncTaskTest::fake_control(19331, mode => 'error400', times => 1);
    my $t = $image->("third");
    $t->{status} eq 'FAILED' or die "not FAILED";
});

Test::More::is_deeply($r->{problems}, [], 'no script or console errors');
Test::More::ok(!$r->{error_shown}, 'no error shown');
Test::More::cmp_ok($r->{refreshes}, '>=', 4, 'the page read the figures again');

Test::More::is($r->{ids}{'queue-depth'}, '2', 'queue depth');
Test::More::is($r->{ids}{'queue-capacity'}, '50', 'queue capacity');
Test::More::is($r->{ids}{'workers-busy'}, '1', 'running');
Test::More::is($r->{ids}{'workers-total'}, '3', 'task slots of the healthy instances');
Test::More::is_deeply($r->{counts},
    {QUEUED => 2, RUNNING => 1, DONE => 2, FAILED => 1, CANCELED => 0},
    'counts by status');

my %row = map { $_->{'data-server'} => $_ } @{ $r->{instances} };
Test::More::is(scalar @{ $r->{instances} }, 3, 'three instance rows');
Test::More::is_deeply([map { $_->{'data-server'} } @{ $r->{instances} }],
    ['127.0.0.1:19331', '127.0.0.1:9', '127.0.0.1:19332'],
    'in configuration order');

my $img = $row{'127.0.0.1:19331'};
Test::More::is($img->{kind}, 'image', 'kind');
Test::More::is($img->{upstream}, 'gpu_image', 'upstream');
Test::More::is($img->{health}, 'up', 'healthy');
Test::More::is("$img->{inflight}/$img->{max_conns}", '0/2', 'inflight/max_conns');
Test::More::is($img->{requests}, '3', 'requests');
Test::More::is($img->{failures}, '1', 'failures');
Test::More::is($img->{recent}, '1', 'the failure while the page was open is recent');

my $down = $row{'127.0.0.1:9'};
Test::More::is($down->{health}, 'down', 'the down server is down');
Test::More::is($down->{recent}, '0', 'no recent failures');

my $sp = $row{'127.0.0.1:19332'};
Test::More::is($sp->{kind}, 'speech', 'speech kind');
Test::More::is("$sp->{inflight}/$sp->{max_conns}", '1/1', 'running one of one');
Test::More::is($sp->{last_check}, 'never', 'no health checks');

my %kind = map { $_->{'data-kind'} => $_ } @{ $r->{kinds} };
Test::More::is_deeply([sort keys %kind], ['image', 'speech'], 'a row per kind');
Test::More::is($kind{image}{up}, '1 / 2', 'image instances up');
Test::More::is($kind{speech}{running}, '1 / 1', 'speech running / slots');
Test::More::cmp_ok($kind{speech}{samples}, '>=', 4, 'the sparkline has a history');

my %queued = map { $_->{'data-kind'} => $_ } @{ $r->{queue_kinds} };
Test::More::is_deeply([map { $_->{'data-kind'} } @{ $r->{queue_kinds} }],
    ['image', 'speech'], 'a queue row per kind');
Test::More::is($queued{image}{depth}, '0', 'no image task queued');
Test::More::is($queued{speech}{depth}, '2', 'two speech tasks queued');
Test::More::is($queued{speech}{meter}, '4%', 'of the capacity of 50');
Test::More::cmp_ok($queued{speech}{samples}, '>=', 4,
                   'the queue of a kind has a history');
Test::More::is($r->{sparklines}, 6,
               'queue, slots, and the running and queued of each kind');

Test::More::ok(-s $shot, 'a screenshot');

AsyncTaskTest::api('DELETE', "tasks/$_") for @speech;
--- request
GET /api/v1/system/stats
--- response_body_like: "CANCELED":3
--- no_error_log
[alert]



=== TEST 10: hostile figures: strings stay text, wrong types show "?", nothing runs
--- config
    location = /status {
        async_task_status_page /evil/stats;
    }
    location = /evil/stats {
        default_type application/json;
        return 200 '{"uptime_seconds":"<b>1</b>","tasks":{"QUEUED":"7","DONE":-1,"FAILED":1e999,"__proto__":{"x":1},"RUNNING":3},"queue":{"depth":"<img src=x onerror=window.injected=1>","capacity":50,"kinds":{"<img src=x onerror=window.injected=1>":3,"__proto__":{"x":1},"constructor":"5","x":-1,"y":1e999,"z":60}},"workers":null,"backends":[null,7,{"kind":"<img src=x onerror=window.injected=1>","upstream":"\\"><script>window.injected=1</script>","server":"</td><svg onload=window.injected=1>","healthy":"true","inflight":"1","max_conns":{"valueOf":2},"requests":5,"failures":2,"last_check":"<iframe src=javascript:window.injected=1>"},{"kind":"constructor","upstream":"u","server":"__proto__","healthy":true,"inflight":1,"max_conns":1,"requests":0,"failures":0,"last_check":null}]}';
    }
--- init
my $r = $main::Probe_sub->('/status');

Test::More::is_deeply($r->{problems}, [], 'no script or console errors');
Test::More::ok(!$r->{injected}, 'no injected code ran');
Test::More::is($r->{title}, 'async task gateway', 'title unchanged');
my %el = map { $_ => 1 } @{ $r->{elements} };
Test::More::ok(!$el{$_}, "no <$_> element") for qw(img iframe b);
Test::More::is($r->{scripts}, 1, 'only the page\'s own script');

Test::More::is(scalar @{ $r->{instances} }, 2, 'rows for the two objects');
my $i = $r->{instances}[0];
Test::More::is($i->{kind}, '<img src=x onerror=window.injected=1>', 'kind as text');
Test::More::is($i->{upstream}, '"><script>window.injected=1</script>', 'upstream as text');
Test::More::is($i->{server}, '</td><svg onload=window.injected=1>', 'server as text');
Test::More::is($i->{'data-server'}, '</td><svg onload=window.injected=1>', 'attribute as given');
Test::More::is($i->{health}, 'down', 'a string "true" is not healthy');
Test::More::is("$i->{inflight}/$i->{max_conns}", '?/?', 'non-numbers show ?');
Test::More::is($i->{last_check}, '<iframe src=javascript:window.injected=1>', 'last_check as text');
Test::More::is($r->{instances}[1]{'data-server'}, '__proto__', 'a key like __proto__ is a row');

Test::More::is($r->{ids}{'queue-depth'}, '?', 'a string depth shows ?');
Test::More::is($r->{ids}{uptime}, '?', 'a string uptime shows ?');
Test::More::is($r->{ids}{'workers-busy'}, '?', 'null workers show ?');
Test::More::is_deeply($r->{counts},
    {QUEUED => '?', RUNNING => 3, DONE => '?', FAILED => '?', CANCELED => '?'},
    'counts: only numbers >= 0');
Test::More::is_deeply([sort map { $_->{'data-kind'} } @{ $r->{kinds} }],
    ['<img src=x onerror=window.injected=1>', 'constructor'], 'kinds as text');
Test::More::is_deeply([map { [$_->{'data-kind'}, $_->{name}, $_->{depth}] }
                       @{ $r->{queue_kinds} }],
    [['<img src=x onerror=window.injected=1>',
      '<img src=x onerror=window.injected=1>', '3'],
     ['__proto__', '__proto__', '?'], ['constructor', 'constructor', '?'],
     ['x', 'x', '?'], ['y', 'y', '?'], ['z', 'z', '60']],
    'queued by kind: names as text, only numbers >= 0');
Test::More::is($r->{queue_kinds}[5]{meter}, '100%', 'a meter stops at full');
--- request
GET /status
--- no_error_log
[error]
[alert]



=== TEST 11: a stats endpoint that fails: the page says so and goes on
--- config
    location = /status {
        async_task_status_page /nothing/here;
    }
--- init
my $r = $main::Probe_sub->('/status', refreshes => 0, error => 1);
Test::More::ok($r->{error_shown}, 'an error is shown');
Test::More::is($r->{ids}{error}, 'system/stats answered 404', 'which one');
Test::More::is($r->{ids}{'queue-depth'}, '-', 'nothing drawn');
Test::More::is($r->{ids}{source}, '/nothing/here', 'where the page reads');
--- request
GET /status
--- no_error_log
[alert]
