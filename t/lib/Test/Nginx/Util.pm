package Test::Nginx::Util;

# Minimal, self-written stand-in for openresty's Test::Nginx::Util.
#
# It holds the global knobs (ports, server root, log level, ...), writes the
# nginx configuration, starts/stops nginx, runs the per-block life cycle
# (restart or HUP reload, repetitions, TCP/UDP mock servers) and slices
# error.log.  The HTTP client side and all response checks live in
# Test::Nginx::Socket, which plugs itself in through $RunTestHelper,
# $CheckErrorLog and $CheckShutdownErrorLog, the same hook names the real
# scaffold uses.
#
# Only the behaviour described in shared/research/test-nginx.md is
# implemented; the .t files must keep passing under the real Test::Nginx.

use strict;
use warnings;

use Exporter ();
our @ISA = ('Exporter');

use POSIX qw(:sys_wait_h);
use File::Spec ();
use File::Path qw(make_path remove_tree);
use File::Glob qw(bsd_glob);
use File::Temp qw(tempfile);
use Time::HiRes qw(sleep time);
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use IO::Select ();
use Socket qw(SOCK_STREAM SOCK_DGRAM);
use Scalar::Util qw(looks_like_number);
use Carp qw(croak);
use Test::More ();

our $VERSION = '0.33';    # the real version whose behaviour we follow

our $MainPid = $$;

our $Verbose          = $ENV{TEST_NGINX_VERBOSE};
our $UseHup           = $ENV{TEST_NGINX_USE_HUP};
our $NoShuffle        = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;    # no-op: file order
our $LoadModules      = $ENV{TEST_NGINX_LOAD_MODULES};
our $Timeout          = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $EventType        = $ENV{TEST_NGINX_EVENT_TYPE};
our $PostponeOutput   = $ENV{TEST_NGINX_POSTPONE_OUTPUT};
our $ReusePort        = $ENV{TEST_NGINX_REUSE_PORT};
our $Randomize        = $ENV{TEST_NGINX_RANDOMIZE};
our $NoNginxManager   = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckLeak        = 0;    # leak mode is not supported by this runner
our $Benchmark        = 0;
our $UseStap;                 # never set: stap is not supported

our $ServerAddr = '127.0.0.1';
our $ServerName = 'localhost';

our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $Workers              = 1;
our $WorkerConnections    = 64;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled        = 'on';
our $ServerPort           = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient  = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort || 1984;
our $NoRootLocation       = 0;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $ForceRestartOnTest   = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
                            ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $RepeatEach           = 1;
our $NoLongString;
our $ConfigPreamble       = '';
our $FilterHttpConfig;
our $ConfigVersion;
our $InSubprocess;

our ($NginxVersion, $NginxRawVersion);
our ($RunTestHelper, $CheckErrorLog, $CheckShutdownErrorLog);
our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers);
our ($PrevBlock, $PrevConfig, $ErrLogFilePos);
our ($TcpServerPid, $UdpServerPid, $ChildPid);
our $FirstTime = 1;
our @ExtraErrLogLines;     # nginx stderr lines (must_die), fed once to error_log_data
our $ServRootWarned;
our $TotalConnectingTimeouts = 0;

sub bail_out (@);
sub gen_rand_port (;$$);

if ($Randomize) {
    $ServerPort = gen_rand_port(1000, {});
    if (!defined $ServerPort) {
        die "Cannot find an available listening port number\n";
    }
    $ServerPortForClient = $ServerPort;
}

our $ServRoot;
if ($Randomize) {
    $ServRoot = File::Spec->rel2abs("t/servroot_$ServerPort");
} elsif ($ENV{TEST_NGINX_SERVROOT}) {
    $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT});
} else {
    $ServRoot = File::Spec->rel2abs('t/servroot');
}
$ServRoot =~ s{/+$}{} if $ServRoot ne '/';
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catfile($ServRoot, 'logs');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');
our $HtmlDir    = File::Spec->catfile($ServRoot, 'html');
our $ConfDir    = File::Spec->catfile($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');

our @EXPORT = qw(
    env_to_nginx is_str check_accum_error_log is_running
    $NoLongString no_long_string
    $ServerAddr server_addr $ServerName server_name
    parse_time verbose sleep_time bail_out add_cleanup_handler
    access_log_data error_log_data setup_server_root write_config_file
    get_canon_version get_nginx_version trim show_all_chars parse_headers
    run_tests run_test get_pid_from_pidfile
    $ServerPortForClient $ServerPort $NginxVersion $PidFile $ServRoot
    $ConfFile $RunTestHelper $CheckErrorLog $CheckShutdownErrorLog
    $FilterHttpConfig $NoNginxManager $RepeatEach $CheckLeak $Benchmark
    $UseStap
    add_block_preprocessor timeout worker_connections workers master_on
    master_off config_preamble repeat_each master_process_enabled log_level
    no_shuffle no_root_location html_dir server_root server_port
    server_port_for_client no_nginx_manager use_hup
    expand_env_in_text
);

# ---------------------------------------------------------------------------
# knobs

sub is_running ($) {
    my $pid = shift;
    return 0 if !defined $pid || $pid !~ /^\d+$/ || $pid <= 1;
    return 0 if !kill 0, $pid;
    # an exited daemon stays a zombie until init reaps it: treat as gone
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $st = <$fh>;
        close $fh;
        return 0 if defined $st && $st =~ /^\d+ \(.*\) Z /s;
    }
    return 1;
}

