#!/usr/bin/perl
# translate.pl IN.cu OUT.cpp - the two constructs of a kernels/cuda/*.cu file that are not
# C++, rewritten for the CPU emulator (tests/cuda_emu, README.md there); nothing else changes
# and every line keeps its number (a #line directive names the .cu file, so compiler
# messages and __FILE__/__LINE__ point at the original):
#
#   kernel<T...><<<grid, block[, smem[, stream]]>>>(args);
#     -> ::cuda_emu::launch_kernel(::cuda_emu::cfg(grid, block[, smem[, stream]]),
#                                  "kernel<T...> (file.cu:LINE)", kernel<T...>, args);
#     wrapped as ::cuda_emu::bounds(cfg, N) when the kernel is declared with
#     __launch_bounds__(N), so a launch with more threads fails as on the GPU;
#   extern __shared__ [__align__(n)] T name[];
#     -> T *name = static_cast<T *>(::cuda_emu::dynamic_smem());
#
# Comments and string literals are masked before matching. A launch must be a statement of
# its own (it ends with ");"); anything that looks like a launch or a dynamic shared array
# and does not fit stops the build.
use strict;
use warnings;

die "usage: translate.pl IN.cu OUT.cpp\n" unless @ARGV == 2;
my ($in, $out) = @ARGV;
open(my $fh, '<', $in) or die "translate.pl: $in: $!\n";
my $src = do { local $/; <$fh> };
close $fh;

# the same text with comments, string and character literals blanked (newlines kept), so
# that positions match and nothing inside them is taken for code
sub mask {
    my ($s) = @_;
    my $m = $s;
    my $n = length $s;
    my $i = 0;
    my $blank = sub { my ($a, $b) = @_; for my $k ($a .. $b - 1) { substr($m, $k, 1) = ' ' if substr($s, $k, 1) ne "\n"; } };
    while ($i < $n) {
        my $c = substr($s, $i, 1);
        my $two = substr($s, $i, 2);
        if ($two eq '//') {
            my $e = index($s, "\n", $i);
            $e = $n if $e < 0;
            $blank->($i, $e);
            $i = $e;
        } elsif ($two eq '/*') {
            my $e = index($s, '*/', $i + 2);
            die "translate.pl: $in: unterminated comment\n" if $e < 0;
            $blank->($i, $e + 2);
            $i = $e + 2;
        } elsif ($c eq '"' || $c eq "'") {
            die "translate.pl: $in: raw string literals are not supported\n"
                if $c eq '"' && $i > 0 && substr($s, $i - 1, 1) eq 'R' && ($i < 2 || substr($s, $i - 2, 1) !~ /\w/);
            my $j = $i + 1;
            while ($j < $n && substr($s, $j, 1) ne $c) {
                $j++ if substr($s, $j, 1) eq '\\';
                $j++;
            }
            die "translate.pl: $in: unterminated literal\n" if $j >= $n;
            $blank->($i + 1, $j);
            $i = $j + 1;
        } else {
            $i++;
        }
    }
    return $m;
}

my $m = mask($src);
die "translate.pl: internal error: mask changed the length\n" unless length($m) == length($src);

