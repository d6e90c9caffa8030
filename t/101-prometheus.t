# A real Prometheus server (Debian's prometheus package) scrapes
# async_task_metrics every second: its query API returns what the tasks
# left, its target is up with no scrape error, it took OpenMetrics, the
# alerting rules of docs/metrics.md load and evaluate, and a reload of
# nginx is no counter reset to it.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

use FindBin ();

master_on();
workers(2);

our $prom_port = 19390;
our $prom_pid;

# an instant query: the value of each series, "" when there is none
sub query {
    my ($q) = @_;
    require JSON::PP;
    require URI::Escape;
    my (undef, undef, $body) = AsyncTaskTest::http('GET',
        '/api/v1/query?query=' . URI::Escape::uri_escape($q),
        port => $prom_port);
    my $r = JSON::PP::decode_json($body);
    die "query $q: $body" unless $r->{status} eq 'success';
    return join ' ', map { $_->{value}[1] } @{ $r->{data}{result} };
}

sub prom_api {
    my ($path) = @_;
    require JSON::PP;
    my (undef, undef, $body) = AsyncTaskTest::http('GET', $path,
                                                   port => $prom_port);
    return JSON::PP::decode_json($body)->{data};
}

# polls a query until it returns the value (30 s at most)
sub until_value {
    my ($q, $want) = @_;
    my $got = '';
    for (1 .. 300) {
        $got = eval { query($q) } // '';
        return $got if $got eq $want;
        Time::HiRes::sleep(0.1);
    }
    return $got;
}

# the YAML block under "## Example alerting rules" in docs/metrics.md
sub doc_rules {
    my $doc = "$FindBin::Bin/../docs/metrics.md";
    open my $fh, '<', $doc or die "$doc: $!";
    local $/;
    my $text = <$fh>;
    my ($rules) = $text =~ /^## Example alerting rules\n.*?^```yaml\n(.*?)^```$/ms
        or die "no rules in $doc";
    return $rules;
}

sub prom_dir {
    my $dir = AsyncTaskTest::servroot() . '/html/prometheus';
    mkdir $dir;
    return $dir;
}

sub write_rules {
    my $file = prom_dir() . '/rules.yml';
    open my $fh, '>', $file or die $!;
    print $fh doc_rules();
    close $fh;
    return $file;
}

sub start_prometheus {
    my $dir = prom_dir();
    my $port = AsyncTaskTest::port();

    open my $fh, '>', "$dir/prometheus.yml" or die $!;
    print $fh <<"EOF";
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $dir/rules.yml
scrape_configs:
  - job_name: gateway
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
    close $fh;

    $prom_pid = fork();
    die "fork: $!" unless defined $prom_pid;
    if ($prom_pid == 0) {
        open STDOUT, '>', "$dir/prometheus.log";
        open STDERR, '>&', \*STDOUT;
        exec 'prometheus', "--config.file=$dir/prometheus.yml",
             "--storage.tsdb.path=$dir/data",
             "--web.listen-address=127.0.0.1:$prom_port"
            or POSIX::_exit(127);
    }

    for (1 .. 300) {
        my $ok = eval {
            my ($s) = AsyncTaskTest::http('GET', '/-/ready', port => $prom_port);
            $s == 200;
        };
        return if $ok;
        Time::HiRes::sleep(0.1);
    }
    die "prometheus did not get ready";
}

END {
    if ($prom_pid) {
        kill 'TERM', $prom_pid;
        waitpid($prom_pid, 0);
    }
}

run_tests();

__DATA__

=== TEST 1: Prometheus scrapes the gateway and its query API has the tasks' figures
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=5;
    async_task_backend image gpu_image retries=0;
    async_task_backend speech gpu_speech;
    upstream gpu_image { server 127.0.0.1:19311 max_conns=2; }
    upstream gpu_speech { server 127.0.0.1:9 down; }
    log_format scrape '$http_user_agent|$sent_http_content_type';
--- config
    location /api/v1/ {
        async_task_api;
    }
    location = /metrics {
        async_task_metrics;
        access_log logs/scrapes.log scrape;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19311, kind => 'image', latency => 0.3);
--- init
use Test::More;

my $rules = main::write_rules();
my $out = `promtool check rules $rules 2>&1`;
is($?, 0, 'promtool check rules passes on the documented rules')
    or diag($out);

main::start_prometheus();

# from its first scrape on, Prometheus sees every counter move
is(main::until_value('up{job="gateway"}', '1'), '1', 'the first scrape');

# three DONE, one FAILED (backend_rejected), one invalid submission
my @ids = map { AsyncTaskTest::submit("fox $_") } 1 .. 3;
AsyncTaskTest::wait_task($_, ['DONE', 'FAILED']) for @ids;
AsyncTaskTest::fake_control(19311, mode => 'error400', times => 1);
AsyncTaskTest::wait_task(AsyncTaskTest::submit('refused'), ['FAILED']);
AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'}, body => '{}');

