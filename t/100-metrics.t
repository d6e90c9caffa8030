# async_task_metrics: the Prometheus exposition, checked by promtool
# (Debian's prometheus package), with the values that tasks leave; the
# sums over two worker processes and across a reload.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

master_on();
workers(2);

run_tests();

# the exposition's samples: "name{labels}" => value
sub samples {
    my ($text) = @_;
    my %s;
    for (split /\n/, $text) {
        next if /^#/ || !length;
        my ($series, $value) = /^(\S+(?:\{.*\})?) (\S+)$/ or die "bad line: $_";
        $s{$series} = $value;
    }
    return \%s;
}

# "promtool check metrics" on a text: its output, and its exit status
sub promtool {
    my ($text) = @_;
    my $file = AsyncTaskTest::servroot() . '/html/metrics.txt';
    open my $fh, '>', $file or die $!;
    print $fh $text;
    close $fh;
    my $out = `promtool check metrics < $file 2>&1`;
    return ($out, $? >> 8);
}

sub pcm { join '', map { pack 's<', $_ } 1 .. 800 }

__DATA__

=== TEST 1: tasks of every ending leave their figures, and promtool finds nothing to say
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=2;
    async_task_backend image gpu_image retries=0;
    async_task_backend speech gpu_speech;
    upstream gpu_image { server 127.0.0.1:19301 max_conns=2; }
    upstream gpu_speech { server 127.0.0.1:9 down; }
--- config
    location /api/v1/ {
        async_task_api;
    }
    location = /metrics {
        async_task_metrics;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19301, kind => 'image', latency => 0.2);
--- init
use Test::More;
my $json = {'Content-Type' => 'application/json'};

# two DONE, one FAILED (the instance answers 400: backend_rejected)
my @ids = map { AsyncTaskTest::submit("fox $_") } 1 .. 2;
AsyncTaskTest::wait_task($_, ['DONE', 'FAILED']) for @ids;
AsyncTaskTest::fake_control(19301, mode => 'error400', times => 1);
my $bad = AsyncTaskTest::submit('refused');
is(AsyncTaskTest::wait_task($bad, ['DONE', 'FAILED'])->{status}, 'FAILED',
   'the refused task FAILED');

# an invalid image submission
my ($s) = AsyncTaskTest::api('POST', 'image/async', headers => $json,
                             body => '{"prompt": ""}');
is($s, 400, 'invalid submission');

# speech stays queued (its instance is down): two fill the queue, the
# third finds it full, one is canceled
my @speech;
for (1 .. 3) {
    my ($st, $t) = AsyncTaskTest::api('POST', 'speech/pcm',
        headers => {'Content-Type' => 'application/octet-stream'},
        body => main::pcm());
    push @speech, $st == 202 ? $t->{id} : $st;
}
is($speech[2], 429, 'the third finds the queue full');
($s) = AsyncTaskTest::api('DELETE', "tasks/$speech[0]");
is($s, 200, 'one canceled');