sub line_of { my ($pos) = @_; return 1 + (substr($src, 0, $pos) =~ tr/\n//); }

# position just past the bracket matching the one at $pos (forward)
sub match_forward {
    my ($pos, $open, $close) = @_;
    my $depth = 0;
    for (my $i = $pos; $i < length $m; $i++) {
        my $c = substr($m, $i, 1);
        $depth++ if $c eq $open;
        $depth-- if $c eq $close;
        return $i + 1 if $depth == 0;
    }
    die sprintf("translate.pl: %s:%d: unbalanced '%s'\n", $in, line_of($pos), $open);
}

# kernels declared with __launch_bounds__(...): name -> bound expression(s)
my %bounds;
while ($m =~ /__launch_bounds__\s*\(/g) {
    my $open = pos($m) - 1;
    my $end = match_forward($open, '(', ')');
    my $expr = substr($src, $open + 1, $end - $open - 2);
    my $rest = substr($m, $end);
    $rest =~ /^\s*([A-Za-z_]\w*)\s*\(/
        or die sprintf("translate.pl: %s:%d: __launch_bounds__ not followed by the kernel name\n", $in, line_of($open));
    $bounds{$1} = $expr;
    pos($m) = $end;
}

my @edits; # [start, end, replacement]

# kernel launches
while ($m =~ /<<</g) {
    my $lt = pos($m) - 3;
    # the kernel expression before <<<: identifier(::identifier)* with template arguments
    my $i = $lt;
    $i-- while $i > 0 && substr($m, $i - 1, 1) =~ /\s/;
    my $kend = $i;
    if (substr($m, $i - 1, 1) eq '>') {
        my $depth = 0;
        for ($i = $i - 1; $i >= 0; $i--) {
            my $c = substr($m, $i, 1);
            $depth++ if $c eq '>';
            $depth-- if $c eq '<';
            last if $depth == 0;
        }
        die sprintf("translate.pl: %s:%d: unbalanced template arguments before <<<\n", $in, line_of($lt)) if $i < 0;
    }
    my $tmpl_start = $i;
    $i-- while $i > 0 && substr($m, $i - 1, 1) =~ /[\w:]/;
    my $kstart = $i;
    my $base = substr($m, $kstart, $tmpl_start - $kstart);
    $base =~ s/\s+//g;
    die sprintf("translate.pl: %s:%d: no kernel name before <<<\n", $in, line_of($lt)) unless $base =~ /^(?:::)?(?:\w+::)*[A-Za-z_]\w*$/;
    (my $short = $base) =~ s/.*:://;
    my $kernel = substr($src, $kstart, $kend - $kstart);

    # the configuration up to >>> at bracket depth 0
    my $depth = 0;
    my $j;
    for ($j = $lt + 3; $j < length $m; $j++) {
        my $c = substr($m, $j, 1);
        $depth++ if $c =~ /[(\[{]/;
        $depth-- if $c =~ /[)\]}]/;
        last if $depth == 0 && substr($m, $j, 3) eq '>>>';
        die sprintf("translate.pl: %s:%d: no >>> for this <<<\n", $in, line_of($lt)) if $depth < 0 || $c eq ';';
    }
    die sprintf("translate.pl: %s:%d: no >>> for this <<<\n", $in, line_of($lt)) if $j >= length $m;
    my $config = substr($src, $lt + 3, $j - $lt - 3);
    my $k = $j + 3;
    $k++ while $k < length $m && substr($m, $k, 1) =~ /\s/;
    die sprintf("translate.pl: %s:%d: kernel launch without an argument list\n", $in, line_of($lt)) unless substr($m, $k, 1) eq '(';
    my $aend = match_forward($k, '(', ')');
    my $args = substr($src, $k + 1, $aend - $k - 2);
    my $s = $aend;
    $s++ while $s < length $m && substr($m, $s, 1) =~ /\s/;
    die sprintf("translate.pl: %s:%d: a kernel launch must be a statement of its own (\"...);\")\n", $in, line_of($lt))
        unless substr($m, $s, 1) eq ';';

    (my $label = $kernel) =~ s/\s+//g;
    $label = sprintf('%s (%s:%d)', $label, $in, line_of($lt));
    my $cfg = "::cuda_emu::cfg($config)";
    $cfg = "::cuda_emu::bounds($cfg, $bounds{$short})" if exists $bounds{$short};
    my $rep = "::cuda_emu::launch_kernel($cfg, \"$label\", $kernel" . ($args =~ /\S/ ? ", $args" : '') . ')';
    my $orig = substr($src, $kstart, $aend - $kstart);
    my $missing = ($orig =~ tr/\n//) - ($rep =~ tr/\n//);
    $rep .= "\n" x $missing if $missing > 0;
    push @edits, [$kstart, $aend, $rep];
    pos($m) = $aend;
}

# dynamic shared memory
while ($m =~ /\bextern\s+__shared__\b/g) {
    my $start = pos($m) - length($&);
    my $semi = index($m, ';', $start);
    die sprintf("translate.pl: %s:%d: extern __shared__ without ';'\n", $in, line_of($start)) if $semi < 0;
    my $decl = substr($src, $start, $semi + 1 - $start);
    $decl =~ /^extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?(.+?)\s*\b([A-Za-z_]\w*)\s*\[\s*\]\s*;$/s
        or die sprintf("translate.pl: %s:%d: unsupported dynamic shared declaration: %s\n", $in, line_of($start), $decl);
    my ($type, $name) = ($1, $2);
    $type =~ s/\s*__align__\s*\(\s*\d+\s*\)\s*/ /g;
    $type =~ s/^\s+|\s+$//g;
    my $rep = "$type *$name = static_cast<$type *>(::cuda_emu::dynamic_smem());";
    $rep .= "\n" x ($decl =~ tr/\n//);
    push @edits, [$start, $semi + 1, $rep];
    pos($m) = $semi + 1;
}

my $res = $src;
for my $e (sort { $b->[0] <=> $a->[0] } @edits) {
    substr($res, $e->[0], $e->[1] - $e->[0]) = $e->[2];
}

# nothing of the two constructs may be left
my $rm = mask($res);
die "translate.pl: $in: a <<< was left untranslated\n" if $rm =~ /<<</;
die "translate.pl: $in: an extern __shared__ was left untranslated\n" if $rm =~ /\bextern\s+__shared__\b/;
die "translate.pl: $in: line count changed\n" unless ($res =~ tr/\n//) == ($src =~ tr/\n//);

open(my $oh, '>', "$out.tmp") or die "translate.pl: $out.tmp: $!\n";
print $oh "#line 1 \"$in\"\n", $res;
close $oh or die "translate.pl: $out.tmp: $!\n";
rename("$out.tmp", $out) or die "translate.pl: $out: $!\n";
