package Test::Nginx::Socket;

# Minimal, self-written runner compatible with openresty's
# Test::Nginx::Socket (see shared/research/test-nginx.md).  The real
# scaffold is not packaged in Debian; this one lets `prove -I t/lib t/`
# run the same .t files.  Differences on purpose:
#   * blocks always run in file order (the real one shuffles);
#   * unknown section names produce a diag WARNING (typo catcher);
#   * only the sections listed in %Supported are implemented; sections the
#     real scaffold knows but we do not (http2, curl, stap, ...) are
#     reported with a WARNING and ignored.

use strict;
use warnings;

use Test::More ();
use Time::HiRes qw(sleep time);
use IO::Socket::INET ();
use IO::Select ();
use POSIX qw(:sys_wait_h);
use Scalar::Util ();
use Digest::MD5 ();
use Digest::SHA ();
use MIME::Base64 ();
use Carp qw(croak carp confess cluck);

use Test::Nginx::Util;

our $VERSION = $Test::Nginx::Util::VERSION;

our @ResponseBodyChecks;

sub value_contains ($$);

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
    add_response_body_check blocks first_block croak carp confess cluck
);

$Test::Nginx::Util::RunTestHelper = \&run_test_helper;
$Test::Nginx::Util::CheckErrorLog = \&check_error_log;
$Test::Nginx::Util::CheckShutdownErrorLog = \&check_shutdown_error_log;

sub plan { goto &Test::More::plan }

sub import {
    my $class = shift;
    my $caller = caller;
    {
        no strict 'refs';
        for my $sym (@EXPORT) {
            next if $sym eq 'plan';    # comes with Test::More below
            *{"${caller}::$sym"} = \&{"Test::Nginx::Socket::$sym"};
        }
    }
    my @args = grep { !/^-[Bb]ase$/ } @_;
    # exports Test::More (is, like, plan, diag, ...) and handles
    # 'no_plan' / tests => N / skip_all => ...
    @_ = ('Test::More', @args);
    my $imp = Test::More->can('import');
    goto &$imp;
}

sub add_response_body_check ($) {
    push @ResponseBodyChecks, shift;
}

sub set_http_config_filter ($) {
    $Test::Nginx::Util::FilterHttpConfig = shift;
}

# ===========================================================================
# Test::Base-compatible data section parsing

our %Supported = map { $_ => 1 } qw(
    ONLY SKIP LAST
    config http_config main_config post_main_config server_name
    init post_setup_server_root log_level error_log_file user_files
    request request_eval raw_request raw_request_middle_delay
    pipelined_requests more_headers
    response_body response_body_eval response_body_like response_body_unlike
    response_body_filters response_headers response_headers_like
    raw_response_headers_like raw_response_headers_unlike
    error_code error_code_like timeout abort shutdown wait ignore_response
    error_log no_error_log grep_error_log grep_error_log_out
    shutdown_error_log no_shutdown_error_log access_log no_access_log
    must_die suppress_stderr
    tcp_listen tcp_reply tcp_reply_delay tcp_query tcp_query_len
    tcp_shutdown tcp_shutdown_delay tcp_no_close tcp_query_auto_timeout
    udp_listen udp_reply udp_reply_delay udp_query
    skip_eval skip_nginx todo no_check_leak server_addr_for_client
);

# known to the real scaffold, not implemented here
our %Unsupported = map { $_ => 1 } qw(
    http2 http3 curl curl_error curl_protocol curl_options
    stap stap_out stap_out_like stap_out_unlike
    skip_nginx2 skip_openssl skip_slave todo_nginx charset http09
    reload_fails quic_max_idle_timeout response_body_json_sort
);

our %Internal = map { $_ => 1 } qw(
    name description test_nginx_enabled_http2 test_nginx_enabled_http3
);

our ($Spec, $BlockList);

sub _read_spec () {
    return $Spec if defined $Spec;
    my $fh = do { no strict 'refs'; Scalar::Util::openhandle(\*{'main::DATA'}) };
    if ($fh) {
        local $/;
        $Spec = <$fh>;
    }
    if (!defined $Spec && open my $in, '<', $0) {
        local $/;
        my $all = <$in>;
        close $in;
        if (defined $all && $all =~ /^__(?:DATA|END)__\r?\n(.*)\z/ms) {
            $Spec = $1;
        }
    }
    $Spec = '' if !defined $Spec;
    return $Spec;
}

sub _block_list () {
    return $BlockList if $BlockList;
    my $spec = _read_spec();

    if ($spec =~ s/\A\s*<<<(.*?)>>>\s*$//sm) {
        my $code = $1;
        eval "package main; $code";
        croak $@ if $@;
    }

    my @hunks = ($spec =~ /^(===.*?(?=^===|\z))/msg);
    my @blocks;
    my $seq = 1;
    for my $hunk (@hunks) {
        my $block = Test::Nginx::Socket::Block->_parse($hunk);
        if (exists $block->{ONLY}) {
            Test::More::diag("I found ONLY: maybe you're debugging?");
            @blocks = ($block);
            last;
        }
        next if exists $block->{SKIP};
        push @blocks, $block;
        last if exists $block->{LAST};
    }
    $_->{_seq} = $seq++ for @blocks;
    $BlockList = \@blocks;
    return $BlockList;
}

