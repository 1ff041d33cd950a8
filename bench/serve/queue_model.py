#!/usr/bin/python3
"""queue_model.py -- what p99/p50 a batching server can reach at a given load.

Simulates Poisson arrivals into c single-core instances whose batch of b rows
takes t(b) = a + c1*b seconds (fit a and c1 from `kiln bench --threads 1
--batch 1,8`), under the batch-forming policies kiln serve has had:
  greedy-pad : a free instance takes up to max_batch queued rows, padded up
               to the next power of two (kiln serve before this change)
  share-trim : a free instance takes its fair share of the queue when others
               are idle too, trimmed down to a power of two
  share-all  : a free instance takes 1/c of the queue (c instances, busy or
               not), every size being a run size: batches grow only when the
               queue is longer than the instances (kiln serve now)
  single     : batch size 1 (no dynamic batching)
FIFO, no preemption. Prints p50, p99 and p99/p50 per policy and core count.

  /usr/bin/python3 bench/serve/queue_model.py [--a 0.018 --c1 0.120] [--load 0.7]
"""
import argparse, bisect, random

def simulate(lam, n_inst, t, policy, max_batch=8, n=60000, seed=2):
    rnd = random.Random(seed)
    arrivals, x = [], 0.0
    for _ in range(n):
        x += rnd.expovariate(lam)
        arrivals.append(x)
    free = [0.0] * n_inst
    lat = [0.0] * n
    i = 0
    runs = [1, 2, 4, 8, 16, 32]
    while i < n:
        k = min(range(n_inst), key=lambda z: free[z])
        start = max(free[k], arrivals[i])
        queued = max(1, bisect.bisect_right(arrivals, start) - i)
        if policy == "single":
            b, cost = 1, t(1)
        elif policy == "greedy-pad":
            b = min(max_batch, queued)
            cost = t(min(r for r in runs if r >= b))
        else:
            idle = 1 + sum(1 for z in range(n_inst) if z != k and free[z] <= start)
            share = idle if policy == "share-trim" else n_inst
            b = min(max_batch, -(-queued // share))
            if policy == "share-trim":   # trimmed down to a power of two
                b = max(r for r in runs if r <= b)
            cost = t(b)
        end = start + cost
        for r in range(i, min(n, i + b)):
            lat[r] = end - arrivals[r]
        free[k] = end
        i += b
    lat = sorted(lat[1000:])
    p50, p99 = lat[len(lat) // 2], lat[int(0.99 * (len(lat) - 1))]
    return p50, p99

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", type=float, default=0.018, help="fixed seconds per batch")
    ap.add_argument("--c1", type=float, default=0.120, help="seconds per row, one core")
    ap.add_argument("--load", type=float, default=0.7, help="offered load / batch-1 capacity")
    ap.add_argument("--cores", default="2,4,8,16")
    args = ap.parse_args()
    t = lambda b: args.a + args.c1 * b
    print("t(b) = %.3f + %.3f*b s; load %.0f%% of batch-1 capacity" % (args.a, args.c1, args.load * 100))
    print("%5s  %-10s %9s %9s %8s" % ("cores", "policy", "p50 ms", "p99 ms", "p99/p50"))
    for c in (int(v) for v in args.cores.split(",")):
        lam = args.load * c / t(1)
        for pol in ("single", "greedy-pad", "share-trim", "share-all"):
            p50, p99 = simulate(lam, c, t, pol)
            print("%5d  %-10s %9.0f %9.0f %8.2f" % (c, pol, p50 * 1e3, p99 * 1e3, p99 / p50))

if __name__ == "__main__":
    main()