sub no_long_string () { $NoLongString = 1 }

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    return Test::More::is($got, $expected, $desc);
}

sub server_addr (@) { if (@_) { $ServerAddr = shift } else { return $ServerAddr } }
sub server_name (@) { if (@_) { $ServerName = shift } else { return $ServerName } }
sub timeout (@)     { if (@_) { $Timeout = shift } else { return $Timeout } }
sub no_shuffle ()   { $NoShuffle = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub use_hup ()      { $UseHup = 1 }
sub sleep_time      { return $TestNginxSleep }
sub verbose         { return $Verbose }
sub html_dir ()     { return $HtmlDir }
sub server_root ()  { return $ServRoot }
sub no_root_location () { $NoRootLocation = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub config_preamble ($) { $ConfigPreamble = shift }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }

sub server_port (@) { if (@_) { $ServerPort = shift } else { return $ServerPort } }

sub server_port_for_client (@) {
    if (@_) { $ServerPortForClient = shift } else { return $ServerPortForClient }
}

sub repeat_each (@) {
    if (@_) { $RepeatEach = shift }
    return $RepeatEach;
}

sub worker_connections (@) {
    if (@_) { $WorkerConnections = shift } else { return $WorkerConnections }
}

sub workers (@) { if (@_) { $Workers = shift } else { return $Workers } }

sub log_level (@) { if (@_) { $LogLevel = shift } else { return $LogLevel } }

sub master_on ()  { $MasterProcessEnabled = 'on' }
sub master_off () { $MasterProcessEnabled = 'off' }

sub master_process_enabled (@) {
    if (@_) {
        $MasterProcessEnabled = shift() ? 'on' : 'off';
    } else {
        return $MasterProcessEnabled;
    }
}

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" if !@_;
    for my $v (@_) {
        if ($v !~ /^[A-Za-z_]/ || $v =~ /\n/) {
            croak "env_to_nginx: bad argument value: $v\n";
        }
        push @EnvToNginx, $v;
    }
}

sub parse_time ($) {
    my $tm = shift;
    if (defined $tm) {
        if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
            $tm = $tm / 1000;
        } else {
            $tm =~ s/([^_a-zA-Z])s$/$1/;
        }
    }
    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef if !defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

sub show_all_chars ($) {
    my $s = shift;
    $s =~ s/\n/\\n/gs;
    $s =~ s/\r/\\r/gs;
    $s =~ s/\t/\\t/gs;
    return $s;
}

# Parse "Name: value" lines ("!Name" = must be absent, value undef).
# Returns a list of [name, value] pairs (file order, later duplicates win).
sub parse_headers ($) {
    my $s = shift;
    my (@order, %seen);
    for my $line (split /\n/, defined $s ? $s : '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        my ($key, $val);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $val) = split /\s*:\s*/, $line, 2;
        }
        if (!exists $seen{$key}) {
            push @order, $key;
        }
        $seen{$key} = $val;
    }
    return [ map { [ $_, $seen{$_} ] } @order ];
}

sub get_canon_version (@) {
    sprintf "%d.%03d%03d", $_[0], $_[1], $_[2];
}

sub can_run ($) {
    my $cmd = shift;
    if ($cmd =~ m{/}) {
        return (-f $cmd && -x $cmd) ? $cmd : undef;
    }
    for my $dir (split /:/, ($ENV{PATH} || '')) {
        next if $dir eq '';
        my $abs = File::Spec->catfile($dir, $cmd);
        return $abs if -f $abs && -x $abs;
    }
    return undef;
}

