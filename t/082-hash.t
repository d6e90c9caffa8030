# user_hash spreads users evenly: the ring's points are MurmurHash2 of
# "host:port-N", which does not cluster as CRC32 did for some ports.
#
# Fake GPU instances: tools/fake_gpu.py, ports 24676, 56991 and 57352 (a
# layout where CRC32 gave one of three equal instances 58% of the ring).

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

master_on();
workers(2);

run_tests();


# a mirror of the module's ring (ngx_http_async_task_ring()), for checks
# that no single layout can make

sub mul32 {
    my ($a, $b) = @_;
    return (($a * ($b & 0xffff)) + ((($a * ($b >> 16)) & 0xffff) << 16))
           & 0xffffffff;
}

# nginx's ngx_murmur_hash2()
sub murmur2 {
    my @d = unpack 'C*', shift;
    my ($len, $i) = (scalar @d, 0);
    my $h = $len;

    while ($len - $i >= 4) {
        my $k = $d[$i] | ($d[$i + 1] << 8) | ($d[$i + 2] << 16)
                | ($d[$i + 3] << 24);
        $k = mul32($k, 0x5bd1e995);
        $k ^= $k >> 24;
        $k = mul32($k, 0x5bd1e995);
        $h = mul32($h, 0x5bd1e995);
        $h ^= $k;
        $i += 4;
    }

    my $r = $len - $i;
    $h ^= $d[$i + 2] << 16 if $r == 3;
    $h ^= $d[$i + 1] << 8 if $r >= 2;
    $h = mul32($h ^ $d[$i], 0x5bd1e995) if $r >= 1;

    $h ^= $h >> 13;
    $h = mul32($h, 0x5bd1e995);
    $h ^= $h >> 15;

    return $h;
}

# 160 points per instance of weight 1, sorted: [hash, index]
sub ring {
    my @points;
    for my $i (0 .. $#_) {
        push @points, [murmur2("$_[$i]-$_"), $i] for 0 .. 159;
    }
    return sort { $a->[0] <=> $b->[0] } @points;
}

# each instance's share of the ring: the arcs that end at its points
sub shares {
    my @points = ring(@_);
    my @share = (0) x @_;
    my $prev = $points[-1][0] - 2 ** 32;
    for my $p (@points) {
        $share[$p->[1]] += ($p->[0] - $prev) / 2 ** 32;
        $prev = $p->[0];
    }
    return @share;
}

sub pick {
    my ($user, @servers) = @_;
    my @points = ring(@servers);
    my $h = murmur2($user);
    for my $p (@points) {
        return $p->[1] if $p->[0] >= $h;
    }
    return $points[0][1];
}

__DATA__

=== TEST 1: three equal instances each get a fair part of 300 users
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=1000;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:57352 max_conns=100;
        server 127.0.0.1:24676 max_conns=100;
        server 127.0.0.1:56991 max_conns=100;
        async_task_balance user_hash;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image') for 57352, 24676, 56991;
--- init
my @servers = map { "127.0.0.1:$_" } 57352, 24676, 56991;
my @ids;
for my $u (1 .. 300) {
    my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json',
                    'X-User-Id' => "user$u"},
        body => qq({"prompt": "hash $u"}));
    push @ids, [$u, $t->{id}];
}
my (%on, $mirror);
$mirror = 0;
for (@ids) {
    my $t = AsyncTaskTest::wait_task($_->[1], ['DONE'],
                                     headers => {'X-User-Id' => "user$_->[0]"});
    $on{$t->{backend}}++;
    $mirror++ if $t->{backend} eq "gpu/" . $servers[main::pick("user$_->[0]", @servers)];
}
for my $s (@servers) {
    my $n = $on{"gpu/$s"} // 0;
    Test::More::cmp_ok($n, '>=', 75, "$s: at least a quarter of the users ($n)");
    Test::More::cmp_ok($n, '<=', 126, "$s: at most 42% of the users ($n)");
}
Test::More::is($mirror, 300, 'the test\'s mirror of the ring picks as nginx does');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":300
--- no_error_log
[error]
[alert]



=== TEST 2: over 100 random layouts of three equal instances, no instance holds 45% of the ring
--- init
my ($worst, $layout) = (0, '');
for (1 .. 100) {
    my @servers = map { "127.0.0.1:" . (1024 + int rand 64000) } 1 .. 3;
    my ($max) = sort { $b <=> $a } main::shares(@servers);
    ($worst, $layout) = ($max, "@servers") if $max > $worst;
}
Test::More::cmp_ok($worst, '<', 0.45, "largest ring share $worst ($layout)");
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]
