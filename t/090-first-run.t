# The first command a new user runs: `./build.sh run` from a checkout in a
# 0700 directory (a home directory, root's included), two tasks to DONE
# with curl, then Ctrl-C: SIGINT to the process group, and nothing of ours
# is left running.
#
# A plain Test::More driver (no Test::Nginx blocks), so that it runs the
# same under the real Test::Nginx. The copy leaves out build/, run/ and
# .git; build.sh in the copy builds the module against Debian's nginx from
# scratch, with the packages already installed (it must not install any).

use strict;
use warnings;

use Test::More;
use PlainTest;
use File::Temp qw(tempdir);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use IO::Socket::INET;
use POSIX qw(WNOHANG setsid);
use Time::HiRes qw(sleep time);

my $root = abs_path(dirname(__FILE__) . '/..');

for my $tool (qw(curl python3 tar pgrep)) {
    plan skip_all => "$tool is not installed" unless have($tool);
}
plan skip_all => "Debian's nginx-dev is not installed"
    unless -f '/usr/share/nginx/src/conf_flags';

sub field {
    my ($json, $name) = @_;
    return $json =~ /"$name":"([^"]*)"/ ? $1 : '';
}

# a 0700 directory holding the copy: nobody but its owner may enter it
my $home = tempdir('async-task-first-run-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0700, $home;
my $copy = "$home/project";
mkdir $copy or die "mkdir $copy: $!";

is(system("tar -C '$root' --exclude=./build --exclude=./run --exclude=./.git"
          . " --exclude='./t/servroot*' -cf - . | tar -C '$copy' -xf -"),
   0, 'copied the checkout without build/ and run/');

my ($port, @fakes) = map { free_port() } 1 .. 4;
my $log = "$home/build.log";

# what the user's shell would pass: none of the suite's build variants
my %env = (PORT => $port, FAKE_PORTS => "@fakes");
delete @ENV{qw(NGINX_SRC SANITIZE STATIC NGINX_CONFIGURE_ARGS ASAN_OPTIONS
               LSAN_OPTIONS UBSAN_OPTIONS)};

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    setsid();                     # its own process group, as in a terminal
    @ENV{keys %env} = values %env;
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', $log;
    open STDERR, '>&', \*STDOUT;
    chdir $copy;
    exec './build.sh', 'run' or die "exec: $!";
}

my $api = "http://127.0.0.1:$port/api/v1";

# the build takes a while: wait for the banner, or for build.sh to give up
my $up = 0;
for (1 .. 1200) {
    last if waitpid($pid, WNOHANG) == $pid;
    if (`cat '$log'` =~ /is serving/
        && curl('-o', '/dev/null', '-w', '%{http_code}', "$api/system/stats")
           eq '200')
    {
        $up = 1;
        last;
    }
    sleep 0.5;
}

my $out = `cat '$log'`;
ok($up, './build.sh run serves the API') or diag($out);
unlike($out, qr/==> installing/, 'no packages installed');

SKIP: {
    skip 'the gateway is not up', 8 unless $up;

    my $image = curl('-H', 'Content-Type: application/json',
                     '-H', 'X-User-Id: alice',
                     '-d', '{"prompt": "a red fox in snow", "width": 512,'
                           . ' "height": 512}',
                     "$api/image/async");
    like($image, qr/"status":"QUEUED"/, 'image task accepted') or diag($image);

    # one second of 16 kHz mono silence
    my $pcm = "$home/audio.pcm";
    open my $fh, '>', $pcm or die "$pcm: $!";
    print $fh "\0" x 32000;
    close $fh;

    my $speech = curl('-H', 'Content-Type: application/octet-stream',
                      '-H', 'X-User-Id: alice', '--data-binary', "\@$pcm",
                      "$api/speech/pcm?sample_rate=16000&channels=1");
    like($speech, qr/"status":"QUEUED"/, 'PCM task accepted')
        or diag($speech);

    my %done;
    for my $id (field($image, 'id'), field($speech, 'id')) {
        my $task = '';
        for (1 .. 120) {
            $task = curl('-H', 'X-User-Id: alice', "$api/tasks/$id");
            last if $task =~ /"status":"(DONE|FAILED|CANCELED)"/;
            sleep 0.5;
        }
        like($task, qr/"status":"DONE"/, "task $id is DONE")
            or diag($task, `cat '$copy/run/logs/error.log'`);
        $done{$id} = curl('-H', 'X-User-Id: alice', "$api/tasks/$id/result");
    }

    like($done{field($image, 'id')} // '', qr/^\x89PNG/, 'the image result');
    like($done{field($speech, 'id')} // '', qr/"text"/, 'the transcript');

    my $errors = `grep -E '\\[(alert|crit|emerg)\\]' '$copy/run/logs/error.log'`;
    is($errors, '', 'no alerts in the error log');
}

# Ctrl-C: the terminal sends SIGINT to the whole foreground process group
kill 'INT', -$pid;

my $exited = 0;
for (1 .. 300) {
    if (waitpid($pid, WNOHANG) == $pid) {
        $exited = 1;
        last;
    }
    sleep 0.1;
}
ok($exited, 'build.sh exits on SIGINT');

# stragglers: anything in the process group, or started from the copy
sub pgrep {
    open my $fh, '-|', 'pgrep', '-a', @_ or die "pgrep: $!";
    my @lines = <$fh>;
    close $fh;
    return @lines;
}

my @left;
for (1 .. 50) {
    @left = (pgrep('-g', $pid), pgrep('-f', "$copy/"));
    last if !@left;
    sleep 0.1;
}
is(join('', @left), '', 'nothing left running (no nginx, no fake_gpu)');

if (!$exited || @left) {
    kill 'KILL', -$pid;
    kill 'KILL', map { /^(\d+)/ } @left;
    waitpid($pid, 0);
}

my $closed = !IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
ok($closed, 'the port is closed');

done_testing();