# speech waits for an instance that is down: five fill the queue, a
# sixth finds it full
my @speech;
for (1 .. 6) {
    my ($s, $t) = AsyncTaskTest::api('POST', 'speech/pcm',
        headers => {'Content-Type' => 'application/octet-stream'},
        body => 'abcdabcd');
    push @speech, $t->{id} if $s == 202;
}

is(main::until_value('async_task_finished_total{kind="image",status="DONE"}', '3'),
   '3', 'three DONE');
is(main::until_value('async_task_rejected_total{kind="speech",reason="queue_full"}', '1'),
   '1', 'a full queue');
is(main::until_value('async_task_rejected_total{kind="image",reason="invalid"}', '1'),
   '1', 'an invalid submission');
is(main::query('async_task_finished_total{kind="image",status="FAILED",error="backend_rejected"}'),
   '1', 'one FAILED, backend_rejected');
is(main::query('sum by (kind) (async_task_submitted_total{kind="image"})'), '4',
   'four image tasks submitted');
is(main::query('async_task_submitted_total{kind="speech"}'), '5',
   'five speech tasks submitted');
is(main::query('async_task_queue_depth{kind="speech"} / ignoring(kind) async_task_queue_capacity'),
   '1', 'the speech queue full');
is(main::query('async_task_attempts_total{server="127.0.0.1:19311",outcome="done"}'),
   '3', 'three attempts done on the instance');
is(main::query('async_task_run_seconds_count{upstream="gpu_image"}'), '4',
   'four runs timed');
my $median = main::query('histogram_quantile(0.5, sum by (le) (async_task_run_seconds_bucket{upstream="gpu_image"}))');
ok($median > 0.25 && $median <= 0.5, "the median run in the 0.25..0.5 s bucket ($median)");
is(main::query('async_task_instance_up{upstream="gpu_image"}'), '1', 'the image instance up');
is(main::query('async_task_instance_up{upstream="gpu_speech"}'), '0', 'the speech instance down');
is(main::query('async_task_queue_wait_seconds_count{kind="image"}'), '4',
   'four waits in the queue');
ok(main::query('async_task_store_batch_size_count') >= 1, 'group commits seen');
is(main::query('async_task_store_errors_total'), '0', 'no store errors');
is(main::query('up{job="gateway"}'), '1', 'the target is up');

my $targets = main::prom_api('/api/v1/targets');
my ($t) = @{ $targets->{activeTargets} };
is($t->{health}, 'up', 'target health');
is($t->{lastError}, '', 'no scrape error');

# Prometheus asked for OpenMetrics, and got it
open my $log, '<', AsyncTaskTest::servroot() . '/logs/scrapes.log' or die;
my @scrapes = grep { /^Prometheus/ } <$log>;
ok(@scrapes >= 2, 'scraped more than once');
like($scrapes[-1], qr{\|application/openmetrics-text; version=1\.0\.0}, 'in OpenMetrics');

# the documented rules: loaded, evaluated, and the three kinds pending
my %state;
for (1 .. 100) {
    my $alerts = main::prom_api('/api/v1/alerts')->{alerts};
    %state = map { $_->{labels}{alertname} => $_->{state} } @$alerts;
    last if keys %state >= 3;
    Time::HiRes::sleep(0.1);
}
is($state{AsyncTaskQueueBackingUp}, 'pending', 'queue backing up: pending');
is($state{AsyncTaskInstanceDown}, 'pending', 'instance down: pending');
is($state{AsyncTaskFailureRatioHigh}, 'pending', 'failure ratio: pending');
my $groups = main::prom_api('/api/v1/rules')->{groups};
my @bad = grep { $_->{health} ne 'ok' } map { @{ $_->{rules} } } @$groups;
is(scalar @bad, 0, 'every rule evaluates') or diag(explain(\@bad));

# a reload of nginx is no counter reset (a canceled task makes room for
# one more)
AsyncTaskTest::api('DELETE', "tasks/$speech[0]");
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
AsyncTaskTest::wait_task(AsyncTaskTest::submit('after'), ['DONE']);
is(main::until_value('async_task_finished_total{kind="image",status="DONE"}', '4'),
   '4', 'counted on after the reload');
is(main::until_value('async_task_finished_total{kind="speech",status="CANCELED"}', '1'),
   '1', 'the cancel');
is(main::query('resets(async_task_submitted_total{kind="image"}[5m])'), '0',
   'no counter reset for Prometheus');
--- request
GET /metrics
--- response_body_like: async_task_queue_capacity 5\n
--- no_error_log
[error]
[alert]