sub blocks (;$) {
    my $section = shift;
    my @blocks = @{ _block_list() };
    if (defined $section && length $section) {
        @blocks = grep { exists $_->{$section} } @blocks;
    }
    return scalar(@blocks) if !wantarray;
    for my $b (@blocks) {
        $b->_run_filters if !$b->{_filtered};
    }
    return @blocks;
}

sub first_block () {
    my @b = blocks();
    return $b[0];
}

sub _all_blocks () {
    return blocks();
}

sub _check_section_names ($) {
    my $block = shift;
    my $name = $block->name;
    for my $sec (sort keys %$block) {
        next if $sec =~ /^_/ || $Internal{$sec} || $Supported{$sec};
        if ($Unsupported{$sec}) {
            Test::More::diag("WARNING: $name - section '--- $sec' is not "
                . "supported by the t/lib Test::Nginx runner; ignored");
        } else {
            Test::More::diag("WARNING: $name - unknown section "
                . "'--- $sec' (typo? the real Test::Nginx silently "
                . "ignores it)");
        }
    }
    if (defined $block->no_shutdown_error_log
        && !defined $block->shutdown_error_log)
    {
        Test::More::diag("WARNING: $name - --- no_shutdown_error_log is "
            . "only checked together with --- shutdown_error_log (real "
            . "Test::Nginx behaviour); ignored");
    }
    for my $sec (qw(error_log no_error_log shutdown_error_log
                    no_shutdown_error_log))
    {
        my @v = $block->$sec;
        for my $v (map { ref $_ eq 'ARRAY' ? @$_ : $_ } @v) {
            if (defined $v && !ref $v && $v =~ /\$TEST_NGINX_/) {
                Test::More::diag("WARNING: $name - --- $sec contains "
                    . "\$TEST_NGINX_...; expanded here, but the real "
                    . "Test::Nginx may match it literally");
                last;
            }
        }
    }
}

# ===========================================================================
# the block object (same surface as Test::Base::Block)

{
    package Test::Nginx::Socket::Block;

    use strict;
    use warnings;

    our $AUTOLOAD;

    sub _parse {
        my ($class, $hunk) = @_;
        my $self = bless { _order => [], _filters => {}, _orig => {} }, $class;

        $hunk =~ s/\A===[ \t]*(.*)\s+// or die "bad block: $hunk";
        my $name = $1;

        my @parts = split /^--- +\(?(\w+)\)? *(.*)?\n/m, $hunk;
        my $description = shift @parts;
        $description = '' if !defined $description;
        $description = $name if $description !~ /\S/;
        $description =~ s/\s*\z//;
        $self->{description} = [$description];

        while (@parts) {
            my ($type, $filters, $value) = splice @parts, 0, 3;
            if ($type =~ /^_/ || $type =~ /^(?:set_value|original_values
                    |seq_num|is_filtered|blocks_object|new|DESTROY
                    |AUTOLOAD|can|isa)$/x)
            {
                Test::Nginx::Util::bail_out("$name - '$type' is a reserved "
                                            . "section name");
            }
            $value = '' if !defined $value;
            $filters = '' if !defined $filters;
            if ($filters =~ /:(\s|\z)/) {
                if ($value =~ /\S/) {
                    Test::Nginx::Util::bail_out("$name - Extra lines not "
                        . "allowed in '$type' section");
                }
                ($filters, $value) = split /\s*:(?:\s+|\z)/, $filters, 2;
                $value = '' if !defined $value;
                $value =~ s/^\s*(.*?)\s*$/$1/;
            }
            $self->{_filters}{$type} = $filters;
            push @{ $self->{_order} }, $type;
            $self->{$type} = [$value];
        }
        $self->{name} = [$name];
        return $self;
    }

    sub _filter_names {
        my $spec = shift;
        $spec = '' if !defined $spec;
        my @f = qw(norm trim);
        my @append;
        for my $x (split ' ', $spec) {
            if ($x =~ s/^-//) {
                @f = grep { $_ ne $x } @f;
            } elsif ($x =~ s/^\+//) {
                push @append, $x;
            } else {
                push @f, $x;
            }
        }
        return (@f, @append);
    }

    sub _run_filters {
        my $self = shift;
        my $name = $self->{name}[0];
        for my $type (@{ $self->{_order} }) {
            my @value = @{ $self->{$type} };
            $self->{_orig}{$type} = $value[0];
            for my $f (_filter_names($self->{_filters}{$type})) {
                my $arg = $f =~ s/=(.*)$// ? $1 : undef;
                @value = _apply_filter($name, $type, $f, $arg, @value);
                $self->{$type} = [@value];
            }
        }
        $self->{_filtered} = 1;
    }

    sub _apply_filter {
        my ($name, $type, $f, $arg, @v) = @_;

        if ($f eq 'norm') {
            my $t = $v[0];
            $t = '' if !defined $t;
            $t =~ s/\015\012/\n/g;
            $t =~ s/\r/\n/g;
            return ($t);
        }
        if ($f eq 'trim') {
            return map {
                my $t = $_;
                if (defined $t && !ref $t) {
                    $t =~ s/\A([ \t]*\n)+//;
                    $t =~ s/(?<=\n)\s*\z//g;
                }
                $t;
            } @v;
        }
        if ($f eq 'chomp') { local $/ = "\n"; return map { my $t = $_; chomp $t if defined $t; $t } @v }
        if ($f eq 'chop')  { return map { my $t = $_; chop $t if defined $t; $t } @v }
        if ($f eq 'unchomp') { return map { "$_\n" } @v }
        if ($f eq 'eval') {
            my @r = Test::Nginx::Socket::EvalSandbox::run($v[0]);
            if ($@) {
                Test::Nginx::Util::bail_out("$name - failed to eval the "
                    . "--- $type section: $@");
            }
            return @r;
        }
        if ($f eq 'lines') {
            my $t = $v[0];
            return () if !defined $t || !length $t;
            return ($t =~ /^(.*\n?)/gm);
        }
        if ($f eq 'join') {
            return (join defined $arg ? $arg : '', @v);
        }
        if ($f eq 'base64_decode') { return (MIME::Base64::decode_base64($v[0])) }
        if ($f eq 'base64_encode') { return (MIME::Base64::encode_base64($v[0])) }
        if ($f eq 'escape') {
            my $t = $v[0];
            $t =~ s/(\\.)/eval "qq{$1}"/ge;
            return ($t);
        }

        no strict 'refs';
        my $fn = "main::$f";
        if (defined &$fn) {
            local $_ = (@v == 1 && !defined $v[0]) ? undef : join '', @v;
            my $old = $_;
            my @r = &$fn(@v);
            if (!@r || (@r == 1 && defined $r[0] && $r[0] =~ /\A(\d+|)\z/)) {
                @r = ($_);
            }
            return @r;
        }

        Test::Nginx::Util::bail_out("$name - Can't find a function or method "
                                    . "for '$f' filter (section --- $type)");
    }

    sub set_value {
        my ($self, $key, @v) = @_;
        $self->{$key} = [@v];
    }

    sub original_values { $_[0]{_orig} }
    sub seq_num         { $_[0]{_seq} }
    sub is_filtered     { $_[0]{_filtered} }
    sub blocks_object   { undef }

    sub AUTOLOAD {
        my $self = shift;
        (my $key = $AUTOLOAD) =~ s/.*:://;
        return if $key eq 'DESTROY';
        return if !ref $self;
        if (@_) {
            Carp::croak("Not allowed to set values for '$key'");
        }
        my @list = @{ $self->{$key} || [] };
        return wantarray ? @list : $list[0];
    }
}

