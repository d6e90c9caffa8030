# SQLite's write-ahead log stays bounded: the writer checkpoints it once it
# holds about 4 MB, so that the log starts over, and an idle worker cuts it
# back to nothing.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(:sqlite_only);
use Time::HiRes ();

master_on();
workers(1);

run_tests();

__DATA__

=== TEST 1: a burst of submissions: the log stays small, and is empty after idle
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:8m
                     thread_pool=async_task max_queued=10000;
    async_task_backend image gpu_image;
    upstream gpu_image {
        server 127.0.0.1:9 down;
    }
--- init
my $wal = AsyncTaskTest::store_db($block) . '-wal';
my ($peak, $accepted) = (0, 0);
for my $i (1 .. 3000) {
    $accepted++ if AsyncTaskTest::submit("wal $i");
    if ($i % 50 == 0) {
        my $size = -s $wal // 0;
        $peak = $size if $size > $peak;
    }
}
Test::More::is($accepted, 3000, '3000 tasks accepted');
Test::More::cmp_ok($peak, '<', 12 * 1024 * 1024,
                   "the log stayed under 12 MB (peak $peak bytes)");
my $size;
for (1 .. 50) {
    $size = -s $wal // 0;
    last if $size == 0;
    Time::HiRes::sleep(0.1);
}
Test::More::is($size, 0, 'the log is cut back to nothing after idle');
my $stats = AsyncTaskTest::stats();
Test::More::is($stats->{tasks}{QUEUED}, 3000, 'all 3000 queued');
--- request
GET /api/v1/system/stats
--- response_body_like: "QUEUED":3000
--- no_error_log
[error]
[alert]