sub get_nginx_version () {
    if (!can_run($NginxBinary)) {
        bail_out("Cannot find the nginx executable \"$NginxBinary\" "
                 . "(set TEST_NGINX_BINARY or PATH)");
    }
    my $out = `"$NginxBinary" -V 2>&1`;
    if (!defined $out || $? != 0) {
        $out = '' if !defined $out;
        bail_out("Failed to get the version of the nginx binary "
                 . "$NginxBinary: $out");
    }
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s)
    {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

sub get_pid_from_pidfile ($) {
    my ($name) = @_;
    open my $in, '<', $PidFile or
        bail_out("$name - Failed to open the pid file $PidFile for reading: $!");
    my $pid = do { local $/; <$in> };
    close $in;
    $pid = '' if !defined $pid;
    $pid =~ s/\s+//g;
    return $pid;
}

# ---------------------------------------------------------------------------
# process helpers

# Stop a child process we forked (mock servers): TERM, wait, then KILL.
sub kill_child ($) {
    my $pid = shift;
    return if !defined $pid;
    return if waitpid($pid, WNOHANG) != 0;    # already gone
    kill 'TERM', $pid;
    my $left = $Timeout;
    while ($left > 0) {
        my $r = waitpid($pid, WNOHANG);
        return if $r != 0;
        sleep 0.01;
        $left -= 0.01;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

# Stop a daemonized nginx (not our child): QUIT, wait, escalate to KILL.
sub kill_nginx ($$) {
    my ($pid, $name) = @_;
    return if !is_running($pid) || $pid == $$;

    warn "sending QUIT signal to $pid\n" if $Verbose;
    kill 'QUIT', $pid;

    my $left = $Timeout;
    while ($left > 0 && is_running($pid)) {
        waitpid($pid, WNOHANG);
        sleep 0.02;
        $left -= 0.02;
    }

    if (is_running($pid)) {
        warn "$name - timeout when waiting for the process $pid to exit; "
             . "killing it with SIGKILL\n";
        my $pgrp = getpgrp($pid);
        if (defined $pgrp && $pgrp == $pid && $pgrp != getpgrp(0)) {
            kill 'KILL', -$pid;      # master + its workers (setsid'ed daemon)
        } else {
            kill 'KILL', $pid;
        }
        my $wait = 2;
        while ($wait > 0 && is_running($pid)) {
            waitpid($pid, WNOHANG);
            sleep 0.02;
            $wait -= 0.02;
        }
    }
}

sub stop_nginx ($) {
    my $name = shift;
    return if !-f $PidFile;
    my $pid = get_pid_from_pidfile($name);
    if ($pid =~ /^\d+$/ && is_running($pid)) {
        kill_nginx($pid, $name);
    }
    unlink $PidFile if -f $PidFile;
}

sub cleanup () {
    for my $hdl (@CleanupHandlers) {
        $hdl->();
    }
    if (defined $UdpServerPid) {
        kill_child($UdpServerPid);
        undef $UdpServerPid;
    }
    if (defined $TcpServerPid) {
        kill_child($TcpServerPid);
        undef $TcpServerPid;
    }
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub gen_rand_port (;$$) {
    my ($tries, $used) = @_;
    $tries ||= 1000;
    $used ||= {};
    for (1 .. $tries) {
        my $port = int(rand 63550) + 1985;
        next if $used->{$port};
        next if defined $ServerPort && $port == $ServerPort;
        my $sock = IO::Socket::INET->new(
            LocalAddr => $ServerAddr,
            LocalPort => $port,
            Proto     => 'tcp',
        );
        if ($sock) {
            $sock->close;
            return $port;
        }
    }
    return undef;
}

# ---------------------------------------------------------------------------
# environment expansion

sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return undef if !defined $text;
    return $text if ref $text;
    $rand_ports ||= {};

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            if (!defined $rand_ports->{$var}) {
                my %used = map { $_ => 1 } values %$rand_ports;
                my $port = gen_rand_port(1000, \%used);
                if (!defined $port) {
                    bail_out("$name - Cannot find an available listening "
                             . "port number for $var.\n");
                }
                $rand_ports->{$var} = $port;
            }
            $val = $rand_ports->{$var};
        } else {
            if (!defined $ENV{$var}) {
                bail_out("$name - No environment $var defined.\n");
            }
            $val = $ENV{$var};
        }
        $val;
    }ge;

    return $text;
}

# ---------------------------------------------------------------------------
# server root, config, user files

sub _warn_foreign_servroot_entries () {
    return if $ServRootWarned;
    opendir my $dh, $ServRoot or return;
    my @extra = grep {
        $_ ne '.' && $_ ne '..' && $_ ne 'conf' && $_ ne 'logs'
        && $_ ne 'html' && !/_temp$/ && !/_cache$/
    } readdir $dh;
    closedir $dh;
    return if !@extra;
    $ServRootWarned = 1;
    Test::More::diag("WARNING: $ServRoot contains entries other than "
        . "conf/ logs/ html/ *_temp *_cache (@extra); this runner keeps "
        . "them, but the real Test::Nginx rmdir()s the server root before "
        . "each nginx start and bails out (\"Can't remove ... (not "
        . "empty?)\") -- keep per-test files under html/ or logs/");
}

sub setup_server_root ($) {
    my $first_time = shift;

    if (-d $ServRoot) {
        remove_tree($ConfDir, bsd_glob("$ServRoot/*_cache"),
                    bsd_glob("$ServRoot/*_temp"));

        if ($UseHup && !$first_time) {
            # nginx keeps running: remove files but keep the pid file;
            # nginx re-creates the logs on USR1.
            for my $dir ($HtmlDir, $LogDir) {
                next if !-d $dir;
                my @stack = ($dir);
                while (my $d = pop @stack) {
                    opendir my $dh, $d or next;
                    for my $e (readdir $dh) {
                        next if $e eq '.' || $e eq '..';
                        my $p = "$d/$e";
                        if (-d $p && !-l $p) {
                            push @stack, $p;
                            next;
                        }
                        next if $e =~ /(?:\bnginx\.pid|\.sock|\.crt|\.key)$/;
                        unlink $p or warn "Failed to remove $p: $!\n";
                    }
                    closedir $dh;
                }
            }
        } else {
            remove_tree($HtmlDir, $LogDir);
        }

        _warn_foreign_servroot_entries();
    }

    for my $dir ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $dir;
        make_path($dir) or bail_out("Failed to do mkdir $dir: $!\n");
    }

    my $index_file = "$HtmlDir/index.html";
    open my $out, '>', $index_file or
        bail_out("Can't open $index_file for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;
}

sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return if !$files;

    if (!ref $files) {
        my @list;
        my ($fname, $body, $date);
        for my $line (split /^/m, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$fname, $body, $date] if defined $fname;
                ($fname, $date) = ($1, $2);
                undef $body;
            } else {
                $body .= $line;
            }
        }
        push @list, [$fname, $body, $date] if defined $fname;
        $files = \@list;

    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        $body = '' if !defined $body;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/}) {
            my $dir = $1;
            if (!-d $dir) {
                make_path($dir) or
                    bail_out("$name - Cannot create directory $dir");
            }
        }
        $body = expand_env_in_text($body, $name, $rand_ports);
        open my $out, '>', $path or
            bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            my @cmd = ('touch', '-t', $date, $path);
            local $ENV{TZ} = 'GMT';
            system(@cmd) == 0 or
                bail_out("Failed to run command: @cmd\n");
        }
    }
}

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;

    my $name = $block->name;
    my $http_config = $block->http_config;
    my $main_config = $block->main_config;
    my $post_main_config = $block->post_main_config;
    my $err_log_file = $block->error_log_file;
    my $server_name = $block->server_name;

    if ($UseHup) {
        master_on();    # config reload needs the master process
    }

    $config = '' if !defined $config;

    $http_config = expand_env_in_text($http_config, $name, $rand_ports);
    $http_config = '' if !defined $http_config;
    if ($FilterHttpConfig) {
        $http_config = $FilterHttpConfig->($http_config);
    }

    my $postpone = $PostponeOutput;
    undef $postpone if $http_config =~ /\bpostpone_output\b/;
    my $extra_http_config = '';
    if (defined $postpone) {
        if ($postpone !~ /^\d+$/) {
            bail_out("Bad TEST_NGINX_POSTPONE_OUTPUT value: $postpone\n");
        }
        $extra_http_config = "    postpone_output $postpone;\n";
    }

    my $modules = '';
    if ($LoadModules) {
        $modules = join '', map { "load_module $_;\n" }
                            grep { length } split /\s+/, $LoadModules;
    }

    $main_config = '' if !defined $main_config;
    $main_config = expand_env_in_text($modules . $main_config, $name,
                                      $rand_ports);

    $post_main_config = '' if !defined $post_main_config;
    $post_main_config = expand_env_in_text($post_main_config, $name,
                                           $rand_ports);

    if ($err_log_file) {
        $err_log_file = expand_env_in_text($err_log_file, $name, $rand_ports);
    } else {
        $err_log_file = $ErrLogFile;
    }

    $server_name = $ServerName if !defined $server_name;
    (my $quoted_server_name = $server_name) =~ s/\\/\\\\/g;
    $quoted_server_name =~ s/'/\\'/g;

    my $listen_opts = $ReusePort ? ' reuseport' : '';

    my $env = join '', map { my $v = $_; $v = "'$v'" if $v =~ /\s/; "env $v;\n" }
        qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN MOCKEAGAIN_WRITE_TIMEOUT_PATTERN
           LD_PRELOAD LD_LIBRARY_PATH DYLD_INSERT_LIBRARIES
           DYLD_FORCE_FLAT_NAMESPACE),
        @EnvToNginx;

    my $temp_paths = join '', map { "    ${_}_temp_path $ServRoot/${_}_temp;\n" }
                              qw(client_body proxy fastcgi uwsgi scgi);

    my $conf = <<_EOC_;
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile;