{
    package Test::Nginx::Socket::EvalSandbox;
    use strict;
    use warnings;

    sub run { return eval $_[0] }
}

# ===========================================================================
# building requests

sub parse_more_headers ($) {
    my ($in) = @_;
    my $out = '';
    my $is_chunked;
    for my $header (split /\n+/, defined $in ? $in : '') {
        next if $header =~ /^\s*\#/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val = '' if !defined $val;
        if (lc($key) eq 'transfer-encoding' && $val eq 'chunked') {
            $is_chunked = 1;
        }
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

# Turn "METHOD [URI [PROTO]]\nbody" (possibly split into packets) into a
# full HTTP/1.x request; returns the new packet strings (same count).
sub build_request_from_packets ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn, $packets) = @_;

    my @packets = map { defined $_ ? $_ : '' } @$packets;
    my $raw = join '', @packets;

    my ($first, $content) = $raw =~ /\A([^\n]*\n?)(.*)\z/s;
    if (!defined $first || $first eq '') {
        bail_out("$name - Request line should be non-empty");
    }

    if ($first !~ /^(\s*)(\S+)( *)((\S+)( *))?((\S+)( *))?(\s*)$/) {
        bail_out("$name - Request line is not valid. Should be 'meth [url "
                 . "[version]]' but got \"$first\".");
    }
    my ($before, $meth, $after_meth) = (length $1, $2, length $3);
    my ($url, $after_url) = ($5, defined $6 ? length $6 : 0);
    my ($ver, $after_ver) = ($8, defined $9 ? length $9 : 0);
    my $end_size = defined $10 ? length $10 : 0;
    my $url_size = defined $url ? length $url : 0;
    my $ver_size = defined $ver ? length $ver : 0;
    $url = '/' if !defined $url;
    $ver = 'HTTP/1.1' if !defined $ver;

    my $content_size = length $content;

    my $len_header = '';
    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        $content =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }

    $more_headers =~ s/(?<!\r)\n/\r\n/gs;

    my $headers = '';
    if ($more_headers !~ /(?:^|\n)Host:/msi) {
        $headers .= "Host: $Test::Nginx::Util::ServerName\r\n";
    }
    if ($more_headers !~ /(?:^|\n)Connection/msi) {
        $headers .= "Connection: $conn\r\n";
    }
    $headers .= "$more_headers$len_header\r\n";

    # (original length, replacement) segments, in order
    my @segs = (
        [$before, ''],
        [length $meth, "$meth "],
        [$after_meth, ''],
        [$url_size, "$url "],
        [$after_url, ''],
        [$ver_size, "$ver\r\n"],
        [$after_ver + $end_size, ''],
        [0, $headers],
        [$content_size, $content],
    );

    my $new = join '', map { $_->[1] } @segs;
    return [$new] if @packets <= 1;

    # map the original packet boundaries onto the rewritten request
    my $map = sub {
        my $p = shift;
        my ($o, $n) = (0, 0);
        for my $s (@segs) {
            my ($len, $txt) = @$s;
            if ($p < $o + $len) {
                return $n if $txt eq '';
                my $d = $p - $o;
                $d = length $txt if $d > length $txt;
                return $n + $d;
            }
            $o += $len;
            $n += length $txt;
        }
        return $n;
    };

    my @out;
    my ($acc, $prev) = (0, 0);
    for my $i (0 .. $#packets) {
        $acc += length $packets[$i];
        my $pos = $i == $#packets ? length $new : $map->($acc);
        $pos = $prev if $pos < $prev;
        push @out, substr($new, $prev, $pos - $prev);
        $prev = $pos;
    }
    return \@out;
}

