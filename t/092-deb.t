# The Debian package, libnginx-mod-http-async-task (debian/, built by
# "./build.sh deb" into build/): its metadata and files, then a real
# "dpkg -i" into a clean root with Debian's nginx, where its maintainer
# scripts enable the module, and nginx, with Debian's own nginx.conf and
# the package's example gateway in conf.d/, passes "nginx -t" cleanly and
# runs tasks on a fake GPU server to DONE; then "dpkg -r" and "--purge",
# and "dpkg -i" again under a dpkg-statoverride of the store's directory.
#
# The clean root is an overlay of / (its packages, Debian's nginx among
# them) with a tmpfs on top, in a mount namespace of the test's own: what
# dpkg and nginx write there never reaches the machine, and the mounts go
# with the test. The package is built again when a source is newer.
#
# A plain Test::More driver. Needs root (mounts, chroot, dpkg).

use strict;
use warnings;

use Test::More;
use PlainTest;
use File::Temp qw(tempdir);
use File::Basename qw(dirname);
use File::Find qw(find);
use File::Copy qw(copy);
use Cwd qw(abs_path);
use Time::HiRes qw(sleep);

my $root = abs_path(dirname(__FILE__) . '/..');
my $package = 'libnginx-mod-http-async-task';
my $nginx = '/usr/sbin/nginx';
my $abi_file = '/usr/share/nginx/src/debian/libnginx-mod.abisubstvars';