$temp_paths
    default_type text/plain;
    keepalive_timeout  68000ms;
$extra_http_config
$http_config

    server {
        listen          $ServerPort$listen_opts;
        server_name     '$quoted_server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

_EOC_

    if (!$NoRootLocation) {
        $conf .= <<_EOC_;
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    }

    $conf .= "    }\n";

    if ($UseHup) {
        $conf .= <<_EOC_;

    server {
        listen          $ServerPort$listen_opts;
        server_name     'Test-Nginx';

        location = /ver {
            return 200 '$ConfigVersion';
        }
    }
_EOC_
    }

    $conf .= <<_EOC_;
}

$post_main_config

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
_EOC_

    $conf .= "    use $EventType;\n" if $EventType;
    $conf .= "}\n\nenv ASAN_OPTIONS;\n";

    if (defined $ENV{TEST_NGINX_WORKER_USER}) {
        $conf .= "user $ENV{TEST_NGINX_WORKER_USER};\n";
    } elsif ($> == 0) {
        $conf .= "user root;\n";
    }

    open my $out, '>', $ConfFile or
        bail_out("Can't open $ConfFile for writing: $!\n");
    print $out $conf;
    close $out;
}

# ---------------------------------------------------------------------------
# logs

sub error_log_data () {
    # give nginx a moment for log-phase messages written after the response
    sleep $TestNginxSleep * 3;

    my @lines;
    if (open my $in, '<', $ErrLogFile) {
        $ErrLogFilePos = 0 if !defined $ErrLogFilePos;
        if (!$CheckAccumErrLog && $ErrLogFilePos > 0) {
            seek $in, $ErrLogFilePos, 0;
        }
        @lines = <$in>;
        if (!$CheckAccumErrLog) {
            $ErrLogFilePos = tell($in);
        }
        close $in;
    } elsif (!@ExtraErrLogLines) {
        return undef;
    }

    if (@ExtraErrLogLines) {
        # nginx prints startup errors both to stderr ("nginx: [emerg] msg")
        # and to the log ("<time> [emerg] <pid>#0: msg"): add only the
        # stderr lines that are not in the log already
        LINE: for my $l (@ExtraErrLogLines) {
            (my $k = $l) =~ s/\s+\z//;
            if ($k =~ /^nginx: \[(\w+)\] (.*)\z/s) {
                my ($lvl, $msg) = ($1, $2);
                for my $have (@lines) {
                    next LINE if index($have, "[$lvl]") >= 0
                                 && index($have, $msg) >= 0;
                }
            }
            push @lines, $l;
        }
        @ExtraErrLogLines = ();
    }

    return \@lines;
}