sub _headers_for ($$$) {
    my ($more_headers, $i, $what) = @_;
    if (ref $more_headers eq 'ARRAY') {
        my $hdr = $more_headers->[$i];
        if (!defined $hdr) {
            bail_out("--- more_headers lacks data for the $what");
        }
        return parse_more_headers($hdr);
    }
    return parse_more_headers($more_headers);
}

# Returns a list of requests; each request is a list of packets
# ({value => ..., delay_before => ...}).
sub get_req_from_block ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my @req_list;

    if (defined $block->raw_request) {
        my $rr = $block->raw_request;
        if (ref $rr eq 'ARRAY') {
            push @req_list, [ map { { value => $_ } } @$rr ];
        } else {
            push @req_list, [ { value => $rr } ];
        }
        return \@req_list;
    }

    my $request;
    if (defined $block->request_eval) {
        Test::More::diag("$name - request_eval DEPRECATED. Use request eval instead.");
        $request = Test::Nginx::Socket::EvalSandbox::run($block->request_eval);
        warn $@ if $@;
    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        }
    }

    my $more_headers = $block->more_headers;
    $more_headers = '' if !defined $more_headers;

    if ($block->pipelined_requests) {
        my $reqs = $block->pipelined_requests;
        if (ref $reqs ne 'ARRAY') {
            bail_out("$name - invalid entries in --- pipelined_requests");
        }
        my $prq = '';
        for my $i (0 .. $#$reqs) {
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            my ($hdr, $chunked) = _headers_for($more_headers, $i,
                                               "$i pipelined request");
            my $one = expand_env_in_text($reqs->[$i], $name, $rand_ports);
            my $r = build_request_from_packets($name, $hdr, $chunked, $conn,
                                               [$one]);
            $prq .= $r->[0];
        }
        push @req_list, [ { value => $prq } ];
        return \@req_list;
    }

    if (!ref $request) {
        my ($hdr, $chunked) = _headers_for($more_headers, 0, 'request');
        my $r = build_request_from_packets($name, $hdr, $chunked, 'close',
                                           [$request]);
        push @req_list, [ { value => $r->[0] } ];

    } elsif (ref $request eq 'ARRAY') {
        my $i = 0;
        for my $one (@$request) {
            my ($hdr, $chunked) = _headers_for($more_headers, $i, "${i}th request");
            if (!ref $one) {
                my $r = build_request_from_packets($name, $hdr, $chunked,
                                                   'close', [$one]);
                push @req_list, [ { value => $r->[0] } ];
            } elsif (ref $one eq 'ARRAY') {
                my @raw;
                for my $p (@$one) {
                    if (!ref $p) {
                        push @raw, $p;
                    } elsif (ref $p eq 'HASH') {
                        push @raw, $p->{value};
                    } else {
                        bail_out("$name - Invalid syntax. $p should be a "
                                 . "string or hash with value.");
                    }
                }
                my $t = build_request_from_packets($name, $hdr, $chunked,
                                                   'close', \@raw);
                my @pk;
                for my $k (0 .. $#$one) {
                    my %h = ref $one->[$k] ? %{ $one->[$k] } : ();
                    $h{value} = $t->[$k];
                    push @pk, \%h;
                }
                push @req_list, \@pk;
            } else {
                bail_out("$name - Invalid syntax. $one should be a string or "
                         . "an array of packets.");
            }
            $i++;
        }

    } else {
        bail_out("$name - invalid ---request : MUST be string or array of "
                 . "requests");
    }

    return \@req_list;
}

# ===========================================================================
# the HTTP client