# a refusal is counted when its request ends, as its access log line is
# written: after a lingering close, a moment after the client has its
# answer
my ($ms, $h, $text);
for (1 .. 100) {
    ($ms, $h, $text) = AsyncTaskTest::http('GET', '/metrics');
    last if $text =~ /^async_task_rejected_total\{kind="image",reason="invalid"\} 1$/m
            && $text =~ /^async_task_rejected_total\{kind="speech",reason="queue_full"\} 1$/m;
    Time::HiRes::sleep(0.05);
}
is($ms, 200, 'metrics served');
is($h->{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   'the text format 0.0.4');

my ($out, $rc) = main::promtool($text);
is($rc, 0, 'promtool check metrics passes');
is($out, '', 'promtool has no lint remark');

my $m = main::samples($text);
my $image = 'kind="image",upstream="gpu_image",server="127.0.0.1:19301"';
my $speech = 'kind="speech",upstream="gpu_speech",server="127.0.0.1:9"';
my %want = (
    'async_task_submitted_total{kind="image"}' => 3,
    'async_task_submitted_total{kind="speech"}' => 2,
    'async_task_rejected_total{kind="image",reason="invalid"}' => 1,
    'async_task_rejected_total{kind="image",reason="queue_full"}' => 0,
    'async_task_rejected_total{kind="speech",reason="queue_full"}' => 1,
    'async_task_rejected_total{kind="speech",reason="unavailable"}' => 0,
    'async_task_finished_total{kind="image",status="DONE",error=""}' => 2,
    'async_task_finished_total{kind="image",status="FAILED",error="backend_rejected"}' => 1,
    'async_task_finished_total{kind="image",status="FAILED",error="timeout"}' => 0,
    'async_task_finished_total{kind="speech",status="CANCELED",error=""}' => 1,
    "async_task_attempts_total{$image,outcome=\"done\"}" => 2,
    "async_task_attempts_total{$image,outcome=\"failed\"}" => 1,
    "async_task_attempts_total{$image,outcome=\"error\"}" => 0,
    "async_task_attempts_total{$speech,outcome=\"done\"}" => 0,
    'async_task_queue_depth{kind="image"}' => 0,
    'async_task_queue_depth{kind="speech"}' => 1,
    'async_task_queue_capacity' => 2,
    'async_task_running{kind="image"}' => 0,
    'async_task_queue_wait_seconds_count{kind="image"}' => 3,
    'async_task_queue_wait_seconds_bucket{kind="image",le="+Inf"}' => 3,
    'async_task_queue_wait_seconds_count{kind="speech"}' => 0,
    "async_task_run_seconds_count{$image}" => 3,
    "async_task_run_seconds_bucket{$image,le=\"0.1\"}" => 1,
    "async_task_run_seconds_bucket{$image,le=\"1\"}" => 3,
    "async_task_run_seconds_bucket{$image,le=\"+Inf\"}" => 3,
    "async_task_instance_up{$image}" => 1,
    "async_task_instance_up{$speech}" => 0,
    "async_task_instance_inflight{$image}" => 0,
    "async_task_instance_max_conns{$image}" => 2,
    "async_task_instance_max_conns{$speech}" => 1,
    'async_task_store_errors_total' => 0,
);
for my $k (sort keys %want) {
    is($m->{$k}, $want{$k}, $k);
}

# the two DONE runs took the fake's 0.2 s, the refused one next to nothing
cmp_ok($m->{"async_task_run_seconds_sum{$image}"}, '>=', 0.4, 'run time sum');
like($m->{"async_task_run_seconds_sum{$image}"}, qr/^\d+\.\d{3}$/,
     'seconds with milliseconds');
# submissions, claims and outcomes went through group commits
cmp_ok($m->{'async_task_store_batch_size_count'}, '>=', 1, 'batches');
cmp_ok($m->{'async_task_store_batch_size_sum'}, '>=', 9,
       'at least the 5 inserts, 3 claims... in them');
is($m->{'async_task_store_commit_seconds_count'},
   $m->{'async_task_store_batch_size_count'}, 'a commit time per batch');
is($m->{'async_task_store_commit_seconds_bucket{le="+Inf"}'},
   $m->{'async_task_store_commit_seconds_count'}, '+Inf is the count');

# every family the issue names is there, with its type
my %types = $text =~ /^# TYPE (\S+) (\S+)$/mg;
is_deeply(\%types, {
    async_task_submitted_total => 'counter',
    async_task_rejected_total => 'counter',
    async_task_finished_total => 'counter',
    async_task_attempts_total => 'counter',
    async_task_queue_depth => 'gauge',
    async_task_queue_capacity => 'gauge',
    async_task_running => 'gauge',
    async_task_queue_wait_seconds => 'histogram',
    async_task_run_seconds => 'histogram',
    async_task_instance_up => 'gauge',
    async_task_instance_inflight => 'gauge',
    async_task_instance_max_conns => 'gauge',
    async_task_store_commit_seconds => 'histogram',
    async_task_store_batch_size => 'histogram',
    async_task_store_errors_total => 'counter',
}, 'the families and their types');
--- request
GET /metrics
--- response_body_like: ^# HELP async_task_submitted_total
--- no_error_log
[error]
[alert]



=== TEST 2: OpenMetrics when the scraper asks for it
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=2;
    async_task_backend image gpu_image retries=0;
    async_task_backend speech gpu_speech;
    upstream gpu_image { server 127.0.0.1:19301 max_conns=2; }
    upstream gpu_speech { server 127.0.0.1:9 down; }
--- config
    location /api/v1/ {
        async_task_api;
    }
    location = /metrics {
        async_task_metrics;
    }
--- init
AsyncTaskTest::submit('one');
--- more_headers
Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1
--- request
GET /metrics
--- response_headers
Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8
--- response_body_like eval
qr/^# HELP async_task_submitted Tasks accepted.*\n# TYPE async_task_submitted counter\nasync_task_submitted_total\{kind="image"\} 1\n.*# TYPE async_task_queue_depth gauge\n.*\n# EOF\n\z/s
--- no_error_log
[error]
[alert]



=== TEST 3: HEAD has the headers; other methods are not allowed
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=2;
    async_task_backend image gpu_image retries=0;
    async_task_backend speech gpu_speech;
    upstream gpu_image { server 127.0.0.1:19301 max_conns=2; }
    upstream gpu_speech { server 127.0.0.1:9 down; }
--- config
    location /api/v1/ {
        async_task_api;
    }
    location = /metrics {
        async_task_metrics;
    }
--- init
my ($s, $h, $body) = AsyncTaskTest::http('HEAD', '/metrics');
Test::More::is($s, 200, 'HEAD 200');
Test::More::is($h->{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8', 'type');
Test::More::is($body, '', 'no body');
--- request
POST /metrics
x
--- error_code: 405
--- no_error_log
[error]
[alert]



=== TEST 4: async_task_metrics needs a store
--- http_config
--- config
    location = /metrics { async_task_metrics; }
--- must_die
--- error_log eval
qr/"async_task_metrics" requires "async_task_store" in \S+:\d+/



=== TEST 5: async_task_metrics twice in a location
--- http_config
    async_task_store @STORE@/tasks.db;
--- config
    location = /metrics { async_task_metrics; async_task_metrics; }
--- must_die
--- error_log
"async_task_metrics" directive is duplicate



=== TEST 6: two workers count into one sum, and a reload keeps it
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=100;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
    log_format pid '$pid';
--- config
    location /api/v1/ {
        async_task_api;
        access_log logs/pids.log pid;
    }
    location = /metrics {
        async_task_metrics;
    }
--- init
use Test::More;
my $json = {'Content-Type' => 'application/json'};
my $submit = sub {
    my ($n) = @_;
    for (1 .. $n) {
        AsyncTaskTest::api('POST', 'image/async', headers => $json,
                           body => '{"prompt": "p"}');
        AsyncTaskTest::api('POST', 'image/async', headers => $json,
                           body => '{"prompt": 1}');
    }
};
my $metric = sub {
    my (undef, undef, $text) = AsyncTaskTest::http('GET', '/metrics');
    return main::samples($text);
};

my $until = sub {
    my ($invalid) = @_;
    my $m;
    # a request is counted when it ends, as its access log line is
    # written: after a lingering close, a moment after the client has
    # its answer
    for (1 .. 100) {
        $m = $metric->();
        last if $m->{'async_task_rejected_total{kind="image",reason="invalid"}'}
                == $invalid;
        Time::HiRes::sleep(0.05);
    }
    return $m;
};

$submit->(20);
$until->(20);
open my $log, '<', AsyncTaskTest::servroot() . '/logs/pids.log' or die;
my %pids = map { chomp; $_ => 1 } <$log>;
is(scalar keys %pids, 2, 'both workers took submissions');

# asked of each worker in turn, the sums are the same
my %seen;
for (1 .. 10) {
    my $m = $metric->();
    $seen{"$m->{'async_task_submitted_total{kind=\"image\"}'} "
          . "$m->{'async_task_rejected_total{kind=\"image\",reason=\"invalid\"}'}"} = 1;
}
is_deeply([keys %seen], ['20 20'], 'every answer has the sums of both');

my $root = AsyncTaskTest::servroot();
my $master = `cat $root/logs/nginx.pid`;
chomp $master;
my @old = split ' ', `pgrep -P $master`;
kill 'HUP', $master;
for (1 .. 500) {
    my @now = split ' ', `pgrep -P $master`;
    my %old = map { $_ => 1 } @old;
    last if @now == 2 && !grep { $old{$_} } @now;
    Time::HiRes::sleep(0.02);
}

my $m = $metric->();
is($m->{'async_task_submitted_total{kind="image"}'}, 20, 'kept by the reload');
$submit->(5);
$m = $until->(25);
is($m->{'async_task_submitted_total{kind="image"}'}, 25, 'and counted on');
is($m->{'async_task_rejected_total{kind="image",reason="invalid"}'}, 25,
   'rejections too');
is($m->{'async_task_queue_depth{kind="image"}'}, 25, 'the queue');
--- request
GET /metrics
--- response_body_like: async_task_queue_capacity 100\n
--- no_error_log
[error]
[alert]