sub access_log_data () {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or return [];
    my @lines = <$in>;
    close $in;
    return \@lines;
}

sub check_prev_block_shutdown_error_log () {
    my $block = $PrevBlock;
    return if !defined $block;
    undef $PrevBlock;

    if (defined $block->shutdown_error_log) {
        my $dry_run;
        $dry_run = 'HUP reload mode' if $UseHup;
        $dry_run = 'TEST_NGINX_NO_CLEAN' if $ENV{TEST_NGINX_NO_CLEAN};
        $CheckShutdownErrorLog->($block, $dry_run);
    }
}

# ---------------------------------------------------------------------------
# starting nginx

sub nginx_command () {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    if (defined $NginxVersion && $NginxVersion >= 1.019005) {
        push @cmd, '-e', $ErrLogFile;    # startup messages stay in servroot
    }
    return @cmd;
}

# Runs the nginx command line; returns ($status, $stderr_text, $exec_failed).
sub run_nginx_command () {
    my @cmd = nginx_command();
    my ($fh, $errfile) = tempfile('test-nginx-stderr-XXXXXX', TMPDIR => 1);
    close $fh;

    warn "running: @cmd\n" if $Verbose;

    my $pid = fork();
    if (!defined $pid) {
        unlink $errfile;
        bail_out("fork() failed: $!");
    }

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $errfile;
        delete $ENV{NGINX};    # would make nginx expect inherited sockets
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print STDERR "TEST-NGINX-EXEC-FAILED: $!\n";
        POSIX::_exit(127);
    }

    waitpid($pid, 0);
    my $status = $?;

    my $err = '';
    if (open my $in, '<', $errfile) {
        local $/;
        $err = <$in>;
        $err = '' if !defined $err;
        close $in;
    }
    unlink $errfile;

    my $exec_failed = $err =~ s/^TEST-NGINX-EXEC-FAILED: .*\n?//m ? 1 : 0;
    return ($status, $err, $exec_failed);
}

sub wait_for_pid_file ($) {
    my $name = shift;
    my $left = $Timeout > 5 ? $Timeout : 5;
    while ($left > 0) {
        if (-s $PidFile) {
            my $pid = get_pid_from_pidfile($name);
            return $pid if $pid =~ /^\d+$/;
        }
        sleep 0.01;
        $left -= 0.01;
    }
    return undef;
}

sub start_nginx ($) {
    my ($block) = @_;
    my $name = $block->name;

    my $waited = 0;
    my $i = 0;
    while (1) {
        my ($status, $err, $exec_failed) = run_nginx_command();
        if ($exec_failed) {
            bail_out("$name - failed to execute $NginxBinary: $err");
        }

        if ($status == 0) {
            if ($err ne '' && !defined $block->suppress_stderr) {
                print STDERR $err;
            }
            if (!defined wait_for_pid_file($name)) {
                bail_out("$name - nginx started but wrote no pid file "
                         . "$PidFile");
            }
            sleep $TestNginxSleep;
            return;
        }

        if ($err =~ /Address already in use/ && $waited < 10) {
            $i++;
            my $delay = 0.1 * $i;
            $delay = 1 if $delay > 1;
            sleep $delay;
            $waited += $delay;
            next;
        }

        my $tail = '';
        if (open my $in, '<', $ErrLogFile) {
            my @l = <$in>;
            close $in;
            @l = @l[-10 .. -1] if @l > 10;
            $tail = join '', @l;
        }
        bail_out("$name - Cannot start nginx using command \""
                 . join(' ', nginx_command()) . "\" (status code $status)"
                 . ($err ne '' ? ": $err" : '')
                 . ($tail ne '' && $err eq '' ? "\nerror.log:\n$tail" : ''));
    }
}

# Ask the reloaded nginx for the config version until the new workers answer.
sub wait_for_config_version ($) {
    my ($name) = @_;
    my $nsucc = 0;
    for my $try (1 .. 200) {
        my $ver = '';
        my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                         PeerPort => $ServerPort,
                                         Proto    => 'tcp',
                                         Timeout  => 2);
        if ($sock) {
            print $sock "GET /ver HTTP/1.0\r\nHost: Test-Nginx\r\n\r\n";
            local $/;
            my $resp = <$sock>;
            close $sock;
            if (defined $resp && $resp =~ /\r\n\r\n(.*)\z/s) {
                $ver = $1;
            }
        }
        if ($ver eq $ConfigVersion) {
            $nsucc++;
            return if $nsucc >= 10;
            next;
        }
        $nsucc = 0;
        my $wait = ($TestNginxSleep + $TestNginxSleep * $try) * $try / 2;
        $wait = 0.5 if $wait > 0.5;
        sleep $wait;
    }
    Test::More::fail("$name - failed to reload configuration after 200 "
                     . "failed test requests");
}

sub gen_rand_str ($) {
    my $len = shift;
    my @a = ('A' .. 'Z', 'a' .. 'z', '0' .. '9');
    return join '', map { $a[int rand @a] } 1 .. $len;
}

# ---------------------------------------------------------------------------
# mock servers

