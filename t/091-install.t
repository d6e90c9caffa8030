# The README's way into an existing nginx, run as written: the commands
# between "<!-- install: begin -->" and "<!-- install: end -->" in
# README.md, against Debian's nginx (/usr/sbin/nginx) with a prefix and a
# configuration of its own laid out as Debian's (modules-enabled/,
# conf.d/, user www-data), never the system instance and never port 80.
# The README's variables (MODULES, CONF, STORE, LISTEN, IMAGE_SERVER,
# SPEECH_SERVER, NGINX) point into that prefix.
#
# A plain Test::More driver, so that it runs the same under the real
# Test::Nginx. Needs root (the store's directory is handed to www-data)
# and the module built against Debian's nginx (./build.sh).

use strict;
use warnings;

use Test::More;
use PlainTest;
use File::Temp qw(tempdir);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use Cwd qw(abs_path);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);

my $root = abs_path(dirname(__FILE__) . '/..');
my $module = "$root/build/nginx/objs/ngx_http_async_task_module.so";
my $nginx = '/usr/sbin/nginx';

plan skip_all => 'needs root (install -o www-data)' if $> != 0;
plan skip_all => 'no www-data user' unless getpwnam('www-data');
plan skip_all => "no $nginx" unless -x $nginx;
plan skip_all => 'the module is not built against Debian\'s nginx'
    unless -f $module;
plan skip_all => 'the suite runs another nginx build'
    if ($ENV{TEST_NGINX_LOAD_MODULES} // $module) ne $module
       || ($ENV{TEST_NGINX_BINARY} // $nginx) ne $nginx;
for my $tool (qw(curl python3)) {
    plan skip_all => "$tool is not installed" unless have($tool);
}

# the steps, as the README shows them
my $readme = slurp("$root/README.md");
my ($steps) = $readme =~ /<!-- install: begin -->\n(.*?)<!-- install: end -->/s;
ok(defined $steps, 'README.md has the marked install steps');
$steps //= '';
$steps =~ s/^```.*\n//mg;

# an existing nginx, laid out as Debian's, serving something else
my $prefix = tempdir('async-task-install-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $prefix;                  # the worker user reaches the store
make_path(map { "$prefix/$_" } qw(modules logs conf/modules-enabled
                                  conf/conf.d));

my ($site, $listen, $fake) = map { free_port() } 1 .. 3;

open my $conf, '>', "$prefix/conf/nginx.conf" or die $!;
print $conf <<EOF;
user www-data;
worker_processes 2;
pid $prefix/logs/nginx.pid;
error_log $prefix/logs/error.log notice;
include $prefix/conf/modules-enabled/*.conf;

events {
    worker_connections 768;
}

http {
    access_log $prefix/logs/access.log;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;

    include $prefix/conf/conf.d/*.conf;

    server {
        listen 127.0.0.1:$site;
        location / { return 200 "the site\\n"; }
    }
}
EOF
close $conf;

my $nginx_cmd = "$nginx -p $prefix -c $prefix/conf/nginx.conf";
is(system("$nginx_cmd"), 0, 'the existing nginx starts');

my $fake_pid;

END {
    # whatever failed, nothing of this test is left running
    return unless defined $nginx_cmd;
    system("$nginx_cmd -s stop 2>/dev/null") if -e "$prefix/logs/nginx.pid";
    if ($fake_pid) {
        kill 'TERM', $fake_pid;
        waitpid($fake_pid, 0);
    }
}

# the GPU server: a fake image instance
$fake_pid = start_fake($prefix, $fake, latency => 0.2);

my %env = (
    MODULES       => "$prefix/modules",
    CONF          => "$prefix/conf",
    STORE         => "$prefix/async_task",
    LISTEN        => "127.0.0.1:$listen",
    IMAGE_SERVER  => "127.0.0.1:$fake",
    SPEECH_SERVER => "127.0.0.1:$fake",
    NGINX         => $nginx_cmd,
);

open my $script, '>', "$prefix/steps.sh" or die $!;
print $script "set -e\n", $steps;
close $script;

my $out = do {
    local @ENV{keys %env} = values %env;
    `cd '$root' && bash '$prefix/steps.sh' 2>&1`;
};
is($?, 0, 'the README\'s steps run') or diag($out);

my @st = stat "$prefix/async_task";
is(join(':', getpwuid($st[4] // 0) // '', getgrgid($st[5] // 0) // ''),
   'www-data:www-data', 'the store directory belongs to www-data');

# the reload takes effect: the API answers next to the site
my $api = "http://127.0.0.1:$listen/api/v1";
my $code = '';
for (1 .. 100) {
    $code = curl('-o', '/dev/null', '-w', '%{http_code}',
                 "$api/system/stats");
    last if $code eq '200';
    sleep 0.1;
}
is($code, '200', 'the API answers after the reload');
is(curl("http://127.0.0.1:$site/"), "the site\n", 'the site still answers');

my $task = curl('-H', 'Content-Type: application/json',
                '-d', '{"prompt": "a red fox in snow"}', "$api/image/async");
my ($id) = $task =~ /"id":"([^"]+)"/;
ok($id, 'an image task accepted') or diag($task);

$task = '';
for (1 .. 100) {
    last unless $id;
    $task = curl("$api/tasks/$id");
    last if $task =~ /"status":"(DONE|FAILED|CANCELED)"/;
    sleep 0.1;
}
like($task, qr/"status":"DONE"/, 'the task ran on the GPU server');
like(curl("$api/tasks/" . ($id // '') . '/result'), qr/^\x89PNG/,
     'its image');

my @db = stat "$prefix/async_task/tasks.db";
is(getpwuid($db[4] // 0) // '', 'www-data', 'the store belongs to www-data');

my $log = slurp("$prefix/logs/error.log");
unlike($log, qr/\[(alert|crit|emerg)\]/, 'no alerts in the error log')
    or diag($log);

# stop it all
system("$nginx_cmd -s quit 2>/dev/null");
for (1 .. 100) { last unless -e "$prefix/logs/nginx.pid"; sleep 0.1 }
ok(!-e "$prefix/logs/nginx.pid", 'nginx stopped');

done_testing();
