#!/bin/sh
# AutoAttack's components in awt and in torchattacks on the same checkpoint and the same first N
# Fashion-MNIST test images: robust accuracy per attack side by side (the check of docs/checks.md that
# our attacks are at least as strong as a trusted peer's), plus each side's seconds per 1,000 images
# (only meaningful on an otherwise idle machine).
#
# Usage: benches/peers/attack_crosscheck.sh CHECKPOINT [N] [EPS] [PYTHON]
#   PYTHON: an interpreter with torch, torchattacks and safetensors (default python3;
#           `cargo xtask bench --peers` makes one under target/peers/torch/).
#   AWT_BIN: the awt binary (default target/release/awt).
set -eu
ckpt=$1
n=${2:-200}
eps=${3:-0.1}
py=${4:-python3}
awt=${AWT_BIN:-target/release/awt}
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
attacks="apgd-ce apgd-t fab-t square"
for a in $attacks; do
    start=$(date +%s.%N)
    "$awt" eval --model "$ckpt" --data fashion-mnist --limit "$n" --attack "$a" --eps "$eps" --json "$tmp/$a.json" >/dev/null
    end=$(date +%s.%N)
    echo "$start $end" >"$tmp/$a.time"
done
"$py" "$here/torchattacks_compare.py" "$ckpt" "$n" "$eps" 2 "$(echo $attacks | tr ' ' ',')" >"$tmp/peer.jsonl"
python3 - "$tmp" "$n" $attacks <<'EOF'
import json, sys
tmp, n, attacks = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
peer = [json.loads(l) for l in open(f"{tmp}/peer.jsonl")]
head, rows = peer[0], {r["attack"]: r for r in peer[1:]}
print(f"{head['peer']}; {n} images, eps {head['eps']}; clean accuracy (peer) {100 * head['clean']:.1f} %\n")
print("| attack | robust accuracy, peer | robust accuracy, awt | awt − peer (points) | s / 1,000 images, peer | awt |")
print("|---|---|---|---|---|---|")
for a in attacks:
    ours = json.load(open(f"{tmp}/{a}.json"))
    t0, t1 = map(float, open(f"{tmp}/{a}.time").read().split())
    acc = ours["robust_correct"] / ours["n"]
    p = rows[a]
    print(f"| {a} | {100 * p['robust_accuracy']:.1f} % | {100 * acc:.1f} % | {100 * (acc - p['robust_accuracy']):+.1f} | "
          f"{p['seconds_per_1000']:.1f} | {(t1 - t0) * 1000 / n:.1f} |")
EOF