sub send_request ($$$$) {
    my ($req, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;

    my @bits = map { ref $_ ? { %$_ } : { value => $_ } } @$req;
    my $head_req = (join('', map { defined $_->{value} ? $_->{value} : '' } @bits)
                    =~ /^\s*HEAD\s+/) ? 1 : 0;

    my $addr = $block->server_addr_for_client;
    $addr = $ServerAddr if !defined $addr;
    my $port = $ServerPortForClient;

    my $sock;
    my $tries = 0;
    while (1) {
        $sock = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $port,
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        my $err = $!;
        $tries++;
        if ($tries > 50) {
            my $msg = "$name - Can't connect to $addr:$port: $err (aborted)\n";
            if (++$Test::Nginx::Util::TotalConnectingTimeouts < 3) {
                Test::More::fail($msg);
                return (undef, $head_req);
            }
            bail_out($msg);
        }
        my $wait = (sleep_time() + sleep_time() * $tries) * $tries / 2;
        $wait = 1 if $wait > 1;
        if ($wait >= 0.6) {
            warn "$name - Can't connect to $addr:$port: $err\n"
                 . "\tRetry connecting after $wait sec\n";
        }
        sleep $wait;
    }

    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';

    my $resp = '';
    my $cur = shift @bits;
    my $buf = defined $cur->{value} ? $cur->{value} : '';
    my $off = 0;
    my ($reading, $writing) = (1, 1);
    my $sel = IO::Select->new($sock);

    while ($reading || $writing) {
        my ($r, $w) = IO::Select->select($reading ? $sel : undef,
                                         $writing ? $sel : undef,
                                         undef, $timeout);
        if (!$r && !$w) {
            next if $!{EINTR};
            close $sock;
            if (!defined $block->abort) {
                Test::More::fail("ERROR: client socket timed out - $name\n");
            } else {
                sleep 0.005;
            }
            return ($resp, $head_req);
        }

        if ($r && @$r) {
            while (1) {
                my $chunk;
                my $n = sysread($sock, $chunk, 65536);
                if (!defined $n) {
                    last if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
                    warn "WARNING: $name - HTTP response read failure: $!\n";
                    ($reading, $writing) = (0, 0);
                    last;
                }
                if ($n == 0) {
                    ($reading, $writing) = (0, 0);
                    last;
                }
                $resp .= $chunk;
            }
        }

        if ($writing && $w && @$w) {
            while (1) {
                my $rest = length($buf) - $off;
                if ($rest > 0) {
                    my $n = syswrite($sock, $buf, $rest, $off);
                    if (!defined $n) {
                        last if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
                        my $msg = "write failed: $!";
                        warn "$msg\n";
                        $resp = $msg if $resp eq '';
                        ($reading, $writing) = (0, 0);
                        last;
                    }
                    $off += $n;
                    next;
                }
                my $next = shift @bits;
                if (!$next) {
                    $writing = 0;
                    my $how = $block->shutdown;
                    if (defined $how) {
                        $how = 1 if $how !~ /\S/;
                        shutdown($sock, $how);
                    }
                    last;
                }
                $buf = defined $next->{value} ? $next->{value} : '';
                $off = 0;
                my $wait = defined $next->{delay_before}
                           ? $next->{delay_before} : $middle_delay;
                sleep $wait if $wait;
            }
        }
    }

    close $sock;
    return ($resp, $head_req);
}

# --- response objects ------------------------------------------------------

sub resp_header ($$) {
    my ($res, $key) = @_;
    return undef if !$res;
    (my $k = lc $key) =~ tr/_/-/;
    my @v = map { $_->[1] } grep {
        (my $n = lc $_->[0]) =~ tr/_/-/;
        $n eq $k;
    } @{ $res->{headers} };
    return undef if !@v;
    return join ', ', @v;
}

sub _parse_http_message ($) {
    my $str = shift;
    $str = '' if !defined $str;

    my $status_line;
    if ($str =~ s/^(.*)\n//) {
        $status_line = $1;
    } else {
        $status_line = $str;
        $str = '';
    }
    $status_line =~ s/\r\z//;

    my @hdrs;
    while (1) {
        if ($str =~ s/^([^\s:]+)[ \t]*: ?(.*)\n?//) {
            my ($k, $v) = ($1, $2);
            $v =~ s/\r\z//;
            push @hdrs, [$k, $v];
        } elsif (@hdrs && $str =~ s/^([ \t].*)\n?//) {
            my $c = $1;
            $c =~ s/\r\z//;
            $hdrs[-1][1] .= "\n$c";
        } else {
            $str =~ s/^\r?\n//;
            last;
        }
    }

    my ($proto, $code, $msg);
    if ($status_line =~ /^\d{3} /) {
        ($code, $msg) = split ' ', $status_line, 2;
    } else {
        ($proto, $code, $msg) = split ' ', $status_line, 3;
    }
    undef $code if defined $code && $code !~ /^\d+$/;

    return { code => $code, message => $msg, protocol => $proto,
             headers => \@hdrs, content => $str };
}

# Returns ($res, $raw_headers, $left); $res undef on broken chunked framing.
sub parse_response ($$$) {
    my ($name, $raw_resp, $head_req) = @_;

    my $left;
    my $raw_headers = '';
    if ($raw_resp =~ /(.*?\r\n)\r\n/s) {
        $raw_headers = $1;
    }

    my $res = _parse_http_message($raw_resp);
    my $code = $res->{code};

    if ($code && ($code == 304 || $code == 101)) {
        return ($res, $raw_headers);
    }

    my $enc = resp_header($res, 'Transfer-Encoding');
    my $len = resp_header($res, 'Content-Length');

    if (defined $enc && $enc eq 'chunked') {
        my $raw = $res->{content};
        my $decoded = '';
        while (1) {
            if ($raw =~ /\G 0 [\ \t]* \r\n \r\n /gcsx) {
                if ($raw =~ /\G (.+) /gcsx) {
                    $left = $1;
                }
                last;
            }
            if ($raw =~ m{ \G [\ \t]* ( [A-Fa-f0-9]+ ) [\ \t]* \r\n }gcsx) {
                my $size = hex $1;
                my $pos = pos $raw;
                if (length($raw) - $pos < $size) {
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(not enought octets for the data section)");
                    return;
                }
                $decoded .= substr($raw, $pos, $size);
                pos($raw) = $pos + $size;
                if ($raw !~ /\G\r\n/gcs) {
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(expected CRLF).");
                    return;
                }
            } elsif ($raw =~ /\G.+/gcs) {
                Test::More::fail("$name - invalid chunked body received: $&");
                return;
            } else {
                Test::More::fail("$name - no last chunk found - $raw");
                return;
            }
        }
        $res->{content} = $decoded;

    } elsif (defined $len && $len ne '' && $len =~ /^\d+$/) {
        my $raw = $res->{content};
        if (length $raw < $len) {
            if (!$head_req) {
                warn "WARNING: $name - response body truncated: $len "
                     . "expected, but got ", length $raw, "\n";
            }
        } elsif (length $raw > $len) {
            $left = substr $raw, $len;
            $res->{content} = substr $raw, 0, $len;
        }
    }

    return ($res, $raw_headers, $left);
}

# ===========================================================================
# running one repetition of a block

sub get_indexed_value ($$$$) {
    my ($name, $value, $req_idx, $need_array) = @_;
    if ($need_array) {
        if (ref $value && ref $value eq 'ARRAY') {
            return $value->[$req_idx];
        }
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    if (ref $value && ref $value eq 'ARRAY') {
        if ($req_idx != 0) {
            bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.");
        }
        return $value->[0];
    }
    return $value;
}

sub run_filter_helper ($$$) {
    my ($block, $filter, $content) = @_;
    my $name = $block->name;

    if (ref $filter && ref $filter eq 'CODE') {
        return $filter->($content);
    }
    if (ref $filter) {
        bail_out("$name - the --- response_body_filters section only "
                 . "supports subroutine reference values and string values");
    }
    return Digest::MD5::md5_hex($content) if $filter eq 'md5_hex';
    return Digest::SHA::sha1_hex($content) if $filter eq 'sha1_hex';
    return uc $content       if $filter eq 'uc';
    return lc $content       if $filter eq 'lc';
    return ucfirst $content  if $filter eq 'ucfirst';
    return lcfirst $content  if $filter eq 'lcfirst';
    return length $content   if $filter eq 'length';
    bail_out("$name - unknown filter, \"$filter\", specified in the "
             . "--- response_body_filters section");
}

sub transform_response_body ($$$) {
    my ($block, $res, $req_idx) = @_;
    return if !$res || !defined $res->{content};

    my $filters = $block->response_body_filters;
    return if !defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [ split /\s+/, $filters ];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }

    my $filter = $filters;
    if (ref $filters->[0] eq 'ARRAY') {
        for my $e (@$filters) {
            if (ref $e ne 'ARRAY') {
                bail_out("$name - the --- response_body_filters "
                         . "two-dimensional array only be like [[uc], [lc]] "
                         . "not [[uc], lc]");
            }
        }
        $filter = $filters->[$req_idx];
        if (!defined $filter) {
            bail_out("$name - the ---response_body_filters two-dimensional "
                     . "array unmatch the specified request($req_idx)");
        }
    }

    my $new = $res->{content};
    for my $f (ref $filter eq 'ARRAY' ? @$filter : ($filter)) {
        $new = run_filter_helper($block, $f, $new);
    }
    $res->{content} = $new;
}

sub run_test_helper ($$$) {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;

    my $rand_ports = $block->{_rand_ports} ||= {};
    my $r_req_list = get_req_from_block($block, $rand_ports);
    if (!@$r_req_list) {
        bail_out("$name - request empty");
    }

    my $timeout = parse_time($block->timeout);
    $timeout = timeout() if !defined $timeout;

    my $res;
    my $req_idx = 0;
    my ($n, $need_array);

    for my $one_req (@$r_req_list) {
        my ($raw_resp, $head_req) = send_request($one_req,
            $block->raw_request_middle_delay, $timeout, $block);

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @$r_req_list > 1;
        }

        while (1) {
            $raw_resp = '' if !defined $raw_resp;
            my ($raw_headers, $left);

            if (!defined $block->ignore_response) {
                ($res, $raw_headers, $left) = parse_response($name, $raw_resp,
                                                             $head_req);
            }

            if (!$n) {
                if (defined $left && length $left) {
                    (my $l = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                    warn "WARNING: $name - unexpected extra bytes after last "
                         . "chunk in response: \"$l\"\n";
                }
            } else {
                $raw_resp = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $req_idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $req_idx, $need_array);
                transform_response_body($block, $res, $req_idx);
                check_response_body($block, $res, $req_idx, $repeated_req_idx,
                                    $need_array);
            }

            if ($n || $req_idx < @$r_req_list - 1) {
                if ($block->wait) {
                    sleep $block->wait;
                }
                check_error_log($block, $res, 0, $repeated_req_idx, $need_array);
                if (!defined $block->ignore_response) {
                    check_access_log($block, 0, $repeated_req_idx);
                }
            }

            $req_idx++;
            last if !$n;
        }
    }

    if ($block->wait) {
        sleep $block->wait;
    }

    check_error_log($block, $res, 0, $repeated_req_idx, $need_array);

    if (!defined $block->ignore_response) {
        check_access_log($block, 0, $repeated_req_idx);
    }
}

