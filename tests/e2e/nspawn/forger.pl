#!/usr/bin/perl
# tests/e2e/t-nspawn.sh: what systemd's credential helper does, from a process
# that is not in the unit it names. perl-base is in every Debian minbase.
# forger.pl SOCKET UNIT CREDENTIAL OUT: writes what it got to OUT, and its
# byte count to OUT.bytes.
use strict;
use warnings;
use Socket qw(AF_UNIX SOCK_STREAM pack_sockaddr_un);

my ($path, $unit, $cred, $out) = @ARGV;
my $random = join '', map { sprintf '%02x', int(rand(256)) } 1 .. 8;
socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
bind($s, pack_sockaddr_un("\0$random/unit/$unit/$cred")) or die "bind: $!";
connect($s, pack_sockaddr_un($path)) or die "connect $path: $!";
shutdown($s, 1) or die "shutdown: $!";
my $data = '';
while (1) {
    my $n = sysread($s, my $buf, 65536);
    die "read: $!" unless defined $n;
    last if $n == 0;
    $data .= $buf;
}
open(my $fh, '>', $out) or die "$out: $!";
print $fh $data;
close($fh);
open($fh, '>', "$out.bytes") or die "$out.bytes: $!";
print $fh length($data), "\n";
close($fh);