sub start_tcp_server ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;

    my $target = expand_env_in_text($block->tcp_listen, $name, $rand_ports);
    $target =~ s/^\s+|\s+$//g;

    my $reply = $block->tcp_reply;
    if (!defined $reply && !defined $block->tcp_shutdown) {
        bail_out("$name - no --- tcp_reply specified but --- tcp_listen "
                 . "is specified");
    }

    my $req_len = $block->tcp_query_len;
    my $query_file;
    if (defined $block->tcp_query || defined $req_len) {
        if (!defined $req_len && !ref $block->tcp_query) {
            $req_len = length $block->tcp_query;
        }
        (my $fh, $query_file) = tempfile('test-nginx-tcp-query-XXXXXX',
                                         TMPDIR => 1);
        close $fh;
    }

    my ($sock, $err);
    for my $i (1 .. 30) {
        if ($target =~ /^\d+$/) {
            $sock = IO::Socket::INET->new(LocalHost => '127.0.0.1',
                                          LocalPort => $target,
                                          Proto     => 'tcp',
                                          ReuseAddr => 1,
                                          Listen    => 5);
        } elsif ($target =~ m{\S+\.sock$}) {
            unlink $target if -e $target;
            $sock = IO::Socket::UNIX->new(Local  => $target,
                                          Type   => SOCK_STREAM,
                                          Listen => 5);
        } else {
            bail_out("$name - bad tcp_listen target: $target");
        }
        last if $sock;
        $err = $!;
        last if $err !~ /address already in use/i;
        warn "WARNING: failed to create the tcp listening socket: $err\n";
        sleep 0.5;
    }
    if (!$sock) {
        bail_out("$name - failed to create the tcp listening socket on "
                 . "$target: $err");
    }

    my $pid = fork();
    bail_out("$name - fork() failed: $!") if !defined $pid;

    if ($pid == 0) {
        $InSubprocess = 1;
        Test::More->builder->no_ending(1);
        $SIG{TERM} = sub { POSIX::_exit(0) };
        _tcp_server_child($block, $sock, $query_file, $req_len);
        POSIX::_exit(0);
    }

    $TcpServerPid = $pid;
    return ($sock, $query_file);
}

sub _tcp_server_child {
    my ($block, $sock, $query_file, $req_len) = @_;
    my $name = $block->name;

    my $client;
    while (1) {
        $client = $sock->accept();
        last if $client;
        warn "WARNING: $name - TCP server: failed to accept: $!\n";
        sleep $TestNginxSleep;
    }

    my ($no_read, $no_write);
    if (defined $block->tcp_shutdown) {
        my $how = $block->tcp_shutdown;
        $how = 1 if $how !~ /^\d$/;
        my $delay = parse_time($block->tcp_shutdown_delay);
        sleep $delay if $delay;
        shutdown($client, $how);
        if ($how == 0 || $how == 2) { $no_read = 1 }
        if ($how == 1 || $how == 2) { $no_write = 1 }
    }

    my $buf = '';
    if (!$no_read) {
        my $auto = $block->tcp_query_auto_timeout;
        if (defined $auto) {
            $auto = parse_time($auto);
            $auto = 0.1 if !$auto;
        }
        my $sel = IO::Select->new($client);
        while (1) {
            if (defined $auto && !$sel->can_read($auto)) {
                last;
            }
            my $b = '';
            my $n = sysread($client, $b, 4096);
            last if !defined $n || $n == 0;
            $buf .= $b;
            if ($query_file) {
                if (open my $out, '>', $query_file) {
                    binmode $out;
                    print $out $buf;
                    close $out;
                }
            }
            next if defined $auto;
            last if !$req_len || length($buf) >= $req_len;
        }
    }

    my $delay = parse_time($block->tcp_reply_delay);
    sleep $delay if $delay;

    my $reply = $block->tcp_reply;
    if (!$no_write && defined $reply) {
        if (ref $reply eq 'CODE') {
            $reply = $reply->($buf);
        }
        local $SIG{PIPE} = 'IGNORE';
        for my $r (ref $reply eq 'ARRAY' ? @$reply : ($reply)) {
            next if !defined $r;
            my $off = 0;
            while ($off < length $r) {
                my $n = syswrite($client, $r, length($r) - $off, $off);
                if (!defined $n) {
                    warn "WARNING: tcp server failed to send reply: $!\n";
                    last;
                }
                $off += $n;
            }
        }
    }

    if (defined $block->tcp_no_close) {
        sleep 1 while 1;
    }

    close $client;
    close $sock;
}

sub start_udp_server ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;

    my $reply = $block->udp_reply;
    if (!defined $reply) {
        bail_out("$name - no --- udp_reply specified but --- udp_listen "
                 . "is specified");
    }

    my $query_file;
    if (defined $block->udp_query) {
        (my $fh, $query_file) = tempfile('test-nginx-udp-query-XXXXXX',
                                         TMPDIR => 1);
        close $fh;
    }

    my $target = expand_env_in_text($block->udp_listen, $name, $rand_ports);
    $target =~ s/^\s+|\s+$//g;
    my ($sock, $uds);
    if ($target =~ /^\d+$/) {
        $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $target,
                                      Proto     => 'udp',
                                      ReuseAddr => 1)
            or bail_out("$name - failed to create the udp listening "
                        . "socket: $!");
    } elsif ($target =~ m{\S+\.sock$}) {
        unlink $target if -e $target;
        $sock = IO::Socket::UNIX->new(Local => $target, Type => SOCK_DGRAM)
            or bail_out("$name - failed to create the udp socket: $!");
        $uds = $target;
    } else {
        bail_out("$name - bad udp_listen target: $target");
    }

    my $pid = fork();
    bail_out("$name - fork() failed: $!") if !defined $pid;

    if ($pid == 0) {
        $InSubprocess = 1;
        Test::More->builder->no_ending(1);
        $SIG{TERM} = sub { POSIX::_exit(0) };
        my $buf = '';
        my $peer = $sock->recv($buf, 4096);
        if ($query_file && open my $out, '>', $query_file) {
            binmode $out;
            print $out $buf;
            close $out;
        }
        my $delay = parse_time($block->udp_reply_delay);
        sleep $delay if $delay;
        if (ref $reply eq 'CODE') {
            $reply = $reply->($buf);
        }
        for my $r (ref $reply eq 'ARRAY' ? @$reply : ($reply)) {
            next if !defined $r;
            if (defined $peer && length $peer) {
                send($sock, $r, 0, $peer);
            } else {
                $sock->send($r);
            }
        }
        POSIX::_exit(0);
    }

    $UdpServerPid = $pid;
    return ($sock, $query_file, $uds);
}