plan skip_all => 'needs root (mounts, chroot, dpkg)' if $> != 0;
plan skip_all => "no $nginx" unless -x $nginx;
plan skip_all => 'the suite runs another nginx build'
    if ($ENV{TEST_NGINX_BINARY} // $nginx) ne $nginx;
plan skip_all => "no nginx-dev ($abi_file)" unless -f $abi_file;
for my $tool (qw(unshare chroot dpkg-deb dpkg-buildpackage curl python3)) {
    plan skip_all => "$tool is not installed" unless have($tool);
}

# the rest runs in a mount namespace of its own, made here: the test runs
# itself again under unshare, told the namespace it came from
my $ns = readlink('/proc/self/ns/mnt') // '';
my $from = $ENV{ASYNC_TASK_DEB_NS} // '';
unless ($from =~ /^mnt:/ && $from ne $ns) {
    plan skip_all => 'no mount namespaces here (CAP_SYS_ADMIN)'
        if system('unshare -m --propagation private true 2>/dev/null') != 0;
    $ENV{ASYNC_TASK_DEB_NS} = $ns;
    exec 'unshare', '-m', '--propagation', 'private', $^X, $0;
    die "unshare: $!";
}

sub spew {
    open my $fh, '>', $_[0] or die "$_[0]: $!";
    print $fh $_[1];
    close $fh or die "$_[0]: $!";
}

# a command's status and output (with its stderr)
sub run {
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT or die "stderr: $!";
        exec @_ or exit 127;
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}


# the package: build/'s, built again when a source is newer

my @sources;
find(sub { push @sources, $File::Find::name if -f },
     map { "$root/$_" } qw(config ngx_async_task_module migrations debian
                           docs README.md));
my $newest = 0;
for (@sources) {
    my $m = (stat)[9];
    $newest = $m if $m > $newest;
}

my ($deb) = glob "$root/build/${package}_*.deb";
if (!$deb || (stat $deb)[9] < $newest) {
    my ($rc, $out) = run("'$root/build.sh' deb");
    is($rc, 0, './build.sh deb builds the package') or diag($out);
    ($deb) = glob "$root/build/${package}_*.deb";
}
ok($deb && -f $deb, 'the package is in build/')
    or BAIL_OUT('no package to test');


# its metadata

my %field;
for my $f (qw(Package Architecture Section Depends)) {
    chomp($field{$f} = `dpkg-deb -f '$deb' $f`);
}
is($field{Package}, $package, 'Package');
is($field{Section}, 'httpd', 'Section');

my ($abi) = slurp($abi_file) =~ /^nginx:abi=(\S+)/m;
my %depends = map { /^(\S+)/ ? ($1 => 1) : () } split /,\s*/, $field{Depends};
ok($abi && $depends{$abi}, "Depends on the nginx ABI, $abi")
    or diag($field{Depends});
ok($depends{$_}, "Depends on $_ (the linked library)")
    for qw(libsqlite3-0 libcjson1 libuuid1);

my %files = map { m{^\S+\s+\S+\s+\d+\s+\S+\s+\S+\s+\.(/\S*)} ? ($1 => 1) : () }
            `dpkg-deb -c '$deb'`;
my $doc = "/usr/share/doc/$package";
for my $f ('/usr/lib/nginx/modules/ngx_http_async_task_module.so',
           '/usr/share/nginx/modules-available/mod-http-async-task.conf',
           "$doc/copyright", "$doc/changelog.gz", "$doc/README.md.gz",
           "$doc/docs/directives.md.gz", "$doc/examples/async_task.conf",
           "$doc/examples/qwen-image-gguf-comfyui.json")
{
    ok($files{$f}, "the package holds $f");
}
ok(!grep(m{^/etc/}, keys %files), 'nothing under /etc: the scripts link');

my $snippet = `dpkg-deb --fsys-tarfile '$deb' \\
               | tar -xOf - ./usr/share/nginx/modules-available/mod-http-async-task.conf`;
like($snippet, qr/^load_module modules\/ngx_http_async_task_module\.so;$/m,
     'the snippet loads the module from Debian\'s module directory');
like($snippet, qr/^thread_pool async_task threads=\d+;$/m,
     'the snippet declares the store\'s thread pool');

my $postinst = `dpkg-deb -I '$deb' postinst`;
like($postinst, qr/dh_nginx/, 'dh_nginx wrote the enabling postinst');

SKIP: {
    skip 'lintian is not installed', 1 unless have('lintian');
    my ($rc, $out) = run('lintian', '--fail-on', 'error,warning', $deb);
    is($rc, 0, 'lintian finds no error or warning') or diag($out);
}


# a clean root: / under an overlay

my $tmp = tempdir('async-task-deb-XXXXXX', TMPDIR => 1, CLEANUP => 0);
my $chroot = "$tmp/root";
my ($nginx_started, $fake_pid);

sub mounted { system('mountpoint', '-q', $_[0]) == 0 }

sub in_root { run('chroot', $chroot, @_) }

END {
    # whatever failed: nginx stopped, the fake stopped, the mounts gone
    my $rc = $?;
    # (nginx -t leaves an empty pid file)
    if ($nginx_started && -s "$chroot/run/nginx.pid") {
        system('chroot', $chroot, $nginx, '-s', 'stop');
        for (1 .. 50) { last unless -e "$chroot/run/nginx.pid"; sleep 0.1 }
    }
    if ($fake_pid) {
        kill 'TERM', $fake_pid;
        waitpid($fake_pid, 0);
    }
    if (defined $tmp) {
        for my $m ("$chroot/proc", "$chroot/dev", $chroot, $tmp) {
            system('umount', $m) if mounted($m);
        }
        # nothing is removed through a mount left behind
        rmdir $tmp unless mounted($tmp) || mounted($chroot);
    }
    $? = $rc;
}

is(system('mount', '-t', 'tmpfs', '-o', 'size=512m', 'tmpfs', $tmp), 0,
   'a tmpfs for what the root writes');
mkdir "$tmp/$_" for qw(upper work root);
is(system('mount', '-t', 'overlay', 'overlay', '-o',
          "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work", $chroot), 0,
   'the root: an overlay of /')
    or BAIL_OUT('no overlay');
# /dev read-only: its nodes work, and nothing can unlink them
system('mount', '--bind', '/dev', "$chroot/dev") == 0
    && system('mount', '-o', 'remount,bind,ro', "$chroot/dev") == 0
    or BAIL_OUT('no /dev in the root');
system('mount', '-t', 'proc', 'proc', "$chroot/proc") == 0
    or BAIL_OUT('no /proc in the root');

# as in any chroot: services are not started or reloaded by packages
spew("$chroot/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n");
chmod 0755, "$chroot/usr/sbin/policy-rc.d";

# Debian's nginx, with nothing of the module and no site of its own
my ($rc, $out) = in_root('dpkg-query', '-W', '-f', '${Status}', $package);
if ($out =~ /installed/) {
    ($rc, $out) = in_root('dpkg', '--purge', $package);
    is($rc, 0, 'an installed copy purged first') or diag($out);
}
unlink glob("$chroot/etc/nginx/conf.d/*"),
       glob("$chroot/etc/nginx/sites-enabled/*"),
       glob("$chroot/etc/nginx/modules-enabled/*async-task*");
system('rm', '-rf', "$chroot/var/lib/nginx/async_task");
($rc, $out) = in_root('dpkg-query', '-W', '-f', '${Status}', 'nginx');
like($out, qr/install ok installed/, 'Debian\'s nginx is in the root');


# dpkg -i: the module enabled, the store's directory made

copy($deb, "$chroot/root/$package.deb") or die "copy: $!";
($rc, $out) = in_root('dpkg', '-i', "/root/$package.deb");
is($rc, 0, 'dpkg -i installs it, its dependencies met') or diag($out);

my $enabled = "$chroot/etc/nginx/modules-enabled/50-mod-http-async-task.conf";
is(readlink($enabled) // '',
   '/usr/share/nginx/modules-available/mod-http-async-task.conf',
   'postinst links the snippet into modules-enabled');

my @st = stat "$chroot/var/lib/nginx/async_task";
is(join(':', getpwuid($st[4] // 0) // '', getgrgid($st[5] // 0) // '',
        sprintf('%o', ($st[2] // 0) & 07777)),
   'www-data:www-data:750', 'postinst makes the store\'s directory for www-data');


# the example gateway in conf.d/, against a fake GPU server

my ($listen, $fake) = (free_port(), free_port());

my $example = slurp("$chroot$doc/examples/async_task.conf");
$example =~ s/127\.0\.0\.1:800[01]\b/127.0.0.1:$fake/g;
$example =~ s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$listen;/;
spew("$chroot/etc/nginx/conf.d/async_task.conf", $example);
# as the README has it: root's, readable by the worker processes' group
spew("$chroot/etc/nginx/async_task.htpasswd", "alice:{PLAIN}secret\n");
chown 0, scalar getgrnam('www-data'), "$chroot/etc/nginx/async_task.htpasswd";
chmod 0640, "$chroot/etc/nginx/async_task.htpasswd";

($rc, $out) = in_root($nginx, '-t');
is($rc, 0, 'nginx -t accepts Debian\'s nginx.conf with the module')
    or diag($out);
unlike($out, qr/\[(warn|error|crit|alert|emerg)\]/, 'nginx -t says nothing')
    or diag($out);

$fake_pid = start_fake($tmp, $fake, latency => 0.2);

# nginx as a daemon: no pipe to hold open
is(system("chroot '$chroot' $nginx > '$tmp/start.log' 2>&1"), 0,
   'nginx starts') or diag(slurp("$tmp/start.log"));
$nginx_started = 1;

my $api = "http://127.0.0.1:$listen/api/v1";
my @auth = ('-u', 'alice:secret');
my $code = '';
for (1 .. 100) {
    $code = curl(@auth, '-o', '/dev/null', '-w', '%{http_code}',
                 "$api/system/stats");
    last if $code eq '200';
    sleep 0.1;
}
is($code, '200', 'the API answers');
is(curl('-o', '/dev/null', '-w', '%{http_code}', "$api/system/stats"), '401',
   'and asks who is calling');

sub wait_done {
    my $id = shift // return '';
    my $task = '';
    for (1 .. 100) {
        $task = curl(@auth, "$api/tasks/$id");
        last if $task =~ /"status":"(DONE|FAILED|CANCELED)"/;
        sleep 0.1;
    }
    return $task;
}

my $task = curl(@auth, '-H', 'Content-Type: application/json',
                '-d', '{"prompt": "a red fox in snow"}', "$api/image/async");
my ($id) = $task =~ /"id":"([^"]+)"/;
ok($id, 'an image task accepted') or diag($task);
like($task, qr/"user":"alice"/, 'owned by the user of auth_basic');
like(wait_done($id), qr/"status":"DONE"/, 'the image task ran to DONE');
like(curl(@auth, "$api/tasks/" . ($id // '') . '/result'), qr/^\x89PNG/,
     'its image');

# an upload: the files directory is made by the worker processes too
spew("$tmp/speech.pcm", "\0" x 3200);
$task = curl(@auth, '-H', 'Content-Type: application/octet-stream',
             '--data-binary', "\@$tmp/speech.pcm",
             "$api/speech/pcm?sample_rate=16000&channels=1");
($id) = $task =~ /"id":"([^"]+)"/;
ok($id, 'a speech task accepted') or diag($task);
like(wait_done($id), qr/"status":"DONE"/, 'the speech task ran to DONE');

for my $f ('tasks.db', 'files') {
    my @s = stat "$chroot/var/lib/nginx/async_task/$f";
    is(getpwuid($s[4] // 0) // '', 'www-data', "the store's $f is www-data's");
}

my $log = slurp("$chroot/var/log/nginx/error.log");
unlike($log, qr/\[(error|crit|alert|emerg)\]/, 'nothing in the error log')
    or diag($log);

($rc, $out) = in_root($nginx, '-s', 'quit');
for (1 .. 100) { last unless -e "$chroot/run/nginx.pid"; sleep 0.1 }
ok(!-e "$chroot/run/nginx.pid", 'nginx stopped');
$nginx_started = 0;


# dpkg -r and --purge: disabled, then gone; the tasks stay

unlink "$chroot/etc/nginx/conf.d/async_task.conf";
($rc, $out) = in_root('dpkg', '-r', $package);
is($rc, 0, 'dpkg -r removes it') or diag($out);
ok(!-e "$chroot/usr/lib/nginx/modules/ngx_http_async_task_module.so",
   'the module is gone');
ok(!-l $enabled && -l "$enabled.removed",
   'prerm/postrm set the snippet\'s link aside');
($rc, $out) = in_root($nginx, '-t');
is($rc, 0, 'nginx -t passes without the module') or diag($out);

($rc, $out) = in_root('dpkg', '--purge', $package);
is($rc, 0, 'dpkg --purge purges it') or diag($out);
ok(!-l "$enabled.removed", 'the link is gone');
ok(-f "$chroot/var/lib/nginx/async_task/tasks.db",
   'the task store stays (it holds the users\' tasks)');

# a dpkg-statoverride of the store's directory decides its owner and mode
system('rm', '-rf', "$chroot/var/lib/nginx/async_task");
($rc, $out) = in_root('dpkg-statoverride', '--add', 'www-data', 'adm', '0700',
                      '/var/lib/nginx/async_task');
is($rc, 0, 'a statoverride of the store\'s directory') or diag($out);
($rc, $out) = in_root('dpkg', '-i', "/root/$package.deb");
is($rc, 0, 'dpkg -i installs it again') or diag($out);
@st = stat "$chroot/var/lib/nginx/async_task";
is(join(':', getpwuid($st[4] // 0) // '', getgrgid($st[5] // 0) // '',
        sprintf('%o', ($st[2] // 0) & 07777)),
   'www-data:adm:700', 'postinst follows the statoverride');

done_testing();