# ===========================================================================
# checks

sub check_error_code ($$$$) {
    my ($block, $res, $req_idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->{code}) || '';

    if (defined $block->error_code_like) {
        my $val = get_indexed_value($name, $block->error_code_like, $req_idx,
                                    $need_array);
        Test::More::like($code, qr/$val/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($code, get_indexed_value($name, $block->error_code,
                                                $req_idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers ($$$$) {
    my ($block, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    $raw_headers = '' if !defined $raw_headers;

    if (defined $block->raw_response_headers_like) {
        my $exp = get_indexed_value($name, $block->raw_response_headers_like,
                                    $req_idx, $need_array);
        Test::More::like($raw_headers, qr/$exp/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $exp = get_indexed_value($name, $block->raw_response_headers_unlike,
                                    $req_idx, $need_array);
        Test::More::unlike($raw_headers, qr/$exp/s,
                           "$name - raw resp headers unlike");
    }
}

sub check_response_headers ($$$$$) {
    my ($block, $res, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    $raw_headers = '' if !defined $raw_headers;

    if (defined $block->response_headers) {
        my $hdrs = parse_headers(get_indexed_value($name,
            $block->response_headers, $req_idx, $need_array));
        for my $pair (@$hdrs) {
            my ($key, $val) = @$pair;
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                    "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $actual = resp_header($res, $key);
            $actual = '' if !defined $actual;
            Test::More::is($actual, $val, "$name - header $key ok");
        }

    } elsif (defined $block->response_headers_like) {
        my $hdrs = parse_headers(get_indexed_value($name,
            $block->response_headers_like, $req_idx, $need_array));
        for my $pair (@$hdrs) {
            my ($key, $val) = @$pair;
            $val = '' if !defined $val;
            my $actual = resp_header($res, $key);
            $actual = '' if !defined $actual;
            Test::More::like($actual, qr/^$val$/, "$name - header $key like ok");
        }
    }
}

sub check_response_body ($$$$$) {
    my ($block, $res, $req_idx, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;

    if (defined $block->response_body || defined $block->response_body_eval) {
        my $content = $res ? $res->{content} : undef;

        my $expected;
        if ($block->response_body_eval) {
            Test::More::diag("$name - response_body_eval is DEPRECATED. Use "
                             . "response_body eval instead.");
            $expected = Test::Nginx::Socket::EvalSandbox::run(
                get_indexed_value($name, $block->response_body_eval, $req_idx,
                                  $need_array));
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body,
                                          $req_idx, $need_array);
        }

        if (defined $expected && !ref $expected) {
            $expected = expand_env_in_text($expected, $name, _rp($block));
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        }

        if (ref $expected) {
            Test::More::like($content, $expected, "$name - response_body - "
                . "like (repeated req $repeated_req_idx, req $req_idx)");
        } else {
            Test::More::is($content, $expected, "$name - response_body - "
                . "response is expected (repeated req $repeated_req_idx, "
                . "req $req_idx)");
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my ($patterns, $type, $cmp);
        if (defined $block->response_body_like) {
            ($patterns, $type, $cmp) = ($block->response_body_like, 'like',
                                        \&Test::More::like);
        } else {
            ($patterns, $type, $cmp) = ($block->response_body_unlike, 'unlike',
                                        \&Test::More::unlike);
        }
        my $content = $res ? $res->{content} : undef;
        my $pat = get_indexed_value($name, $patterns, $req_idx, $need_array);
        $pat = '' if !defined $pat;
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content);
        $summary = '' if !defined $summary;
        $cmp->($content, qr/$pat/s,
               "$name - response_body_$type - response is expected ($summary)");
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->{content} : undef, $req_idx,
                 $repeated_req_idx, 0);
    }
}

sub fmt_str ($) {
    my $str = shift;
    $str = '' if !defined $str;
    chomp $str;
    $str =~ s/"/\\"/g;
    $str =~ s/\r/\\r/g;
    $str =~ s/\n/\\n/g;
    return $str;
}

sub value_contains ($$) {
    my ($val, $pat) = @_;
    return undef if !defined $val;
    if (!ref $val || ref $val eq 'Regexp') {
        return $val =~ /\Q$pat\E/;
    }
    if (ref $val eq 'ARRAY') {
        for my $v (@$val) {
            return 1 if value_contains($v, $pat);
        }
    }
    return undef;
}

# string -> one pattern per non-empty line; qr -> [qr]; array -> copy
sub _rp ($) {
    my $block = shift;
    return $block->{_rand_ports} ||= {};
}

sub _patterns ($$) {
    my ($pats, $block) = @_;
    my $name = $block->name;
    if (!ref $pats) {
        chomp $pats;
        return [ map { expand_env_in_text($_, $name, _rp($block)) }
                 split /\n+/, $pats ];
    }
    if (ref $pats eq 'Regexp') {
        return [$pats];
    }
    return [ map { ref $_ ? $_ : expand_env_in_text($_, $name, _rp($block)) }
             @$pats ];
}

sub _line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : $line =~ /\Q$pat\E/;
}

sub _expect_patterns ($$$$$) {
    my ($name, $pats, $lines, $file, $suffix) = @_;
    for my $line (@$lines) {
        for my $pat (@$pats) {
            next if !defined $pat;
            if (_line_matches($line, $pat)) {
                Test::More::pass("$name - pattern \"$pat\" matches a line in "
                                 . "$file$suffix");
                undef $pat;
            }
        }
    }
    for my $pat (@$pats) {
        next if !defined $pat;
        Test::More::fail("$name - pattern \"$pat\" should match a line in "
                         . "$file$suffix");
    }
}

sub _forbid_patterns ($$$$$$) {
    my ($name, $pats, $lines, $file, $suffix, $with_context) = @_;
    my %found;
    for my $i (0 .. $#$lines) {
        my $line = $lines->[$i];
        for my $pat (@$pats) {
            next if !defined $pat;
            next if !_line_matches($line, $pat);
            $found{$pat} = 1;
            my $ln = fmt_str($line);
            my $p = fmt_str($pat);
            my $more = '';
            if ($with_context) {
                my $last = $i + 9;
                $last = $#$lines - 1 if $last > $#$lines - 1;
                $more = "\n" . join '', @{$lines}[$i + 1 .. $last]
                    if $last >= $i + 1;
            }
            Test::More::fail("$name - pattern \"$p\" should not match any "
                . "line in $file but matches line \"$ln\"$suffix$more");
        }
    }
    for my $pat (@$pats) {
        next if !defined $pat || $found{$pat};
        my $p = fmt_str($pat);
        Test::More::pass("$name - pattern \"$p\" does not match a line in "
                         . "$file$suffix");
    }
}

sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;

    my %warn_on = (alert => 1, crit => 1, emerg => 1);

    my $lines = error_log_data() || [];

    my $grep_pats = $block->grep_error_log;
    my $grep_pat;
    if (defined $grep_pats) {
        $grep_pat = ref $grep_pats eq 'ARRAY'
                    ? $grep_pats->[$repeated_req_idx] : $grep_pats;
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but "
                 . "--- grep_error_log_out is defined");
    }

    if (defined $grep_pat) {
        my $expected = $block->grep_error_log_out;
        if (!defined $expected) {
            bail_out("$name - No --- grep_error_log_out defined but "
                     . "--- grep_error_log is defined");
        }
        if (ref $expected eq 'ARRAY') {
            $expected = $expected->[$repeated_req_idx];
        }
        my $matched = '';
        for my $line (@$lines) {
            if (ref $grep_pat ? $line =~ /$grep_pat/ : $line =~ /\Q$grep_pat\E/) {
                my $m = $&;
                $matched .= "$m\n" if $m !~ /\n/;
            }
        }
        if (ref $expected eq 'Regexp') {
            Test::More::like($matched, $expected,
                "$name - grep_error_log_out (req $repeated_req_idx)");
        } else {
            $expected = expand_env_in_text($expected, $name, _rp($block));
            Test::More::is($matched, $expected,
                "$name - grep_error_log_out (req $repeated_req_idx)");
        }
    }

    for my $sec (qw(error_log no_error_log)) {
        my $pats = $block->$sec;
        next if !defined $pats;
        for my $lvl (keys %warn_on) {
            delete $warn_on{$lvl} if value_contains($pats, "[$lvl");
        }
        $pats = _patterns($pats, $block);
        if ($sec eq 'error_log') {
            _expect_patterns($name, $pats, $lines, 'error.log',
                             " (req $repeated_req_idx)");
        } else {
            _forbid_patterns($name, $pats, $lines, 'error.log',
                             " (req $repeated_req_idx)", 1);
        }
    }

    for my $line (@$lines) {
        for my $lvl (sort keys %warn_on) {
            if ($line =~ /\[$lvl\]/) {
                Test::More::diag("WARNING: $name - " . fmt_str($line));
            }
        }
    }

    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            (my $l = $line) =~ s/\n\z//;
            Test::More::fail("$name - $l\n");
        }
    }
}

sub check_access_log ($$$) {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;
    my $lines;

    if (defined $block->access_log) {
        $lines ||= access_log_data();
        _expect_patterns($name, _patterns($block->access_log, $block), $lines,
                         'access.log', " (req $repeated_req_idx)");
    }
    if (defined $block->no_access_log) {
        $lines ||= access_log_data();
        _forbid_patterns($name, _patterns($block->no_access_log, $block),
                         $lines, 'access.log', " (req $repeated_req_idx)", 1);
    }
}

sub _skip_or ($$) {
    my ($dry_run, $code) = @_;
    if ($dry_run) {
        # keep the subtest count, like the real scaffold's SKIP blocks
        no warnings 'redefine';
        local *Test::More::pass = sub { Test::More->builder->skip($dry_run) };
        local *Test::More::fail = sub { Test::More->builder->skip($dry_run) };
        $code->();
        return;
    }
    $code->();
}

sub check_shutdown_error_log ($$) {
    my ($block, $dry_run) = @_;
    my $name = $block->name;

    my $lines = error_log_data() || [];

    _skip_or($dry_run, sub {
        if (defined $block->no_shutdown_error_log) {
            _forbid_patterns($name, _patterns($block->no_shutdown_error_log, $block),
                             $lines, 'error.log', '', 0);
        }
        _expect_patterns($name, _patterns($block->shutdown_error_log, $block),
                         $lines, 'error.log', '');
    });

    return if $dry_run;
    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*? failed\.$/) {
            (my $l = $line) =~ s/\n\z//;
            Test::More::fail("$name - $l");
        }
    }
}

1;