sub _slurp ($) {
    my $file = shift;
    return '' if !$file;
    open my $in, '<', $file or return '';
    binmode $in;
    local $/;
    my $s = <$in>;
    close $in;
    return defined $s ? $s : '';
}

sub run_tcp_server_tests ($$$) {
    my ($block, $tcp_socket, $query_file) = @_;
    my $name = $block->name;
    return if !defined $tcp_socket;

    my $buf = _slurp($query_file);
    if (defined $block->tcp_query) {
        is_str($buf, $block->tcp_query, "$name - tcp_query ok");
    }
    if (defined $block->tcp_query_len) {
        Test::More::is(length($buf), $block->tcp_query_len,
                       "$name - TCP query length ok");
    }
}

sub run_udp_server_tests ($$$) {
    my ($block, $udp_socket, $query_file) = @_;
    my $name = $block->name;
    return if !defined $udp_socket;
    if (defined $block->udp_query) {
        is_str(_slurp($query_file), $block->udp_query,
               "$name - udp_query ok");
    }
}

# ---------------------------------------------------------------------------
# the per-block life cycle

sub _skip_spec ($) {
    my $block = shift;
    my $name = $block->name;
    my ($n, $should_skip, $reason);

    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ m{^\s*(\d+)\s*:\s*(.*)}s) {
            $n = $1;
            $reason = 'skip_eval';
            my $code = $2;
            $should_skip = _eval_perl($code);
            if ($@) {
                bail_out("$name - skip_eval - failed to eval the Perl code "
                         . "\"$code\": $@");
            }
        }
    }

    if (defined(my $spec = $block->skip_nginx)) {
        if ($spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                       (?:\s*:\s*(.*))?\s*$}x)
        {
            $n = $1;
            my ($op, $v) = ($2, get_canon_version($3, $4, $5));
            $reason = $6 || "nginx version $op $3.$4.$5";
            my $cur = $NginxVersion;
            my $hit = $op eq '<'  ? $cur <  $v
                    : $op eq '<=' ? $cur <= $v
                    : $op eq '>'  ? $cur >  $v
                    :               $cur >= $v;
            $should_skip = 1 if $hit;
        } else {
            bail_out("$name - Invalid --- skip_nginx spec: $spec");
        }
    }

    return ($n, $should_skip, $reason || 'various reasons');
}

sub _eval_perl {
    # string eval in this package, strict on, like the real scaffold
    return eval $_[0];
}

sub run_tests () {
    $NginxVersion = get_nginx_version();

    if (!defined $ENV{TEST_NGINX_SERVER_PORT}) {
        $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
    }

    for my $block (Test::Nginx::Socket::_all_blocks()) {
        for my $hdl (@BlockPreprocessors) {
            $hdl->($block);
        }
        $block->set_value('name', $0 . ' ' . $block->name);
        Test::Nginx::Socket::_check_section_names($block);
        run_test($block);
        $PrevBlock = $block;
    }

    cleanup();
}

sub run_test ($) {
    my $block = shift;

    return if defined $block->SKIP;

    my $name = $block->name;

    my $first_time;
    if ($FirstTime) {
        $first_time = 1;
        undef $FirstTime;
    }

    my $rand_ports = $block->{_rand_ports} = {};
    my $config = expand_env_in_text($block->config, $name, $rand_ports);

    local $LogLevel = $LogLevel;
    $LogLevel = $block->log_level if $block->log_level;

    local $UseHup = $UseHup;
    my $must_die;
    if (defined $block->must_die) {
        $must_die = $block->must_die;
        undef $UseHup;
    }

    my ($should_restart, $should_reconfig) = (1, 1);
    if (!defined $config) {
        if (!$NoNginxManager && !defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?");
        }
        for my $s (qw(http_config main_config post_main_config user_files)) {
            if (defined $block->$s) {
                Test::More::diag("WARNING: $name - has --- $s but no "
                    . "--- config: the real Test::Nginx then reuses the "
                    . "previous block's nginx and ignores --- $s");
                last;
            }
        }
        ($should_restart, $should_reconfig) = (0, 0);
    } elsif ($NoNginxManager) {
        ($should_restart, $should_reconfig) = (0, 0);
    } else {
        $should_reconfig = (!defined $PrevConfig || $config ne $PrevConfig) ? 1 : 0;
        $should_restart = ($should_reconfig || $ForceRestartOnTest) ? 1 : 0;
    }

    my ($tests_to_skip, $should_skip, $skip_reason) = _skip_spec($block);

    my ($should_todo, $todo_reason);
    if (defined(my $todo = $block->todo)) {
        if ($todo =~ m{^\s*(\d+)\s*:\s*(.*)}s) {
            ($should_todo, $tests_to_skip, $todo_reason) = (1, $1, $2);
        } else {
            bail_out("$name - Invalid --- todo spec: $todo");
        }
    }

    if ($should_skip && defined $tests_to_skip) {
        # like the real one: no nginx start, just the skipped subtests
        for (1 .. $RepeatEach) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }
        }
        return;
    }

    if ($should_todo) {
        for (1 .. $RepeatEach) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason", $tests_to_skip);
            }
        }
        return;
    }

    if (!$NoNginxManager && $should_restart) {
        $ConfigVersion = gen_rand_str(10) if $UseHup;
        $PrevConfig = $config if $should_reconfig;

        my $reloaded;
        my $pid = -f $PidFile ? get_pid_from_pidfile($name) : '';

        if ($pid =~ /^\d+$/ && is_running($pid)) {
            if ($UseHup && !$first_time) {
                setup_server_root(0);
                write_user_files($block, $rand_ports);
                write_config_file($block, $config, $rand_ports);
                _post_setup_server_root($block);
                if (kill('USR1', $pid)) {
                    sleep $TestNginxSleep;
                    if (kill('HUP', $pid)) {
                        sleep $TestNginxSleep * 3;
                        wait_for_config_version($name);
                        check_prev_block_shutdown_error_log();
                        $reloaded = 1;
                    }
                }
                warn "$name - failed to reload nginx by HUP\n" if !$reloaded;
            }
            if (!$reloaded) {
                kill_nginx($pid, $name);
            }
        }

        if (!$reloaded) {
            unlink $PidFile if -f $PidFile;

            check_prev_block_shutdown_error_log();

            setup_server_root($first_time);
            write_user_files($block, $rand_ports);
            write_config_file($block, $config, $rand_ports);
            _post_setup_server_root($block);

            if (defined $must_die) {
                run_must_die($block, $must_die);
                return;
            }

            start_nginx($block);
        }
    }

    if ($block->init) {
        # like the real scaffold: the code sees the block as $block
        eval $block->init;
        if ($@) {
            bail_out("$name - init failed: $@");
        }
    }

    $ErrLogFilePos = 0;
    @ExtraErrLogLines = ();

    for my $i (1 .. $RepeatEach) {
        my ($tcp_socket, $tcp_query_file);
        if (defined $block->tcp_listen) {
            ($tcp_socket, $tcp_query_file) = start_tcp_server($block, $rand_ports);
        }

        my ($udp_socket, $udp_query_file, $uds);
        if (defined $block->udp_listen) {
            ($udp_socket, $udp_query_file, $uds) = start_udp_server($block, $rand_ports);
        }

        if ($i > 1) {
            write_user_files($block, $rand_ports);
        }

        $RunTestHelper->($block, 0, $i - 1);
        run_tcp_server_tests($block, $tcp_socket, $tcp_query_file);
        run_udp_server_tests($block, $udp_socket, $udp_query_file);

        if (defined $udp_socket) {
            kill_child($UdpServerPid) if defined $UdpServerPid;
            undef $UdpServerPid;
            close $udp_socket;
            unlink $uds if defined $uds;
        }
        unlink $udp_query_file if $udp_query_file;

        if (defined $tcp_socket) {
            kill_child($TcpServerPid) if defined $TcpServerPid;
            undef $TcpServerPid;
            close $tcp_socket;
        }
        unlink $tcp_query_file if $tcp_query_file;
    }

    if (my $total = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile && open my $out, '>>', $total) {
            print $out "\n=== $name\n", _slurp($ErrLogFile);
            close $out;
        }
    }
}

sub _post_setup_server_root ($) {
    my $block = shift;
    if (defined(my $code = $block->post_setup_server_root)) {
        _eval_perl($code);
        if ($@) {
            bail_out($block->name . " - post_setup_server_root failed: $@");
        }
    }
}

sub run_must_die ($$) {
    my ($block, $must_die) = @_;
    my $name = $block->name;

    $ErrLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        my ($status, $err, $exec_failed) = run_nginx_command();
        my $exit_code = $status >> 8;
        my $coredump = $status & 128;

        if ($exec_failed) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($coredump) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($must_die, $exit_code,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        @ExtraErrLogLines = map { "$_\n" } grep { /\S/ } split /\n/, $err;
        $CheckErrorLog->($block, undef, 0, $i, 0);
        @ExtraErrLogLines = ();

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it (req $i)\n";
            my $pid = wait_for_pid_file($name);
            kill_nginx($pid, $name) if $pid;
            unlink $PidFile if -f $PidFile;
        }
    }
}

END {
    local $?;
    _end_hook();
}

sub _end_hook {
    return if $InSubprocess || !defined $MainPid || $$ != $MainPid;

    cleanup();

    if (!$ENV{TEST_NGINX_NO_CLEAN}) {
        stop_nginx('END');
    }

    check_prev_block_shutdown_error_log();

    if ($Randomize && defined $ServRoot && $ServRoot =~ m{/t/servroot_\d+$}
        && -d $ServRoot && !$ENV{TEST_NGINX_NO_CLEAN})
    {
        remove_tree($ServRoot);
    }
}

1;
